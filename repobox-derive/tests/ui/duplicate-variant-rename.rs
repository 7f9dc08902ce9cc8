use repobox_orm::RedisValue;

#[derive(RedisValue)]
pub enum Status {
    #[redis(rename = "q")]
    #[redis(rename = "queued")]
    Queued,
    Running,
}

fn main() {}
