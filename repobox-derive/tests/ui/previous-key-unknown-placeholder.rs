use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:{<user_id>}:<id>", previous = "job:<job_id>")]
pub struct Job {
    pub id: String,
    pub user_id: String,
}

fn main() {}
