//! A job queue with workers: each job is created and enqueued in one atomic
//! write, two workers take deliveries from the stream's consumer group, run
//! them, and record the result and acknowledge the delivery in one atomic
//! write, only if the job is still theirs to finish.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p repobox-orm --example queue
//! ```
//!
//! (The `repobox runner` in this repository adds leases, retries with
//! backoff, dead letters, stalled-job reclaim and real processes.)

use std::time::Duration;

use repobox_orm::prelude::*;
use repobox_orm::{Delivery, Queue};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
enum Status {
    Queued,
    Done,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("example:job:{jobs}:<id>")]
#[index(set = "example:jobs:{jobs}:<status>")]
struct Job {
    id: String,
    input: u64,
    status: Status,
    output: Option<u64>,
}

const JOBS: u64 = 20;

#[tokio::main]
async fn main() -> repobox_orm::Result<()> {
    let store = Store::from_env()?;
    let run = repobox_orm::random_id("run")?;
    let queue = Queue::new(format!("example:queue:{{jobs}}:{run}"), "workers");
    let mut conn = store.clone();
    queue.ensure_group(&mut conn).await?;

    // Each job and its stream entry in one write: never one without the other.
    for n in 0..JOBS {
        let job = Job {
            id: format!("{run}-{n}"),
            input: n,
            status: Status::Queued,
            output: None,
        };
        Job::create_and_append(&mut conn, &job, queue.stream(), &[("job", &job.id)]).await?;
    }

    let workers: Vec<_> = ["w1", "w2"]
        .into_iter()
        .map(|name| tokio::spawn(work(store.clone(), queue.clone(), name)))
        .collect();
    let mut done = 0;
    for worker in workers {
        done += worker.await.expect("a worker panicked")?;
    }
    let finished = Job::by_status(&mut conn, Status::Done).await?;
    println!(
        "{done} jobs run, {} done",
        finished.items.iter().filter(|j| j.id.starts_with(&run)).count()
    );

    // Clean up what this run wrote.
    let ids: Vec<String> = (0..JOBS).map(|n| format!("{run}-{n}")).collect();
    for deleted in Job::delete_many(&mut conn, &ids).await? {
        deleted?;
    }
    repobox_orm::redis::cmd("DEL")
        .arg(queue.stream())
        .query_async::<()>(&mut conn)
        .await?;
    store.close().await;
    Ok(())
}

/// Takes deliveries until the stream has none left; returns how many it ran.
async fn work(store: Store, queue: Queue, name: &'static str) -> repobox_orm::Result<u64> {
    // A blocking read belongs on a connection of its own.
    let mut reader = store.dedicated(Some(Duration::from_millis(200)));
    let mut conn = store.clone();
    let mut ran = 0;
    loop {
        let deliveries = queue
            .read(&mut reader, name, 5, Some(Duration::from_millis(100)))
            .await?;
        if deliveries.is_empty() {
            return Ok(ran);
        }
        for delivery in deliveries {
            ran += run_one(&mut conn, &queue, name, &delivery).await?;
        }
    }
}

async fn run_one(conn: &mut Store, queue: &Queue, name: &str, delivery: &Delivery) -> repobox_orm::Result<u64> {
    let Some(id) = delivery.fields.get("job") else {
        // Not ours to read: set it aside rather than lose it.
        queue.dead_letter(conn, delivery, name, "no job field").await?;
        return Ok(0);
    };
    let Some(job) = Job::get(conn, id.as_str()).await? else {
        queue.ack(conn, &[&delivery.id]).await?; // deleted meanwhile
        return Ok(0);
    };
    let output = job.input.saturating_mul(job.input);
    let finish = JobPatch {
        status: Some(Status::Done),
        output: Some(Some(output)),
        ..Default::default()
    };
    let still_queued = JobPatch {
        status: Some(Status::Queued),
        ..Default::default()
    };
    match Job::update_if_and_ack(conn, id.as_str(), &finish, &still_queued, None, queue, &delivery.id).await {
        Ok(_) => Ok(1),
        // Another worker finished it first (a redelivery): nothing written.
        Err(Error::Conflict { .. }) => {
            queue.ack(conn, &[&delivery.id]).await?;
            Ok(0)
        }
        Err(e) => Err(e),
    }
}
