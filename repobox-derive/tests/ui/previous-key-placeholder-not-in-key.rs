use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("job:{<user_id>}:<id>", previous = "job:<status>:<id>")]
pub struct Job {
    pub id: String,
    pub user_id: String,
    pub status: String,
}

fn main() {}
