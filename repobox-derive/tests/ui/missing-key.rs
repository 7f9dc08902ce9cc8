use repobox_orm::prelude::*;

#[derive(RedisEntity)]
pub struct User {
    pub id: String,
}

fn main() {}
