use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("session:<id>")]
#[ttl(weeks = 1)]
pub struct Session {
    pub id: String,
}

fn main() {}
