//! The quick start: an entity with a TTL and a sorted index, created,
//! updated, listed and deleted.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p repobox-orm --example quickstart
//! ```

use repobox_orm::prelude::*;

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
enum Status {
    Queued,
    Running,
    Done,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("quickstart:job:<id>")]
#[ttl(hours = 1)]
#[index(sorted = "quickstart:jobs:user:<user_id>", score = created_at)]
struct Job {
    id: String,
    user_id: String,
    status: Status,
    created_at: i64,
    exit_code: Option<i32>,
}

#[tokio::main]
async fn main() -> repobox_orm::Result<()> {
    let mut store = Store::from_env()?;
    for i in 0..3 {
        let job = Job {
            id: format!("job-{i}"),
            user_id: "ann".into(),
            status: Status::Queued,
            created_at: 1_700_000_000_000 + i,
            exit_code: None,
        };
        match Job::create(&mut store, &job).await {
            Ok(()) => println!("created {}", job.key()?),
            // Run twice within the hour: the jobs are still there.
            Err(Error::AlreadyExists { key }) => println!("{key} already exists"),
            Err(e) => return Err(e),
        }
    }
    let running = JobPatch {
        status: Some(Status::Running),
        ..Default::default()
    };
    Job::update(&mut store, "job-1", &running).await?;
    let done = JobPatch {
        status: Some(Status::Done),
        exit_code: Some(Some(0)),
        ..Default::default()
    };
    Job::update(&mut store, "job-0", &done).await?;

    let page = Job::by_user_id(&mut store, "ann", Page::newest(10)).await?;
    for job in &page.items {
        println!("{} {:?} exit={:?}", job.id, job.status, job.exit_code);
    }
    for bad in &page.errors {
        eprintln!("unreadable: {bad}");
    }
    println!("ann has {} jobs", Job::count_by_user_id(&mut store, "ann").await?);

    let deleted = Job::delete_many(&mut store, &["job-0", "job-1", "job-2"]).await?;
    println!("deleted {}", deleted.iter().filter(|d| matches!(d, Ok(true))).count());
    store.close().await;
    Ok(())
}
