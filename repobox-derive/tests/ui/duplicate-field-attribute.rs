use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User {
    pub id: String,
    #[redis(default, default)]
    pub age: u32,
}

fn main() {}
