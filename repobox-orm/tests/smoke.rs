use repobox_orm::prelude::*;
use repobox_orm::testing::{CountingConnection, RedisServer};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
enum Status { Queued, InProgress }

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
struct Job {
    id: String,
    user_id: String,
    status: Status,
    created_at: i64,
    #[redis(rename = "exit")]
    exit_code: Option<i32>,
}

#[tokio::test]
async fn smoke() {
    let server = RedisServer::start();
    let mut conn = CountingConnection::new(server.connection().await);
    let job = Job { id: "1".into(), user_id: "u".into(), status: Status::Queued, created_at: 5, exit_code: None };
    Job::create(&mut conn, &job).await.unwrap();
    conn.take();
    Job::create(&mut conn, &job).await.unwrap_err();
    assert_eq!(conn.take(), 1);
    assert_eq!(Job::get(&mut conn, "1").await.unwrap(), Some(job.clone()));
    Job::update(&mut conn, "1", JobPatch { status: Some(Status::InProgress), exit_code: Some(Some(3)), ..Default::default() }).await.unwrap();
    println!("update rts {}", conn.take());
    Job::update(&mut conn, "1", JobPatch { user_id: Some("v".into()), ..Default::default() }).await.unwrap();
    println!("move rts {}", conn.take());
    let page = Job::by_user_id(&mut conn, "v", Page::newest(10)).await.unwrap();
    println!("{page:?} rts {}", conn.take());
    assert_eq!(Job::count_by_user_id(&mut conn, "u").await.unwrap(), 0);
    assert!(Job::delete(&mut conn, "1").await.unwrap());
    println!("delete rts {}", conn.take());
    assert_eq!(Job::count_by_user_id(&mut conn, "v").await.unwrap(), 0);
}
