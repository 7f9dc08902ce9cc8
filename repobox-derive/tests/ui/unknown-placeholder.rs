use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<uid>")]
pub struct User {
    pub id: String,
}

fn main() {}
