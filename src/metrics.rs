//! `GET /metrics` in the Prometheus text format (`metrics` with
//! `metrics-exporter-prometheus`): the process's own counters and
//! histograms (the runner's jobs, the library's operations and reconnects,
//! recorded as they happen) and the queue's gauges, read from Redis at each
//! scrape in a fixed number of calls (`Overview::read`: never a `SCAN`).

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use repobox_models::Overview;
use repobox_orm::{RedisValue, Store};

/// How long a scrape waits for Redis before it answers without the
/// queue's gauges (`repobox_queue_up 0`).
const SCRAPE_WAIT: Duration = Duration::from_secs(2);

/// The histograms' buckets, in seconds: from a Redis call (half a
/// millisecond) to a long job (an hour).
const BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// The process's recorder, installed on first use.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (once); `None` if another one was
/// installed first.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            match PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .and_then(|b| b.install_recorder())
            {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record metrics");
                    None
                }
            }
        })
        .clone()
}

/// Serves `GET /metrics` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, store: Store) {
    let Some(handle) = handle() else { return };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state((handle, store));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics server stopped");
    }
}

async fn metrics(State((handle, store)): State<(PrometheusHandle, Store)>) -> impl IntoResponse {
    let body = render(&handle, &store).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

/// The metrics as Prometheus reads them, the queue's gauges read now.
pub async fn render(handle: &PrometheusHandle, store: &Store) -> String {
    match tokio::time::timeout(SCRAPE_WAIT, Overview::read(&mut store.clone())).await {
        Ok(Ok(overview)) => {
            metrics::gauge!("repobox_queue_up").set(1.0);
            set_gauges(&overview);
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a scrape could not read the queue");
            metrics::gauge!("repobox_queue_up").set(0.0);
        }
        Err(_) => {
            tracing::warn!(wait_secs = SCRAPE_WAIT.as_secs(), "a scrape got no answer from Redis");
            metrics::gauge!("repobox_queue_up").set(0.0);
        }
    }
    handle.render()
}

fn set_gauges(overview: &Overview) {
    for (status, n) in &overview.jobs {
        metrics::gauge!("repobox_jobs", "status" => status.as_str()).set(*n as f64);
    }
    for level in &overview.levels {
        let labels = [
            ("queue", level.stream.clone()),
            ("level", level.level.as_str().to_owned()),
        ];
        metrics::gauge!("repobox_queue_waiting", &labels).set(level.waiting as f64);
        metrics::gauge!("repobox_queue_pending", &labels).set(level.pending as f64);
        metrics::gauge!("repobox_queue_consumers", &labels).set(level.consumers as f64);
        metrics::gauge!("repobox_queue_dead_letters", &labels).set(level.dead as f64);
    }
    metrics::gauge!("repobox_queue_paused").set(if overview.paused_since.is_some() { 1.0 } else { 0.0 });
}

/// Each metric's help text, as Prometheus shows it.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "repobox_queue_up",
        "1 when the last scrape read the queue from Redis, else 0"
    );
    describe_gauge!("repobox_jobs", "Jobs per status (the status indexes' sizes)");
    describe_gauge!(
        "repobox_queue_waiting",
        "Entries no runner has been handed yet (the group's lag)"
    );
    describe_gauge!(
        "repobox_queue_pending",
        "Deliveries handed to a runner and not acknowledged"
    );
    describe_gauge!("repobox_queue_consumers", "Consumers (runners) of the level's group");
    describe_gauge!(
        "repobox_queue_dead_letters",
        "Entries in the level's dead-letter stream"
    );
    describe_gauge!("repobox_queue_paused", "1 while the queue is paused");
    describe_counter!("repobox_jobs_started_total", "Runs this process started");
    describe_counter!(
        "repobox_jobs_finished_total",
        "Runs this process ended, by outcome (succeeded, failed, cancelled, retried)"
    );
    describe_counter!(
        "repobox_jobs_dead_lettered_total",
        "Deliveries this process dead-lettered"
    );
    describe_histogram!(
        "repobox_job_duration_seconds",
        Unit::Seconds,
        "How long runs took, by outcome"
    );
    describe_histogram!(
        "repobox_job_queue_wait_seconds",
        Unit::Seconds,
        "How long jobs waited from due (run_at, or creation) to their start"
    );
    describe_histogram!(
        "repobox_operation_duration_seconds",
        Unit::Seconds,
        "Latency of the library's entity operations, by model and operation"
    );
    describe_counter!(
        "repobox_operation_errors_total",
        "Entity operations that failed, by model, operation and kind of error"
    );
    describe_counter!(
        "repobox_write_outcome_unknown_total",
        "Writes whose outcome the library could not know (the connection broke mid-write)"
    );
    describe_counter!(
        "repobox_store_reconnects_total",
        "Connections the store made again after its first"
    );
    describe_counter!("repobox_store_connect_failures_total", "Connect attempts that failed");
}
