//! The repobox side: `Job::create_and_enqueue(_many)` and the real `Runner`.

use std::time::Duration;

use repobox_models::{Job, now_millis};
use repobox_orm::Store;
use repobox_runner::{HandlerResult, JobHandler, Output, RunStats, Runner, RunnerConfig};

use crate::model::{BULK, BoxError, Measured, Scenario};
use crate::server::Server;

/// Users the jobs are spread over.
const USERS: usize = 16;

/// A handler that does nothing and succeeds.
struct Noop;

impl JobHandler for Noop {
    /// Succeeds at once.
    async fn run(&self, _job: Job, _output: Output) -> HandlerResult {
        Ok(0)
    }
}

/// The jobs of one run: ids `r<round>-<i>`, spread over [`USERS`] users.
fn jobs(round: usize, n: usize) -> Vec<Job> {
    let now = now_millis();
    (0..n)
        .map(|i| {
            Job::new(
                format!("r{round}-{i}"),
                format!("user-{}", i % USERS),
                format!("https://git.example.invalid/acme/repo-{i}.git"),
                now,
            )
        })
        .collect()
}

/// Creates and enqueues `jobs` in calls of [`BULK`], failing on any job's error.
async fn enqueue_bulk(store: &mut Store, jobs: &[Job]) -> Result<(), BoxError> {
    for chunk in jobs.chunks(BULK) {
        for result in Job::create_and_enqueue_many(store, chunk, now_millis()).await? {
            result?;
        }
    }
    Ok(())
}

/// Fails unless the runner ran every job to `succeeded` and nothing else happened.
fn check_stats(stats: &RunStats, n: usize) -> Result<(), BoxError> {
    let clean = RunStats {
        succeeded: n as u64,
        ..RunStats::default()
    };
    if *stats != clean {
        return Err(format!("the runner did not succeed all {n} jobs: {stats:?}").into());
    }
    Ok(())
}

/// Runs `scenario` once with `n` jobs (round `round`) and measures it.
pub async fn run(server: &Server, scenario: Scenario, round: usize, n: usize) -> Result<Measured, BoxError> {
    let mut store = Store::open(server.url())?;
    // Connect before the timed section.
    let _: String = redis::cmd("PING").query_async(&mut store).await?;
    let jobs = jobs(round, n);
    match scenario {
        Scenario::QueueAdd => {
            server
                .measure(n, async {
                    for job in &jobs {
                        Job::create_and_enqueue(&mut store, job, now_millis()).await?;
                    }
                    Ok(())
                })
                .await
        }
        Scenario::QueueAddBulk => server.measure(n, enqueue_bulk(&mut store, &jobs)).await,
        Scenario::Worker(concurrency) => {
            enqueue_bulk(&mut store, &jobs).await?;
            let config = RunnerConfig::new("bench")
                .concurrency(concurrency)
                .block(Duration::from_millis(20));
            let runner = Runner::new(store.clone(), Noop, config);
            let mut stats = None;
            let measured = server
                .measure(n, async {
                    stats = Some(runner.run_until_empty().await?);
                    Ok(())
                })
                .await?;
            check_stats(&stats.expect("measured the run"), n)?;
            Ok(measured)
        }
    }
}
