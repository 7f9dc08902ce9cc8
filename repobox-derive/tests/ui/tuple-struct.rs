use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User(String);

fn main() {}
