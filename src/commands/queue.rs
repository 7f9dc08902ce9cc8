//! `repobox queue stats|pause|resume|purge|pending|requeue-dead|trim|dead`.

use std::time::Duration;

use anyhow::Context;
use repobox_models::{
    DeadLetter, JOBS_GROUP, JOBS_STREAM, Job, JobStatus, Overview, Priority, level_queues, now_millis,
};
use repobox_orm::queue::OUTCOMES;
use repobox_orm::{Queue, Store, Walk};
use serde_json::json;

use crate::cli::QueueCommand;
use crate::output::{duration_ms, json_line, render};
use crate::progress::Progress;

pub async fn queue(store: &Store, cmd: QueueCommand, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    match cmd {
        QueueCommand::Stats => stats(&mut conn, &q, json).await?,
        QueueCommand::Purge {
            status,
            older_than,
            dry_run,
            limit,
            rate,
        } => {
            let status = JobStatus::from(status);
            let cutoff = now_millis().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
            let progress = Progress::new("queue purge", "jobs", json);
            let walk = Walk::new().progress(&progress).per_second(rate);
            let purged = Job::purge_with(&mut conn, status, cutoff, limit, dry_run, &walk).await;
            progress.finish(purged.is_ok());
            let purged = purged?;
            if json {
                let out = json!({
                    "status": status.to_string(),
                    "finished_before": cutoff,
                    "dry_run": dry_run,
                    "matched": purged.matched.len(),
                    "removed": purged.removed,
                    "ids": purged.matched,
                });
                println!("{}", json_line(&out));
            } else if dry_run {
                for id in &purged.matched {
                    println!("{}", crate::output::clean(id));
                }
                println!("{} {status} job(s) would be removed", purged.matched.len());
            } else {
                println!("removed {} {status} job(s)", purged.removed);
            }
        }
        QueueCommand::Pause => {
            let changed = q.pause(&mut conn).await?;
            if json {
                println!("{}", json_line(&json!({ "paused": true, "changed": changed })));
            } else if changed {
                println!("queue paused: runners take no new jobs; running ones finish");
            } else {
                println!("queue was paused already");
            }
        }
        QueueCommand::Resume => {
            let changed = q.resume(&mut conn).await?;
            if json {
                println!("{}", json_line(&json!({ "paused": false, "changed": changed })));
            } else if changed {
                println!("queue resumed");
            } else {
                println!("queue was not paused");
            }
        }
        QueueCommand::Pending { limit } => {
            // Every priority level, highest first, up to `limit` in all.
            let mut pending = Vec::new();
            for (level, lq) in levels() {
                let left = limit.saturating_sub(pending.len());
                if left == 0 {
                    break;
                }
                match lq.pending_entries(&mut conn, left).await {
                    Ok(p) => pending.extend(p.into_iter().map(|p| (level, p))),
                    Err(e) if e.is_missing_group() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if json {
                let list: Vec<_> = pending
                    .iter()
                    .map(|(level, p)| json!({ "id": p.id, "level": level.to_string(), "consumer": p.consumer, "idle_ms": millis(p.idle), "deliveries": p.deliveries }))
                    .collect();
                println!("{}", json_line(&list));
            } else {
                let rows: Vec<Vec<String>> = pending
                    .iter()
                    .map(|(level, p)| {
                        vec![
                            p.id.clone(),
                            level.to_string(),
                            p.consumer.clone(),
                            duration_ms(Some(i64::try_from(p.idle.as_millis()).unwrap_or(i64::MAX))),
                            p.deliveries.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    render(&["ENTRY", "LEVEL", "CONSUMER", "IDLE", "DELIVERIES"], &rows)
                );
            }
        }
        QueueCommand::RequeueDead { ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name the dead letters to requeue, or pass --all");
            }
            let which = if all { None } else { Some(&ids[..]) };
            let letters = Job::requeue_dead(&mut conn, which).await?;
            if json {
                println!("{}", json_line(&json!({ "requeued": letters.len() })));
            } else {
                println!("requeued {} dead letter(s)", letters.len());
            }
        }
        QueueCommand::Trim {
            older_than_secs,
            max_len,
        } => {
            if older_than_secs.is_none() && max_len.is_none() {
                anyhow::bail!("say how: --older-than-secs N or --max-len N");
            }
            // Every priority level's stream.
            let mut removed = 0u64;
            for (_, lq) in levels() {
                removed = removed.saturating_add(match (older_than_secs, max_len) {
                    (_, Some(n)) => lq.trim(&mut conn, n).await?,
                    (Some(secs), None) => lq.trim_older_than(&mut conn, Duration::from_secs(secs)).await?,
                    (None, None) => 0,
                });
            }
            if json {
                println!("{}", json_line(&json!({ "removed": removed })));
            } else {
                println!("removed {removed} entries");
            }
        }
        QueueCommand::Dead { limit } => {
            // Every priority level's dead letters, highest first, up to `limit` in all.
            let dead = Job::dead_letters(&mut conn, limit).await?;
            if json {
                let list: Vec<serde_json::Value> = dead
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::to_value(&d.entry).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("level".into(), json!(d.level.to_string()));
                        }
                        v
                    })
                    .collect();
                println!("{}", json_line(&list));
            } else {
                let field = |d: &DeadLetter, k: &str| d.field(k).unwrap_or("-").to_owned();
                let rows: Vec<Vec<String>> = dead
                    .iter()
                    .map(|d| {
                        vec![
                            d.entry.id.clone(),
                            d.level.to_string(),
                            field(d, "job_id"),
                            field(d, "deliveries"),
                            field(d, "reason"),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    render(&["DEAD LETTER", "LEVEL", "JOB", "DELIVERIES", "REASON"], &rows)
                );
            }
        }
    }
    Ok(())
}

/// The queue of each priority level, highest first (the normal one is
/// `jobs:stream`).
fn levels() -> Vec<(Priority, Queue)> {
    level_queues().collect()
}

/// `queue stats`: jobs per status (from `jobs:status:<status>`), what waits
/// for the group, whether the queue is paused, the pending list, consumers
/// and dead letters. Read-only: a stream or group that does not exist yet
/// reads as empty.
async fn stats(conn: &mut Store, q: &Queue, json: bool) -> anyhow::Result<()> {
    // Jobs per status, each level's length and what waits, the pause: as
    // the web UI and /metrics read them.
    let overview = Overview::read(conn).await?;
    let normal = overview
        .level(Priority::Normal)
        .context("the overview has no normal level")?;
    let (len, waiting, dead) = (normal.length, normal.waiting, normal.dead);
    let (pending, consumers) = match (q.pending(conn).await, q.consumers(conn).await) {
        (Ok(p), Ok(c)) => (p, c),
        // No group yet: nothing is pending, no one consumes.
        (Err(e), _) | (_, Err(e)) if e.is_missing_group() => (Default::default(), Vec::new()),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let paused = overview.paused_since;
    let parked = q.parked(conn).await?;
    let levels: serde_json::Map<String, serde_json::Value> = overview
        .levels
        .iter()
        .map(|l| {
            (
                l.level.to_string(),
                json!({ "stream": l.stream, "length": l.length, "waiting": l.waiting }),
            )
        })
        .collect();
    let metrics = q.metrics(conn, &OUTCOMES, now_millis()).await?;
    let last_hour: Vec<(&str, u64)> = OUTCOMES
        .iter()
        .map(|o| (*o, metrics.per_minute.get(*o).map_or(0, |m| m.iter().sum())))
        .collect();
    let percentiles = [50u8, 90, 99].map(|p| (p, metrics.percentile(p)));
    let by_status = &overview.jobs;
    if json {
        let consumers: Vec<_> = consumers
            .iter()
            .map(|c| json!({ "name": c.name, "pending": c.pending, "idle_ms": millis(c.idle) }))
            .collect();
        let jobs: serde_json::Map<String, serde_json::Value> =
            by_status.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        let out = json!({
            "stream": JOBS_STREAM,
            "group": JOBS_GROUP,
            "paused": paused.is_some(),
            "paused_at": paused,
            "waiting": waiting,
            "levels": levels,
            "parked": parked,
            "jobs": jobs,
            "length": len,
            "pending": pending.count,
            "oldest_pending_idle_ms": pending.oldest_idle.map(millis),
            "consumers": consumers,
            "dead_letters": dead,
            "last_hour": last_hour.iter().map(|(o, n)| (o.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "per_minute": metrics.per_minute,
            "duration_ms": {
                "runs": metrics.durations_ms.len(),
                "p50": percentiles[0].1,
                "p90": percentiles[1].1,
                "p99": percentiles[2].1,
            },
        });
        println!("{}", json_line(&out));
        return Ok(());
    }
    println!("stream        {JOBS_STREAM} (group {JOBS_GROUP})");
    println!("state         {}", if paused.is_some() { "paused" } else { "running" });
    println!("waiting       {waiting} (entries not yet delivered)");
    for (level, v) in &levels {
        println!("  {level:<11} {} waiting of {}", v["waiting"], v["length"]);
    }
    println!("parked        {parked} (queued jobs waiting for a slot of their user)");
    for (status, n) in by_status {
        println!("{:<13} {n}", status.to_string());
    }
    println!("length        {len}");
    let oldest = pending
        .oldest_idle
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    println!("pending       {} (oldest idle {})", pending.count, duration_ms(oldest));
    println!("dead letters  {dead}");
    let hour: Vec<String> = last_hour.iter().map(|(o, n)| format!("{n} {o}")).collect();
    println!("last hour     {}", hour.join(", "));
    let shown: Vec<String> = percentiles
        .iter()
        .map(|(p, ms)| format!("p{p} {}", duration_ms(ms.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))))
        .collect();
    println!(
        "run time      {} (last {} runs)",
        shown.join(", "),
        metrics.durations_ms.len()
    );
    let rows: Vec<Vec<String>> = consumers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.pending.to_string(),
                duration_ms(Some(i64::try_from(c.idle.as_millis()).unwrap_or(i64::MAX))),
            ]
        })
        .collect();
    print!("{}", render(&["CONSUMER", "PENDING", "IDLE"], &rows));
    Ok(())
}

/// A duration in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
