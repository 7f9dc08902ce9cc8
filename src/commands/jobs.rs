//! `repobox jobs list|show|tail|retry|cancel|run-now|delete`.

use anyhow::Context;
use repobox_models::{Cancel, Follow, Job, JobStatus, OutputRange, now_millis};
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
/// Following waits on `jobs:events` ([`Follow`]) for the job's output,
/// progress and status events.
async fn tail(store: &Store, id: &str, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut job = Follow::start(store, id).await?;
    let mut progress: Option<(u8, Option<String>)> = None;
    loop {
        let update = tokio::select! {
            update = job.next() => update.map_err(|e| not_found(e, id))?,
            _ = shutdown_signal() => return Ok(()),
        };
        for line in &update.lines {
            if json {
                println!("{}", json_line(&json!({ "line": line })));
            } else {
                println!("{}", clean(line));
            }
        }
        let now_at = update.job.progress.map(|p| (p, update.job.progress_message.clone()));
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
        if !follow || update.done {
            if follow && json {
                println!(
                    "{}",
                    json_line(&json!({ "job_id": id, "status": update.job.status.to_string() }))
                );
            } else if follow {
                eprintln!("job {} {}", clean(id), update.job.status);
            }
            return Ok(());
        }
    }
}

/// "no job ..." for a job that is not there; other errors as they are.
fn not_found(e: repobox_models::Error, id: &str) -> anyhow::Error {
    if e.is_not_found() {
        anyhow::anyhow!("no job {id:?}")
    } else {
        e.into()
    }
}
