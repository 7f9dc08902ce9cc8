use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[key("person:<id>")]
pub struct User {
    pub id: String,
}

fn main() {}
