use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
pub struct Job {
    pub id: String,
    #[redis(alias = "exit")]
    pub exit_code: Option<i32>,
    #[redis(alias = "exit")]
    pub exit_signal: Option<i32>,
}

fn main() {}
