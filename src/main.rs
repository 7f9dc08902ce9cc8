//! `repobox`: the demo, the job runner, and inspection of jobs, the queue and indexes.

mod handler;
mod table;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use repobox_models::runner::{Runner, RunnerConfig};
use repobox_models::{
    GitProvider, GitProviders, JOBS_GROUP, JOBS_STREAM, Job, JobStatus, OutputRange, Session, User, now_millis,
};
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisServer;
use repobox_orm::{Backoff, Queue};
use serde_json::json;

use crate::handler::DemoHandler;

#[derive(Parser)]
#[command(
    name = "repobox",
    version,
    about = "The repobox data layer: demo, job runner and inspection"
)]
struct Cli {
    /// Redis to use (default: $REDIS_URL, else redis://127.0.0.1:6379).
    #[arg(long, global = true, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Where the demo looks for a local Redis before it starts its own.
    #[arg(long, global = true, hide = true, default_value = repobox_orm::DEFAULT_URL)]
    local_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole flow: a user logs in, enqueues jobs, a runner runs them.
    Demo(DemoArgs),
    /// Runs jobs from `jobs:stream` until Ctrl-C or SIGTERM.
    Runner(RunnerArgs),
    /// Reads jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspects the job queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Maintains indexes.
    #[command(subcommand)]
    Index(IndexCommand),
}

#[derive(Args)]
struct DemoArgs {
    /// How many jobs to enqueue (every third one fails).
    #[arg(long, default_value_t = 4)]
    jobs: usize,
}

