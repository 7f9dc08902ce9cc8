use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("credential:<id>")]
pub struct Credential {
    pub id: String,
    #[redis(encrypted, alias = "secret")]
    pub token: String,
}

fn main() {}
