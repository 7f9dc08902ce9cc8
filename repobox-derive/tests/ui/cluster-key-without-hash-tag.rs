use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[cluster(co_located)]
pub struct User {
    pub id: String,
}

fn main() {}
