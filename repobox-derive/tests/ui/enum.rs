use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
pub enum User {
    Admin,
}

fn main() {}
