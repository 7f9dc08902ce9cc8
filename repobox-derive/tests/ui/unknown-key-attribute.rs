use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>", ttl = 7)]
pub struct User {
    pub id: String,
}

fn main() {}
