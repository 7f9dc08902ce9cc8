//! The apalis side: apalis-redis 1.0's `RedisStorage` and an apalis `Worker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apalis::prelude::{BoxDynError, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerContext};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};

use crate::model::{BULK, BoxError, Measured, NotApplicable, Scenario};
use crate::server::Server;

/// The queue's name (its keys are `bench:*`).
const QUEUE: &str = "bench";

/// A job's arguments: its number, as BullMQ's jobs carry `{ i }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    i: usize,
}

/// apalis-redis's storage on a connection manager, with its default config on queue [`QUEUE`].
fn storage(conn: ConnectionManager) -> RedisStorage<Payload> {
    RedisStorage::new(conn).with_config(Config::default().queue(QUEUE))
}

/// Pushes `n` jobs with `push_bulk` in calls of [`BULK`] (one `batch_push.lua` call each).
async fn push_bulk(storage: &mut RedisStorage<Payload>, n: usize) -> Result<(), BoxError> {
    for from in (0..n).step_by(BULK) {
        let chunk = (from..(from + BULK).min(n)).map(|i| Payload { i }).collect();
        storage.push_bulk(chunk).await?;
    }
    Ok(())
}

/// Fails unless `n` jobs wait: apalis-redis's push puts every job on the
/// scheduled set (due now), and its fetch moves due ones to the active list.
async fn expect_waiting(server: &Server, config: &Config, n: usize) -> Result<(), BoxError> {
    let mut conn = server.connection().await?;
    let (active, scheduled): (usize, usize) = redis::pipe()
        .cmd("LLEN")
        .arg(config.active_jobs_list())
        .cmd("ZCARD")
        .arg(config.scheduled_jobs_set())
        .query_async(&mut conn)
        .await?;
    if active + scheduled != n {
        return Err(format!("apalis: {active} active + {scheduled} scheduled jobs, not {n}").into());
    }
    Ok(())
}

/// Fails unless all `n` jobs are in the done set.
async fn expect_done(server: &Server, config: &Config, n: usize) -> Result<(), BoxError> {
    let mut conn = server.connection().await?;
    let done: usize = redis::cmd("SCARD")
        .arg(config.done_jobs_set())
        .query_async(&mut conn)
        .await?;
    if done != n {
        return Err(format!("apalis: {done} jobs done, not {n}").into());
    }
    Ok(())
}

/// The worker's error, or [`NotApplicable`] when it is apalis-redis 1.0's
/// limit: its fetch_next.lua moves every due job from the scheduled set to
/// the active list with one `RPUSH ... unpack(ids)`, which Lua refuses for
/// about 8,000 ids or more ("too many results to unpack"); every push goes
/// to the scheduled set, so a worker started on a backlog that large fails
/// its first fetch and never runs a job.
fn unpack_limit(error: String) -> BoxError {
    if error.contains("too many results to unpack") {
        return Box::new(NotApplicable(format!(
            "apalis-redis 1.0's worker cannot start on a backlog of about 8,000 jobs or more: fetch_next.lua \
             moves every due job to the active list in one RPUSH of unpack(ids), and Lua refuses \
             (\"{}\"); use --jobs 7000 or fewer to measure it",
            error.split(" script:").next().unwrap_or(&error).trim()
        )));
    }
    error.into()
}

/// Runs `scenario` once with `n` jobs and measures it.
pub async fn run(server: &Server, scenario: Scenario, n: usize) -> Result<Measured, BoxError> {
    let conn = apalis_redis::connect(server.url()).await?;
    let mut storage = storage(conn.clone());
    let config = storage.get_config().clone();
    match scenario {
        Scenario::QueueAdd => {
            let measured = server
                .measure(n, async {
                    for i in 0..n {
                        storage.push(Payload { i }).await?;
                    }
                    Ok(())
                })
                .await?;
            expect_waiting(server, &config, n).await?;
            Ok(measured)
        }
        Scenario::QueueAddBulk => {
            let measured = server.measure(n, push_bulk(&mut storage, n)).await?;
            expect_waiting(server, &config, n).await?;
            Ok(measured)
        }
        Scenario::Worker(concurrency) => {
            push_bulk(&mut storage, n).await?;
            let done = Arc::new(AtomicUsize::new(0));
            let counted = done.clone();
            // No-op handler; the n-th completion stops the worker, which then
            // writes the last results and deregisters before `run` returns.
            let handler = move |_job: Payload, worker: WorkerContext| {
                let counted = counted.clone();
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) + 1 == n {
                        worker.stop()?;
                    }
                    Ok::<(), BoxDynError>(())
                }
            };
            let worker = WorkerBuilder::new("bench")
                .backend(storage)
                .concurrency(concurrency)
                .build(handler);
            let measured = server
                .measure(n, async {
                    worker.run().await.map_err(|e| unpack_limit(e.to_string()))?;
                    Ok(())
                })
                .await?;
            let ran = done.load(Ordering::SeqCst);
            if ran != n {
                return Err(format!("apalis ran {ran} jobs, not {n}").into());
            }
            expect_done(server, &config, n).await?;
            Ok(measured)
        }
    }
}
