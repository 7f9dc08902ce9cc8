//! The built-in demo handler, used by `repobox demo` and `repobox runner
//! --demo` only, never unless asked for. It only pretends to build: nothing
//! read from Redis is ever executed.

use std::time::Duration;

use repobox_models::Job;
use repobox_runner::{HandlerResult, JobHandler, Output};

/// Writes a few progress lines per job; a repository URL that contains
/// `fail` ends with exit code 1 so that failures can be shown.
#[derive(Debug, Clone)]
pub struct DemoHandler {
    /// Pause between lines.
    pub step: Duration,
}

impl Default for DemoHandler {
    fn default() -> Self {
        DemoHandler {
            step: Duration::from_millis(40),
        }
    }
}

impl JobHandler for DemoHandler {
    async fn run(&self, job: Job, output: Output) -> HandlerResult {
        let fails = job.repo_url.contains("fail");
        // A repository named "slow" takes a second per step (to watch or cancel it).
        let step = if job.repo_url.contains("slow") {
            Duration::from_secs(1)
        } else {
            self.step
        };
        let lines = [
            format!("$ git clone {}", job.repo_url),
            "resolving dependencies".to_owned(),
            "building (1/2)".to_owned(),
            "building (2/2)".to_owned(),
            "running tests".to_owned(),
        ];
        for line in lines {
            output.line(line).await.map_err(|e| e.to_string())?;
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = output.cancelled() => {
                    output.line("cancelled").await.map_err(|e| e.to_string())?;
                    return Err("cancelled".into());
                }
            }
        }
        if fails {
            output.line("tests failed: 1 of 12").await.map_err(|e| e.to_string())?;
            Ok(1)
        } else {
            output.line("ok: 12 tests passed").await.map_err(|e| e.to_string())?;
            Ok(0)
        }
    }
}
