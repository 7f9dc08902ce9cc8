use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>")]
#[index(unique = "user:email:<email>")]
#[index(set = "users:team:<team>", name = "index_key_by_email")]
pub struct User {
    pub id: String,
    pub email: String,
    pub team: String,
}

fn main() {}
