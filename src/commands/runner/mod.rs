//! `repobox runner`: runs jobs with a program (`--exec`, `--shell`) or the
//! demo handler (`--demo`) until a signal, then drains.
//!
//! - `health`: `/healthz` and `/readyz` for supervisors.

mod health;

use std::time::Duration;

use anyhow::Context;
use repobox_models::{Backoff, RetryPolicy};
use repobox_orm::Store;
use repobox_runner::{JobHandler, ProcessHandler, RunStats, Runner, RunnerConfig, RunnerControl};
use serde_json::json;

use crate::cli::{BackoffArg, RunnerArgs};
use crate::handler::DemoHandler;
use crate::output::json_line;

/// Logs one line per event on stderr (see `main`); with `json`, prints its
/// counts as one JSON object on stdout when it stops.
pub async fn runner(store: &Store, args: RunnerArgs, json: bool) -> anyhow::Result<()> {
    let consumer = args.consumer.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("runner-{}-{}", host.trim(), std::process::id())
    });
    let mut config = RunnerConfig::new(consumer.clone())
        .concurrency(usize::try_from(args.concurrency).unwrap_or(1))
        .min_idle(Duration::from_secs(args.min_idle_secs))
        .max_deliveries(args.max_deliveries)
        .retry(retry_policy(&args))
        .keep_finished(args.keep_finished)
        .keep_failed(args.keep_failed)
        .rate_limit(args.rate_limit)
        .max_running_per_user(args.max_running_per_user)
        .retention(Duration::from_secs(args.retention_secs))
        .consumer_idle(Duration::from_secs(args.consumer_idle_secs))
        .shutdown_grace(Duration::from_secs(args.drain_secs));
    if let Some(secs) = args.lease_secs {
        config = config.lease(Duration::from_secs(secs));
    }
    let control = RunnerControl::new();
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        crate::metrics::handle();
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(crate::metrics::serve(listener, store.clone()));
    }
    if let Some(addr) = args.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve health checks on {addr}"))?;
        tracing::info!(%addr, "serving /healthz and /readyz");
        tokio::spawn(health::serve(listener, control.clone()));
    }
    tokio::spawn(on_signals(control.clone()));
    let handler = process_handler(&args);
    if let Some(handler) = &handler {
        let program = handler.check().context("cannot run jobs")?;
        tracing::info!(program = %program.display(), "running each job with this program");
        // The jobs run as this user: without this they could read the
        // runner's environment (its REDIS_URL, password and all) and memory
        // from /proc. It also keeps core dumps, which hold the same, away.
        #[cfg(target_os = "linux")]
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(error = %e, "could not hide the runner's memory and environment from its jobs");
        }
    }
    let until_empty = args.until_empty;
    let stats = match handler {
        Some(handler) => run(store, handler, config, control, until_empty).await,
        None => run(store, DemoHandler::default(), config, control, until_empty).await,
    }
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
            "unreleased": stats.unreleased,
            "lease_lost": stats.lease_lost,
            "parked": stats.parked,
        });
        println!("{}", json_line(&out));
    }
    Ok(())
}

/// The handler `--exec` or `--shell` asks for; `None` for `--demo` (clap
/// makes sure one of the three is given).
fn process_handler(args: &RunnerArgs) -> Option<ProcessHandler> {
    let handler = if let Some((program, first)) = args.exec.split_first() {
        ProcessHandler::exec(program, first.iter().chain(&args.exec_args))
    } else {
        ProcessHandler::shell(args.shell.clone()?)
    };
    let mut handler = handler
        .keep_workdir(args.keep_workdir)
        .inherit_env(args.inherit_env)
        .deny_env(args.deny_env.iter().cloned())
        .allow_env(args.allow_env.iter().cloned())
        .max_line_bytes(usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX))
        .max_output_lines(args.max_output_lines)
        .kill_grace(args.kill_grace);
    if let Some(dir) = &args.workdir {
        handler = handler.workdir(dir);
    }
    if let Some(timeout) = args.timeout {
        handler = handler.timeout(timeout);
    }
    Some(handler)
}

async fn run<H: JobHandler>(
    store: &Store,
    handler: H,
    config: RunnerConfig,
    control: RunnerControl,
    until_empty: bool,
) -> repobox_models::Result<RunStats> {
    let runner = Runner::new(store.clone(), handler, config);
    if until_empty {
        runner.run_until_empty_with(control).await
    } else {
        runner.run_with(control).await
    }
}

/// The first SIGTERM or SIGINT drains the runner; the next stops it at once.
async fn on_signals(control: RunnerControl) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT; stop the runner with SIGKILL");
        return;
    };
    let mut drained = false;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if drained {
            tracing::warn!(signal = name, "second signal: stopping the running jobs now");
            control.stop();
            return;
        }
        tracing::info!(
            signal = name,
            "draining: taking no new jobs; a second signal stops the running ones now"
        );
        control.drain();
        drained = true;
    }
}

/// The queue's retry policy from the runner's flags.
fn retry_policy(args: &RunnerArgs) -> RetryPolicy {
    let backoff = match args.backoff {
        BackoffArg::Exponential => Backoff::exponential(args.backoff_base, args.backoff_max.max(args.backoff_base)),
        BackoffArg::Fixed => Backoff::fixed(args.backoff_base),
    };
    RetryPolicy::new(args.max_attempts, backoff).retry_exit_codes(args.retry_exit_code.iter().copied())
}
