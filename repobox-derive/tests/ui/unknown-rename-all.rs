use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("run:<id>")]
#[redis(rename_all = "Camel")]
pub struct Run {
    pub id: String,
}

fn main() {}