#[derive(Args)]
struct RunnerArgs {
    /// This runner's consumer name (default: runner-HOSTNAME-PID).
    #[arg(long)]
    consumer: Option<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds a delivery must be idle before another runner takes it over.
    #[arg(long, default_value_t = 30)]
    min_idle_secs: u64,
    /// Deliveries before a job is dead-lettered.
    #[arg(long, default_value_t = 5)]
    max_deliveries: u64,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// A user's jobs, newest first.
    List {
        /// The user's id.
        #[arg(long)]
        user: String,
        /// Page size.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Jobs to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One job and the end of its output.
    Show {
        /// The job's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follows a job's output until the job ends.
    Tail {
        /// The job's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Length, pending deliveries, consumers and dead letters.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists dead letters.
    Dead {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Removes index entries whose entity is gone.
    Repair {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("REPOBOX_LOG").unwrap_or_else(|_| "off".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause that the
/// message before it already says.
fn one_line(e: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.last().is_some_and(|prev| prev.contains(&text)) {
            out.push(text);
        }
    }
    out.join(": ")
}

fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<repobox_orm::Error>() {
        Some(repobox_orm::Error::Redis(r)) => r.is_connection_refusal() || r.is_io_error(),
        Some(repobox_orm::Error::Timeout(_)) => true,
        _ => false,
    })
}

fn store_for(url: &str) -> anyhow::Result<Store> {
    let config = StoreConfig::default().backoff(Backoff::default().max_attempts(Some(3)));
    Store::with_config(url, config).with_context(|| format!("invalid Redis URL {url:?}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo(args) = &cli.command {
        return demo(cli.redis_url.as_deref(), &cli.local_url, args).await;
    }
    let url = cli
        .redis_url
        .clone()
        .unwrap_or_else(|| repobox_orm::DEFAULT_URL.to_owned());
    let store = store_for(&url)?;
    let result = match cli.command {
        Command::Demo(_) => unreachable!("handled above"),
        Command::Runner(args) => runner(&store, args).await,
        Command::Jobs(cmd) => jobs(&store, cmd).await,
        Command::Queue(cmd) => queue(&store, cmd).await,
        Command::Index(IndexCommand::Repair { json }) => repair(&store, json).await,
    };
    store.close().await;
    result.map_err(|e| {
        if is_unreachable(&e) {
            e.context(format!("cannot reach Redis at {url}"))
        } else {
            e
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn runner(store: &Store, args: RunnerArgs) -> anyhow::Result<()> {
    let consumer = args.consumer.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("runner-{}-{}", host.trim(), std::process::id())
    });
    let config = RunnerConfig::new(consumer.clone())
        .concurrency(args.concurrency)
        .min_idle(Duration::from_secs(args.min_idle_secs))
        .max_deliveries(args.max_deliveries);
    eprintln!("runner {consumer} waiting for jobs on {JOBS_STREAM} (Ctrl-C to stop)");
    let stats = Runner::new(store.clone(), DemoHandler::default(), config)
        .run(shutdown_signal())
        .await
        .context("the runner failed")?;
    eprintln!(
        "runner stopped: {} succeeded, {} failed, {} retried, {} dead-lettered, {} released",
        stats.succeeded, stats.failed, stats.retried, stats.dead_lettered, stats.released
    );
    Ok(())
}

fn job_json(job: &Job) -> serde_json::Value {
    json!({
        "id": job.id,
        "user_id": job.user_id,
        "repo_url": job.repo_url,
        "status": job.status.as_str(),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "exit_code": job.exit_code,
        "error": job.error,
        "retries": job.retries,
        "history": job.history,
    })
}

fn job_rows(jobs: &[Job]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let took = j.started_at.zip(j.finished_at).map(|(s, f)| f - s);
            vec![
                j.id.clone(),
                j.status.to_string(),
                j.exit_code.map_or("-".into(), |c| c.to_string()),
                table::duration_ms(took),
                j.repo_url.clone(),
            ]
        })
        .collect();
    table::render(&["ID", "STATUS", "EXIT", "TOOK", "REPOSITORY"], &rows)
}

async fn jobs(store: &Store, cmd: JobsCommand) -> anyhow::Result<()> {
    let mut conn = store.clone();
    match cmd {
        JobsCommand::List {
            user,
            limit,
            offset,
            json,
        } => {
            let jobs = Job::user_jobs(&mut conn, &user, Page::newest(limit).offset(offset)).await?;
            let total = Job::user_job_count(&mut conn, &user).await?;
            if json {
                let list: Vec<_> = jobs.iter().map(job_json).collect();
                println!("{}", json!({ "user_id": user, "total": total, "jobs": list }));
            } else {
                print!("{}", job_rows(&jobs));
                println!("{} of {total} jobs", jobs.len());
            }
        }
        JobsCommand::Show { id, json } => {
            let job = Job::get(&mut conn, id.as_str())
                .await?
                .with_context(|| format!("no job {id:?}"))?;
            let lines = Job::output_count(&mut conn, &id).await?;
            let tail = Job::output(&mut conn, &id, OutputRange::last(10)).await?;
            if json {
                let mut v = job_json(&job);
                v["output_lines"] = json!(lines);
                v["output_tail"] = json!(tail);
                println!("{v}");
            } else {
                print!("{}", job_rows(std::slice::from_ref(&job)));
                if let Some(error) = &job.error {
                    println!("error: {error}");
                }
                println!("-- output ({lines} lines, last {}) --", tail.len());
                for line in tail {
                    println!("{line}");
                }
            }
        }
        JobsCommand::Tail { id } => tail(store, &id).await?,
    }
    Ok(())
}

async fn tail(store: &Store, id: &str) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let mut seen: isize = 0;
    loop {
        let job = Job::get(&mut conn, id)
            .await?
            .with_context(|| format!("no job {id:?}"))?;
        let lines = Job::output(&mut conn, id, OutputRange { start: seen, end: -1 }).await?;
        seen += lines.len() as isize;
        for line in &lines {
            println!("{line}");
        }
        if job.status.is_final() && lines.is_empty() {
            eprintln!("job {id} {}", job.status);
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown_signal() => return Ok(()),
        }
    }
}

async fn queue(store: &Store, cmd: QueueCommand) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    match cmd {
        QueueCommand::Stats { json } => {
            q.ensure_group(&mut conn).await?;
            let len = q.len(&mut conn).await?;
            let pending = q.pending(&mut conn).await?;
            let consumers = q.consumers(&mut conn).await?;
            let dead = q.dead_len(&mut conn).await?;
            if json {
                let consumers: Vec<_> = consumers
                    .iter()
                    .map(|c| json!({ "name": c.name, "pending": c.pending, "idle_ms": c.idle.as_millis() as u64 }))
                    .collect();
                let out = json!({
                    "stream": JOBS_STREAM,
                    "group": JOBS_GROUP,
                    "length": len,
                    "pending": pending.count,
                    "oldest_pending_idle_ms": pending.oldest_idle.map(|d| d.as_millis() as u64),
                    "consumers": consumers,
                    "dead_letters": dead,
                });
                println!("{out}");
            } else {
                println!("stream        {JOBS_STREAM} (group {JOBS_GROUP})");
                println!("length        {len}");
                let oldest = pending.oldest_idle.map(|d| d.as_millis() as i64);
                println!(
                    "pending       {} (oldest idle {})",
                    pending.count,
                    table::duration_ms(oldest)
                );
                println!("dead letters  {dead}");
                let rows: Vec<Vec<String>> = consumers
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.pending.to_string(),
                            table::duration_ms(Some(c.idle.as_millis() as i64)),
                        ]
                    })
                    .collect();
                print!("{}", table::render(&["CONSUMER", "PENDING", "IDLE"], &rows));
            }
        }
        QueueCommand::Dead { limit, json } => {
            let dead = q.dead_letters(&mut conn, "-", limit).await?;
            if json {
                println!("{}", serde_json::to_string(&dead)?);
            } else {
                let field =
                    |e: &repobox_orm::queue::Entry, k: &str| e.fields.get(k).cloned().unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = dead
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            field(e, "job_id"),
                            field(e, "deliveries"),
                            field(e, "reason"),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table::render(&["DEAD LETTER", "JOB", "DELIVERIES", "REASON"], &rows)
                );
            }
        }
    }
    Ok(())
}

