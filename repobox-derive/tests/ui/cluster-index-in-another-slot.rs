use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:{<user_id>}:<id>")]
#[cluster(co_located)]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
#[index(set = "jobs:{<id>}:tags", name = "tagged")]
pub struct Job {
    pub user_id: String,
    pub id: String,
    pub created_at: i64,
}

fn main() {}
