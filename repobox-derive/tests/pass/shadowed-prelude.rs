// Generated code uses absolute paths: shadowing the prelude changes nothing.
#![allow(dead_code, non_camel_case_types)]

use repobox_orm::{RedisEntity, RedisValue};

type Result = ();
type Option = ();
struct Ok;
struct Some;
struct None;
struct String;
struct Vec;
struct Default;

#[derive(RedisValue, Clone, Copy)]
enum Status {
    Queued,
    Running,
}

#[derive(RedisEntity)]
#[key("job:{<id>}:<part>")]
#[ttl(hours = 1, minutes = 30)]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
#[index(set = "jobs:status:<status>")]
#[index(unique = "job:slug:<slug>")]
struct Job {
    id: ::std::string::String,
    part: u32,
    user_id: ::std::string::String,
    slug: ::std::string::String,
    status: Status,
    created_at: i64,
    exit_code: ::core::option::Option<i32>,
    #[redis(default)]
    retries: u32,
    #[redis(json)]
    env: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
    #[redis(skip)]
    scratch: ::std::vec::Vec<u8>,
}

fn main() {}
