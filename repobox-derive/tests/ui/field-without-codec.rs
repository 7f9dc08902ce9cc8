use repobox_orm::prelude::*;

pub struct Point {
    pub x: i32,
}

#[derive(RedisEntity)]
#[key("user:<id>")]
pub struct User {
    pub id: String,
    pub home: Point,
}

fn main() {}