async fn repair(store: &Store, json: bool) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let reports = [
        (
            "Job",
            repobox_orm::engine::sweep::<Job, _>(&mut conn, &<Job as RedisEntity>::META.indexes[0]).await?,
        ),
        (
            "Session",
            repobox_orm::engine::sweep::<Session, _>(&mut conn, &<Session as RedisEntity>::META.indexes[0]).await?,
        ),
        (
            "User",
            repobox_orm::engine::sweep::<User, _>(&mut conn, &<User as RedisEntity>::META.indexes[0]).await?,
        ),
    ];
    if json {
        let out: Vec<_> = reports
            .iter()
            .map(|(entity, r)| json!({ "entity": entity, "index": r.index, "keys": r.keys, "entries": r.entries, "removed": r.removed }))
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|(entity, r)| {
                vec![
                    format!("{entity}::{}", r.index),
                    r.keys.to_string(),
                    r.entries.to_string(),
                    r.removed.to_string(),
                ]
            })
            .collect();
        print!("{}", table::render(&["INDEX", "KEYS", "ENTRIES", "REMOVED"], &rows));
    }
    Ok(())
}

/// Where the demo's Redis comes from.
enum DemoRedis {
    Given(String),
    Local(String),
    Embedded(RedisServer),
}

async fn answers(url: &str) -> bool {
    let config = StoreConfig::default()
        .retry(false)
        .connect_timeout(Duration::from_millis(500));
    let Ok(store) = Store::with_config(url, config) else {
        return false;
    };
    let ok = redis::cmd("PING")
        .query_async::<String>(&mut store.clone())
        .await
        .is_ok();
    store.close().await;
    ok
}

