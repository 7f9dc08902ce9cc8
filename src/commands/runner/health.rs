//! `GET /healthz` (200 while the runner reaches Redis and holds its
//! consumer, else 503) and `GET /readyz` (200 while it is healthy and takes
//! jobs; 503 while draining or stopping), each with the state as JSON.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use repobox_runner::{Health, Phase, RunnerControl};
use serde_json::{Value, json};

/// Serves the checks until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, control: RunnerControl) {
    let app = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(control);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the health check server stopped");
    }
}

async fn healthz(State(control): State<RunnerControl>) -> (StatusCode, Json<Value>) {
    let health = control.health();
    answer(health.is_healthy(), health)
}

async fn readyz(State(control): State<RunnerControl>) -> (StatusCode, Json<Value>) {
    let health = control.health();
    answer(health.is_ready(), health)
}

fn answer(ok: bool, health: Health) -> (StatusCode, Json<Value>) {
    let phase = match health.phase {
        Phase::Running => "running",
        Phase::Draining => "draining",
        Phase::Stopping => "stopping",
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "ok": ok, "redis": health.redis, "consumer": health.consumer, "phase": phase });
    (code, Json(body))
}
