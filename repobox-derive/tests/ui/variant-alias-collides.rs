use repobox_orm::prelude::*;

#[derive(RedisValue)]
pub enum Status {
    Queued,
    #[redis(alias = "queued")]
    Succeeded,
    #[redis(alias = "done")]
    Failed,
    #[redis(alias = "done")]
    Cancelled,
}

fn main() {}
