use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[index(unique = "user:email:<email>", name = "get")]
pub struct User {
    pub id: String,
    pub email: String,
}

fn main() {}
