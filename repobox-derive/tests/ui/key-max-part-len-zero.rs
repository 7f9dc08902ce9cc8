use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("user:<id>", max_part_len = 0)]
pub struct User {
    pub id: String,
}

fn main() {}
