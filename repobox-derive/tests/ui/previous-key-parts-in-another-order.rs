use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("repo:<owner>:<name>", previous = "repo:<name>:<owner>")]
pub struct Repo {
    pub owner: String,
    pub name: String,
}

fn main() {}
