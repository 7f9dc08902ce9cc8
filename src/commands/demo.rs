//! `repobox demo`: a user logs in, enqueues jobs, a runner runs them.
//!
//! Without a Redis given it starts a throw-away `redis-server` of its own.
//! Given one, it works in a namespace of its own (its own stream and group,
//! ids prefixed with the run), so it never runs or touches another
//! application's jobs, and removes what it wrote at the end unless `--keep`.
//! With `--json` it tells nothing as it goes and prints one JSON summary.

use std::time::Duration;

use anyhow::{Context, bail};
use repobox_models::{GitProvider, GitProviders, Job, JobStatus, OutputRange, Session, User, now_millis};
use repobox_orm::{Page, Queue, Store, TlsConfig};
use repobox_runner::{Runner, RunnerConfig};

use serde_json::json;

use super::{store_for, with_reach};
use crate::cli::DemoArgs;
use crate::handler::DemoHandler;
use crate::output::{clean, job_json, job_rows, json_line};
use crate::redact;

/// A line of the demo's story, unless `--json` asked for the summary only.
macro_rules! say {
    ($json:expr, $($line:tt)*) => {
        if !$json {
            println!($($line)*);
        }
    };
}

/// Where the demo's Redis comes from.
enum DemoRedis {
    Given(String),
    #[cfg(feature = "embedded-redis")]
    Embedded(crate::embedded::EmbeddedRedis),
}

#[cfg(feature = "embedded-redis")]
async fn throw_away(json: bool) -> anyhow::Result<DemoRedis> {
    say!(
        json,
        "Starting a throw-away redis-server for the demo (it stops with the demo; set REDIS_URL to use another)."
    );
    let server = crate::embedded::EmbeddedRedis::start()
        .await
        .context("no Redis was given and none could be started")?;
    Ok(DemoRedis::Embedded(server))
}

#[cfg(not(feature = "embedded-redis"))]
async fn throw_away(_json: bool) -> anyhow::Result<DemoRedis> {
    bail!("no Redis was given: set REDIS_URL (this build cannot start its own redis-server)")
}

/// The names the demo writes under: all of them carry the run's id.
struct Namespace {
    run: String,
    stream: String,
    group: String,
}

pub async fn demo(url: Option<&str>, tls: Option<TlsConfig>, args: &DemoArgs, json: bool) -> anyhow::Result<()> {
    let redis = match url {
        Some(url) => DemoRedis::Given(url.to_owned()),
        None => throw_away(json).await?,
    };
    let url = match &redis {
        DemoRedis::Given(url) => {
            say!(
                json,
                "Using Redis at {}, in a namespace of the demo's own",
                redact::url(url)
            );
            url.clone()
        }
        #[cfg(feature = "embedded-redis")]
        DemoRedis::Embedded(server) => server.url(),
    };
    // Certificates are for the Redis the user named; the throw-away one is plain.
    let tls = if matches!(redis, DemoRedis::Given(_)) {
        tls
    } else {
        None
    };
    let store = store_for(&url, tls, true)?;
    let run = format!("demo-{}-{}", now_millis(), std::process::id());
    let ns = Namespace {
        stream: format!("repobox-demo:{run}:stream"),
        group: "demo".to_owned(),
        run,
    };
    let result = flow(&store, &ns, args, json).await;
    let cleaned = if args.keep {
        Ok(())
    } else {
        clean_up(&store, &ns, args, json).await
    };
    store.close().await;
    let shown_url = match &redis {
        DemoRedis::Given(url) => Some(redact::url(url)),
        #[cfg(feature = "embedded-redis")]
        DemoRedis::Embedded(_) => None,
    };
    drop(redis);
    let summary = result
        .and_then(|summary| cleaned.map(|()| summary))
        .map_err(|e| with_reach(e, &url))?;
    if json {
        let out = json!({
            "redis": shown_url,
            "user_id": ns.run,
            "stream": ns.stream,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "jobs": summary.jobs.iter().map(job_json).collect::<Vec<_>>(),
            "kept": args.keep,
        });
        println!("{}", json_line(&out));
    }
    Ok(())
}

/// What `--json` reports of a run.
struct Summary {
    succeeded: u64,
    failed: u64,
    jobs: Vec<Job>,
}

fn job_ids(ns: &Namespace, args: &DemoArgs) -> Vec<String> {
    (0..args.jobs).map(|i| format!("{}-job-{i}", ns.run)).collect()
}

