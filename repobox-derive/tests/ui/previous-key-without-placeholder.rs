use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>", previous = "jobs")]
pub struct Job {
    pub id: String,
}

fn main() {}
