// `rename_all` names the wire fields and variants as serde does; an explicit
// `rename` wins.
#![allow(dead_code)]

use repobox_orm::prelude::*;

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
#[redis(rename_all = "SCREAMING_SNAKE_CASE")]
enum Level {
    InProgress,
    #[redis(rename = "done")]
    Finished,
}

#[derive(RedisEntity)]
#[key("run:<run_id>")]
#[redis(rename_all = "camelCase")]
struct Run {
    run_id: String,
    exit_code: Option<i32>,
    #[redis(rename = "lvl")]
    level: Level,
}

fn main() {
    let names: Vec<&str> = RunField::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["runId", "exitCode", "lvl"]);
    assert_eq!(Level::InProgress.as_str(), "IN_PROGRESS");
    assert_eq!(Level::Finished.as_str(), "done");
    let schema = <Run as RedisEntity>::META.schema();
    assert_eq!(schema["fields"][2]["values"], serde_json::json!(["IN_PROGRESS", "done"]));
}
