use repobox_orm::prelude::*;

#[derive(RedisEntity)]
#[key("point:<x>")]
pub struct Point {
    pub x: f64,
}

fn main() {}
