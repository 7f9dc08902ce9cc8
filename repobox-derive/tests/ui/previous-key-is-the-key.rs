use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>", previous = "job:<id>")]
pub struct Job {
    pub id: String,
}

fn main() {}
