use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[index(set = "users:<team>", order = "asc")]
pub struct User {
    pub id: String,
    pub team: String,
}

fn main() {}
