use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User {
    pub id: Option<String>,
}

fn main() {}
