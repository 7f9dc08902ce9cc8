use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
pub struct Job {
    pub id: String,
    pub code: i32,
    #[redis(alias = "code")]
    pub exit_code: i32,
}

fn main() {}