async fn demo(url: Option<&str>, local: &str, args: &DemoArgs) -> anyhow::Result<()> {
    let redis = match url {
        Some(url) => DemoRedis::Given(url.to_owned()),
        None if answers(local).await => DemoRedis::Local(local.to_owned()),
        None => {
            let server = tokio::task::spawn_blocking(|| RedisServer::try_start(&[]))
                .await?
                .with_context(|| format!("no Redis answers at {local} and none could be started"))?;
            println!(
                "No Redis at {local} and REDIS_URL is not set: started a throw-away redis-server on port {} (it stops with the demo).",
                server.port()
            );
            DemoRedis::Embedded(server)
        }
    };
    let url = match &redis {
        DemoRedis::Given(url) | DemoRedis::Local(url) => url.clone(),
        DemoRedis::Embedded(server) => server.url(),
    };
    if !matches!(redis, DemoRedis::Embedded(_)) {
        println!("Using Redis at {url}");
    }
    let store = store_for(&url)?;
    let result = demo_flow(&store, args).await;
    store.close().await;
    drop(redis);
    result.map_err(|e| {
        if is_unreachable(&e) {
            e.context(format!("cannot reach Redis at {url}"))
        } else {
            e
        }
    })
}

async fn demo_flow(store: &Store, args: &DemoArgs) -> anyhow::Result<()> {
    let mut conn = store.clone();
    let run = now_millis();
    let user = User {
        id: format!("demo-{run}"),
        email: format!("demo-{run}@example.com"),
        name: "Demo User".into(),
        created_at: run,
        last_login_at: None,
        is_admin: false,
    };
    User::create(&mut conn, &user).await.context("creating the demo user")?;
    println!("\n1. Created user {} <{}>", user.id, user.email);

    let session =
        Session::create_user_session(&mut conn, &user.id, Some("repobox-demo".into()), None, now_millis()).await?;
    User::update_last_login(&mut conn, &user.id, now_millis()).await?;
    GitProviders::add(&mut conn, &user.id, GitProvider::GitHub).await?;
    let ttl = Session::ttl(&mut conn, session.id.as_str()).await?.unwrap_or_default();
    println!(
        "2. Logged in: session {}… expires in {} h",
        &session.id[..8],
        ttl.as_secs() / 3600
    );

    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await?;
    let mut ids = Vec::new();
    for i in 0..args.jobs {
        let repo = if i % 3 == 2 {
            format!("https://github.com/demo/fail-project-{i}.git")
        } else {
            format!("https://github.com/demo/project-{i}.git")
        };
        let job = Job::new(format!("{}-job-{i}", user.id), &user.id, repo, now_millis() + i as i64);
        Job::create_and_enqueue(&mut conn, &job, now_millis()).await?;
        ids.push(job.id);
    }
    println!("3. Enqueued {} jobs on {JOBS_STREAM}", ids.len());

    println!("4. Running them with an in-process runner…");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = RunnerConfig::new(format!("demo-runner-{}", std::process::id())).concurrency(4);
    let runner = Runner::new(store.clone(), DemoHandler::default(), config);
    let handle = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = Job::get_many(&mut conn, &ids).await?;
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
    println!("   {} succeeded, {} failed", stats.succeeded, stats.failed);

    let page = Job::user_jobs(&mut conn, &user.id, Page::newest(20)).await?;
    let total = Job::user_job_count(&mut conn, &user.id).await?;
    println!("\n5. Jobs of {} (newest first, {total} in all):", user.id);
    print!("{}", job_rows(&page));

    if let Some(failed) = page.iter().find(|j| j.status == JobStatus::Failed).or(page.first()) {
        let output = Job::output(&mut conn, &failed.id, OutputRange::ALL).await?;
        println!("\n6. Output of {} ({}):", failed.id, failed.status);
        for line in output {
            println!("   {line}");
        }
    }
    println!("\nTry: repobox jobs list --user {}   ·   repobox queue stats", user.id);
    Ok(())
}
