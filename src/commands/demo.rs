//! `repobox demo`: a user logs in, enqueues jobs, a runner runs them.

use std::time::Duration;

use anyhow::{Context, bail};
use repobox_models::{
    GitProvider, GitProviders, JOBS_GROUP, JOBS_STREAM, Job, JobStatus, OutputRange, Session, User, now_millis,
};
use repobox_orm::{Page, Queue, Store, StoreConfig, TlsConfig};
use repobox_runner::{Runner, RunnerConfig};

use super::{store_for, with_reach};
use crate::cli::DemoArgs;
use crate::handler::DemoHandler;
use crate::output::job_rows;

/// Where the demo's Redis comes from.
enum DemoRedis {
    Given(String),
    Local(String),
    #[cfg(feature = "embedded-redis")]
    Embedded(crate::embedded::EmbeddedRedis),
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

#[cfg(feature = "embedded-redis")]
async fn throw_away(local: &str) -> anyhow::Result<DemoRedis> {
    let server = crate::embedded::EmbeddedRedis::start()
        .await
        .with_context(|| format!("no Redis answers at {} and none could be started", super::redact(local)))?;
    println!(
        "No Redis at {} and REDIS_URL is not set: started a throw-away redis-server on port {} (it stops with the demo).",
        super::redact(local),
        server.port()
    );
    Ok(DemoRedis::Embedded(server))
}

#[cfg(not(feature = "embedded-redis"))]
async fn throw_away(local: &str) -> anyhow::Result<DemoRedis> {
    bail!(
        "no Redis answers at {}; set REDIS_URL (this build cannot start its own redis-server)",
        super::redact(local)
    )
}

pub async fn demo(url: Option<&str>, local: &str, tls: Option<TlsConfig>, args: &DemoArgs) -> anyhow::Result<()> {
    let redis = match url {
        Some(url) => DemoRedis::Given(url.to_owned()),
        None if answers(local).await => DemoRedis::Local(local.to_owned()),
        None => throw_away(local).await?,
    };
    let url = match &redis {
        DemoRedis::Given(url) | DemoRedis::Local(url) => {
            println!("Using Redis at {}", super::redact(url));
            url.clone()
        }
        #[cfg(feature = "embedded-redis")]
        DemoRedis::Embedded(server) => server.url(),
    };
    // Certificates are for the Redis the user named; a local or throw-away one is plain.
    let tls = if matches!(redis, DemoRedis::Given(_)) {
        tls
    } else {
        None
    };
    let store = store_for(&url, tls)?;
    let result = flow(&store, args).await;
    store.close().await;
    drop(redis);
    result.map_err(|e| with_reach(e, &url))
}

async fn flow(store: &Store, args: &DemoArgs) -> anyhow::Result<()> {
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

    let (token, session) = Session::create_user_session(&mut conn, &user.id, Some("repobox-demo".into()), None).await?;
    User::update_last_login(&mut conn, &user.id, now_millis()).await?;
    GitProviders::add(&mut conn, &user.id, GitProvider::GitHub).await?;
    let ttl = Session::ttl(&mut conn, session.id.as_str()).await?.unwrap_or_default();
    // The token goes to the browser; only a fingerprint of it is ever shown.
    println!("2. Logged in: {token}, expires in {} h", ttl.as_secs() / 3600);

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
    println!("   {} succeeded, {} failed", stats.succeeded, stats.failed);

    let page = Job::user_jobs(&mut conn, &user.id, Page::newest(20)).await?;
    let total = Job::user_job_count(&mut conn, &user.id).await?;
    println!("\n5. Jobs of {} (newest first, {total} in all):", user.id);
    print!("{}", job_rows(&page.items, &page.errors));

    if let Some(failed) = page
        .items
        .iter()
        .find(|j| j.status == JobStatus::Failed)
        .or(page.items.first())
    {
        let output = Job::output(&mut conn, &failed.id, OutputRange::ALL).await?;
        println!("\n6. Output of {} ({}):", failed.id, failed.status);
        for line in output {
            println!("   {}", crate::output::clean(&line));
        }
    }
    println!("\nTry: repobox jobs list --user {}   ·   repobox queue stats", user.id);
    Ok(())
}
