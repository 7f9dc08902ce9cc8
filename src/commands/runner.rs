//! `repobox runner`: runs jobs until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use repobox_models::JOBS_STREAM;
use repobox_orm::Store;
use repobox_runner::{Runner, RunnerConfig};
use serde_json::json;

use super::shutdown_signal;
use crate::cli::RunnerArgs;
use crate::handler::DemoHandler;
use crate::output::json_line;

/// With `json`, prints nothing while it runs and its counts as one JSON
/// object on stdout when it stops.
pub async fn runner(store: &Store, args: RunnerArgs, json: bool) -> anyhow::Result<()> {
    let consumer = args.consumer.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("runner-{}-{}", host.trim(), std::process::id())
    });
    let mut config = RunnerConfig::new(consumer.clone())
        .concurrency(args.concurrency)
        .min_idle(Duration::from_secs(args.min_idle_secs))
        .max_deliveries(args.max_deliveries)
        .retention(Duration::from_secs(args.retention_secs))
        .consumer_idle(Duration::from_secs(args.consumer_idle_secs));
    if let Some(secs) = args.lease_secs {
        config = config.lease(Duration::from_secs(secs));
    }
    if !json {
        eprintln!("runner {consumer} waiting for jobs on {JOBS_STREAM} (Ctrl-C to stop)");
    }
    let stats = Runner::new(store.clone(), DemoHandler::default(), config)
        .run(shutdown_signal())
        .await
        .context("the runner failed")?;
    if json {
        let out = json!({
            "consumer": consumer,
            "succeeded": stats.succeeded,
            "failed": stats.failed,
            "cancelled": stats.cancelled,
            "retried": stats.retried,
            "dead_lettered": stats.dead_lettered,
            "released": stats.released,
            "lease_lost": stats.lease_lost,
        });
        println!("{}", json_line(&out));
    } else {
        eprintln!(
            "runner stopped: {} succeeded, {} failed, {} cancelled, {} retried, {} dead-lettered, {} released, {} lost their lease",
            stats.succeeded,
            stats.failed,
            stats.cancelled,
            stats.retried,
            stats.dead_lettered,
            stats.released,
            stats.lease_lost
        );
    }
    Ok(())
}
