//! `repobox jobs list|show|tail|retry|cancel|run-now|delete`.

use std::time::Duration;

use anyhow::Context;
use repobox_models::{Cancel, Job, JobEvent, JobStatus, OutputRange, now_millis};
use repobox_orm::{Page, Store};
use serde_json::json;

use super::shutdown_signal;
use crate::cli::JobsCommand;
use crate::output::{clean, job_json, job_rows, json_line};

pub async fn jobs(store: &Store, cmd: JobsCommand, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    match cmd {
        JobsCommand::List {
            user,
            status,
            limit,
            offset,
        } => {
            let page = Page::newest(limit).offset(offset);
            let (jobs, total) = match (&user, status) {
                (Some(user), _) => (
                    Job::user_jobs(&mut conn, user, page).await?,
                    Job::user_job_count(&mut conn, user).await?,
                ),
                (None, Some(status)) => {
                    let status = JobStatus::from(status);
                    (
                        Job::by_status(&mut conn, status, page).await?,
                        Job::count_by_status(&mut conn, status).await?,
                    )
                }
                (None, None) => anyhow::bail!("give --user or --status"),
            };
            if json {
                let list: Vec<_> = jobs.items.iter().map(job_json).collect();
                let errors: Vec<_> = jobs.errors.iter().map(|e| json!({ "error": e.to_string() })).collect();
                let status = status.map(|s| JobStatus::from(s).to_string());
                println!(
                    "{}",
                    json_line(
                        &json!({ "user_id": user, "status": status, "total": total, "jobs": list, "errors": errors })
                    )
                );
            } else {
                print!("{}", job_rows(&jobs.items, &jobs.errors));
                println!("{} of {total} jobs", jobs.items.len());
            }
        }
        JobsCommand::Show { id } => {
            let job = Job::get(&mut conn, id.as_str())
                .await?
                .with_context(|| format!("no job {id:?}"))?;
            let lines = Job::output_count(&mut conn, &id).await?;
            let tail = Job::output(&mut conn, &id, OutputRange::last(10)).await?;
            if json {
                let mut v = job_json(&job);
                v["output_lines"] = json!(lines);
                v["output_tail"] = json!(tail);
                println!("{}", json_line(&v));
            } else {
                print!("{}", job_rows(std::slice::from_ref(&job), &[]));
                if let Some(error) = &job.error {
                    println!("error: {}", clean(error));
                }
                println!("-- output ({lines} lines, last {}) --", tail.len());
                for line in tail {
                    println!("{}", clean(&line));
                }
            }
        }
        JobsCommand::Tail { id, follow } => tail(store, &id, follow, json).await?,
        JobsCommand::Retry { id } => {
            let entry = Job::retry(&mut conn, &id, now_millis()).await?;
            if json {
                println!("{}", json_line(&json!({ "job_id": id, "entry": entry })));
            } else {
                println!("job {} queued again (entry {entry})", clean(&id));
            }
        }
        JobsCommand::Cancel { id } => {
            let cancel = Job::cancel(&mut conn, &id, now_millis()).await?;
            if json {
                let outcome = match cancel {
                    Cancel::Cancelled => "cancelled",
                    Cancel::Requested => "requested",
                };
                println!("{}", json_line(&json!({ "job_id": id, "cancel": outcome })));
            } else {
                match cancel {
                    Cancel::Cancelled => println!("job {} cancelled", clean(&id)),
                    Cancel::Requested => println!("job {} is running: its runner was asked to cancel it", clean(&id)),
                }
            }
        }
        JobsCommand::Delete { ids } => {
            let mut removed = Vec::new();
            let mut absent = Vec::new();
            for id in &ids {
                if Job::remove(&mut conn, id).await? {
                    removed.push(id.as_str());
                } else {
                    absent.push(id.as_str());
                }
            }
            if json {
                println!("{}", json_line(&json!({ "removed": removed, "absent": absent })));
            } else {
                for id in &removed {
                    println!("job {} removed", clean(id));
                }
                for id in &absent {
                    println!("no job {}", clean(id));
                }
            }
        }
        JobsCommand::RunNow { id } => {
            let entry = Job::run_now(&mut conn, &id, now_millis()).await?;
            if json {
                println!("{}", json_line(&json!({ "job_id": id, "entry": entry })));
            } else {
                println!("job {} queued now (entry {entry})", clean(&id));
            }
        }
    }
    Ok(())
}

/// Prints a job's output; with `follow`, as it grows, until the job is over.
/// With `json`, one JSON object per line (JSON Lines): `{"line": ...}` per
/// output line and, when following, `{"job_id": ..., "status": ...}` at the end.
/// Following waits on `jobs:events` (a blocking read) for the job's output,
/// progress and status events, and looks by itself every 5 s in case an
/// event was not written (another client's writes).
async fn tail(store: &Store, id: &str, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let mut events = store.dedicated(Some(EVENT_WAIT));
    // Events from before the first read are covered by it.
    let mut after = if follow {
        JobEvent::last_id(&mut conn).await?
    } else {
        String::new()
    };
    let mut seen: isize = 0;
    let mut progress: Option<(u8, Option<String>)> = None;
    loop {
        let job = Job::get(&mut conn, id)
            .await?
            .with_context(|| format!("no job {id:?}"))?;
        let lines = Job::output(&mut conn, id, OutputRange { start: seen, end: -1 }).await?;
        seen += lines.len() as isize;
        for line in &lines {
            if json {
                println!("{}", json_line(&json!({ "line": line })));
            } else {
                println!("{}", clean(line));
            }
        }
        let now_at = job.progress.map(|p| (p, job.progress_message.clone()));
        if follow && now_at.is_some() && now_at != progress {
            progress = now_at;
            if let Some((percent, message)) = &progress {
                let message = message.as_deref().unwrap_or("");
                if json {
                    println!("{}", json_line(&json!({ "progress": percent, "message": message })));
                } else {
                    eprintln!("[{percent}%] {}", clean(message));
                }
            }
        }
        if !follow || (job.status.is_final() && lines.is_empty()) {
            if follow && json {
                println!(
                    "{}",
                    json_line(&json!({ "job_id": id, "status": job.status.to_string() }))
                );
            } else if follow {
                eprintln!("job {} {}", clean(id), job.status);
            }
            return Ok(());
        }
        // Until an event of this job, or the look of every 5 s.
        let wait = async {
            let deadline = tokio::time::Instant::now() + LOOK_EVERY;
            while tokio::time::Instant::now() < deadline {
                match JobEvent::read(&mut events, &after, Some(EVENT_WAIT), 100).await {
                    Ok(read) => {
                        if let Some(last) = read.last() {
                            after = last.id.clone();
                        }
                        if read.iter().any(|e| e.job_id == id) {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(EVENT_WAIT).await,
                }
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = shutdown_signal() => return Ok(()),
        }
    }
}

/// How long one blocking read of `jobs:events` waits.
const EVENT_WAIT: Duration = Duration::from_secs(1);

/// How often `jobs tail -f` looks at the job without an event.
const LOOK_EVERY: Duration = Duration::from_secs(5);