async fn flow(store: &Store, ns: &Namespace, args: &DemoArgs, json: bool) -> anyhow::Result<Summary> {
    let mut conn = store.clone();
    let now = now_millis();
    let user = User {
        id: ns.run.clone(),
        email: format!("{}@example.com", ns.run),
        name: "Demo User".into(),
        created_at: now,
        last_login_at: None,
        is_admin: false,
    };
    User::create(&mut conn, &user).await.context("creating the demo user")?;
    say!(json, "\n1. Created user {} <{}>", user.id, user.email);

    let (token, _) = Session::create_user_session(&mut conn, &user.id, Some("repobox-demo".into()), None).await?;
    User::update_last_login(&mut conn, &user.id, now_millis()).await?;
    GitProviders::add(&mut conn, &user.id, GitProvider::GitHub).await?;
    let ttl = Session::ttl(&mut conn, token.digest().as_str())
        .await?
        .unwrap_or_default();
    // The token goes to the browser; only a fingerprint of it is ever shown.
    say!(json, "2. Logged in: {token}, expires in {} h", ttl.as_secs() / 3600);

    let q = Queue::new(ns.stream.clone(), ns.group.clone());
    q.ensure_group(&mut conn).await?;
    let ids = job_ids(ns, args);
    for (i, id) in ids.iter().enumerate() {
        let repo = if i % 3 == 2 {
            format!("https://github.com/demo/fail-project-{i}.git")
        } else {
            format!("https://github.com/demo/project-{i}.git")
        };
        let job = Job::new(
            id.clone(),
            &user.id,
            repo,
            now_millis().saturating_add(i64::try_from(i).unwrap_or(i64::MAX)),
        );
        Job::create_and_enqueue_on(&mut conn, &job, now_millis(), &ns.stream).await?;
    }
    say!(json, "3. Enqueued {} jobs on {}", ids.len(), ns.stream);

    say!(json, "4. Running them with an in-process runner…");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RunnerConfig::new(format!("{}-runner", ns.run))
        .queue(ns.stream.clone(), ns.group.clone())
        .concurrency(4);
    let runner = Runner::new(store.clone(), DemoHandler::default(), config);
    let handle = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = Job::get_many(&mut conn, &ids).await?.into_result()?;
        if jobs.iter().flatten().all(|j| j.status.is_final()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the demo jobs did not finish within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    let stats = handle.await??;
    say!(json, "   {} succeeded, {} failed", stats.succeeded, stats.failed);

    let page = Job::user_jobs(&mut conn, &user.id, Page::newest(20)).await?;
    let total = Job::user_job_count(&mut conn, &user.id).await?;
    say!(json, "\n5. Jobs of {} (newest first, {total} in all):", user.id);
    if !json {
        print!("{}", job_rows(&page.items, &page.errors));
    }

    if let Some(failed) = page
        .items
        .iter()
        .find(|j| j.status == JobStatus::Failed)
        .or(page.items.first())
    {
        let output = Job::output(&mut conn, &failed.id, OutputRange::ALL).await?;
        say!(json, "\n6. Output of {} ({}):", failed.id, failed.status);
        for line in output {
            say!(json, "   {}", clean(&line));
        }
    }
    if args.keep {
        say!(json, "\nKept. Try: repobox jobs list --user {}", user.id);
    }
    Ok(Summary {
        succeeded: stats.succeeded,
        failed: stats.failed,
        jobs: page.items,
    })
}

/// Removes what the demo wrote: its jobs with their output, its user with
/// its sessions and email claim, its providers, its stream, dead letters and
/// the runner's metrics of the stream.
async fn clean_up(store: &Store, ns: &Namespace, args: &DemoArgs, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let ids = job_ids(ns, args);
    for id in &ids {
        Job::delete_with_output(&mut conn, id).await?;
    }
    User::delete_with_sessions(&mut conn, &ns.run).await?;
    GitProviders::remove(&mut conn, &ns.run, GitProvider::GitHub).await?;
    remove_events_of(&mut conn, &ids).await?;
    let queue = repobox_orm::Queue::new(ns.stream.clone(), repobox_models::JOBS_GROUP);
    let metrics: Vec<String> = repobox_orm::queue::OUTCOMES
        .iter()
        .map(|o| queue.metrics_key(o))
        .collect();
    let levels: Vec<String> = [repobox_models::Priority::High, repobox_models::Priority::Low]
        .iter()
        .flat_map(|p| {
            let stream = p.stream(&ns.stream).into_owned();
            [format!("{stream}:dead"), stream]
        })
        .collect();
    let _: () = redis::cmd("DEL")
        .arg(&ns.stream)
        .arg(levels)
        .arg(queue.dead_stream())
        .arg(queue.durations_key())
        .arg(metrics)
        .query_async(&mut conn)
        .await?;
    say!(json, "\nRemoved what the demo wrote (--keep keeps it).");
    Ok(())
}

/// Takes the demo's jobs' events out of the shared `jobs:events` (and the
/// stream itself, when nothing else is left in it).
async fn remove_events_of(conn: &mut Store, ids: &[String]) -> anyhow::Result<()> {
    let mut from = "-".to_owned();
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(repobox_models::JOB_EVENTS)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        let Some(last) = page.ids.last().map(|e| e.id.clone()) else {
            break;
        };
        let ours: Vec<&str> = page
            .ids
            .iter()
            .filter(|e| e.get::<String>("job_id").is_some_and(|j| ids.contains(&j)))
            .map(|e| e.id.as_str())
            .collect();
        if !ours.is_empty() {
            let _: i64 = redis::cmd("XDEL")
                .arg(repobox_models::JOB_EVENTS)
                .arg(ours)
                .query_async(conn)
                .await?;
        }
        if page.ids.len() < 1000 {
            break;
        }
        from = format!("({last}");
    }
    let left: u64 = redis::cmd("XLEN")
        .arg(repobox_models::JOB_EVENTS)
        .query_async(conn)
        .await?;
    if left == 0 {
        let _: i64 = redis::cmd("DEL")
            .arg(repobox_models::JOB_EVENTS)
            .query_async(conn)
            .await?;
    }
    Ok(())
}
