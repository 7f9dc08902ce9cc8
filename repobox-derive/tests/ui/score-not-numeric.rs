use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = name)]
pub struct Job {
    pub id: String,
    pub user_id: String,
    pub name: String,
}

fn main() {}
