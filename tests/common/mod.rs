//! What the tests of runner processes share: waiting for a condition, and
//! reading a job and its output.

use std::time::Duration;

use repobox_models::{Job, OutputRange};
use repobox_orm::Store;

/// Polls `done` every 50 ms; panics with `what` after 60 s.
pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 60 s"));
}

/// The job, which must exist.
pub async fn job(store: &Store, id: &str) -> Job {
    Job::get(&mut store.clone(), id).await.unwrap().expect("the job exists")
}

/// Every output line of the job.
pub async fn output(store: &Store, id: &str) -> Vec<String> {
    Job::output(&mut store.clone(), id, OutputRange::ALL).await.unwrap()
}
