use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[index(set = "users:admin:<admin>")]
pub struct User {
    pub id: String,
    pub admin: bool,
}

fn main() {}
