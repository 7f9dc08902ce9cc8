use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = created)]
pub struct Job {
    pub id: String,
    pub user_id: String,
    pub created_at: i64,
}

fn main() {}
