use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("cred:{<user_id>}:<id>", previous = "cred:<id>")]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    #[redis(encrypted)]
    pub token: String,
}

fn main() {}
