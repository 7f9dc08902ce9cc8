use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User {
    pub id: String,
    #[redis(renamed = "n")]
    pub name: String,
}

fn main() {}
