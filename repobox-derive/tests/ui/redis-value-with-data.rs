use repobox_orm::prelude::*;

#[derive(RedisValue)]
pub enum Status {
    Queued,
    Failed(String),
}

fn main() {}
