use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("credential:<token>")]
pub struct Credential {
    #[redis(encrypted)]
    pub token: String,
}

fn main() {}
