use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("config")]
pub struct Config {
    pub id: String,
}

fn main() {}
