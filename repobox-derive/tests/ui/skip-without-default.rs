use repobox_orm::prelude::*;

pub struct Handle(u8);

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User {
    pub id: String,
    #[redis(skip)]
    pub handle: Handle,
}

fn main() {}
