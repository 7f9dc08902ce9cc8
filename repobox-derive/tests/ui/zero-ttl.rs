use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("session:<id>")]
#[ttl(seconds = 0)]
pub struct Session {
    pub id: String,
}

fn main() {}
