use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
pub struct Job {
    pub id: String,
    #[redis(alias = "owner")]
    pub user_id: String,
    pub created_at: i64,
}

fn main() {}
