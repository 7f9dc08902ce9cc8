//! The BullMQ side: `node bullmq/bench.mjs <scenario> <port> <jobs>`, one process per run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::model::{BoxError, Measured, Scenario};
use crate::server::Server;

/// What bench.mjs prints: one JSON line.
#[derive(Debug, Deserialize)]
struct Line {
    jobs: usize,
    seconds: f64,
    cpu_us: f64,
    commands: f64,
}

/// The folder of bench.mjs and its package.json.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bullmq")
}

/// Runs `npm ci` in [`dir`] unless its node_modules is there already; checks `node` runs.
pub async fn prepare() -> Result<(), BoxError> {
    let dir = dir();
    let version = Command::new("node")
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("cannot run `node` (Node.js 20 is needed for the BullMQ side): {e}"))?;
    eprintln!("node {}", String::from_utf8_lossy(&version.stdout).trim());
    if dir.join("node_modules").join("bullmq").is_dir() {
        return Ok(());
    }
    eprintln!("running `npm ci` in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        // Keep stdout for the table: npm's output goes to stderr.
        .stdout(std::io::stderr())
        .status()
        .await
        .map_err(|e| format!("cannot run `npm ci` in {}: {e}", dir.display()))?;
    if !status.success() {
        return Err(format!("`npm ci` in {} failed: {status}", dir.display()).into());
    }
    Ok(())
}

/// Runs `scenario` once with `n` jobs in a fresh node process and reads its measurement.
pub async fn run(server: &Server, scenario: Scenario, n: usize, timeout: Duration) -> Result<Measured, BoxError> {
    let child = Command::new("node")
        .arg("bench.mjs")
        .arg(scenario.to_string())
        .arg(server.port().to_string())
        .arg(n.to_string())
        .current_dir(dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("bench.mjs {scenario} did not finish within {timeout:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("bench.mjs {scenario} exited with {}: {}", out.status, stdout.trim()).into());
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("bench.mjs {scenario} printed no JSON line: {}", stdout.trim()))?;
    let line: Line = serde_json::from_str(last)?;
    if line.jobs != n {
        return Err(format!("bench.mjs {scenario} ran {} jobs, not {n}", line.jobs).into());
    }
    Ok(Measured {
        jobs: line.jobs,
        seconds: line.seconds,
        cpu_us: line.cpu_us,
        commands: line.commands,
    })
}
