//! The runner against a real redis-server: sharing, takeover, poison jobs,
//! shutdown, and a consumer in another language.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use repobox_models::*;
use repobox_orm::{Queue, Store};
use repobox_runner::{HandlerResult, JobHandler, Output, RunStats, Runner, RunnerConfig};
use tokio::sync::oneshot;

// Every test runs on a single server and on a 3-primary cluster, where
// jobs are created and dead-lettered by ordered steps.
repobox_orm::on_both_backends!(multi_thread:
    two_runners_share_the_work_and_run_nothing_twice,
    a_killed_runners_job_is_taken_over_and_succeeds_once,
    a_poison_job_is_dead_lettered_after_the_maximum_deliveries,
    shutdown_releases_jobs_that_do_not_finish_in_time,
    a_plain_redis_consumer_processes_a_repobox_job,
    every_kind_of_poison_is_dead_lettered_after_exactly_the_maximum_deliveries,
    two_entries_for_one_job_run_it_once_with_one_runner,
    two_entries_for_one_job_run_it_once_with_two_runners,
    a_retried_and_requeued_dead_job_runs_once_at_a_time,
    a_run_that_lost_its_lease_stops_and_cannot_write_the_jobs_status,
    an_entry_naming_another_user_is_dead_lettered_and_the_job_left_alone
);

/// Counts runs per job (and the most that ran at once); fails jobs whose
/// repo says so; can be told to hang.
#[derive(Clone, Default)]
struct Recorder {
    runs: Arc<Mutex<HashMap<String, u32>>>,
    /// Per job: runs going on now, and the most that ever went on at once.
    concurrent: Arc<Mutex<HashMap<String, (u32, u32)>>>,
    started: Arc<tokio::sync::Notify>,
    hang_every_job: bool,
    /// For "vanish": the job's hash is deleted while it runs.
    store: Option<Store>,
}

impl JobHandler for Recorder {
    async fn run(&self, job: Job, output: Output) -> HandlerResult {
        *self.runs.lock().unwrap().entry(job.id.clone()).or_default() += 1;
        let _running = Running::enter(&self.concurrent, &job.id);
        self.started.notify_one();
        output
            .line(format!("building {}", job.repo_url))
            .await
            .map_err(|e| e.to_string())?;
        if self.hang_every_job {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        match job.repo_url.as_str() {
            "poison" => Err("cannot clone".into()),
            "panic" => panic!("the handler blew up"),
            "vanish" => {
                let mut conn = self.store.clone().expect("a store for vanish");
                let _: () = redis::cmd("DEL")
                    .arg(format!("job:{}", job.id))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                Ok(0)
            }
            "exit-2" => Ok(2),
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0)
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(0)
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(0)
            }
        }
    }
}

/// One run going on: counted in, and out when the run ends however it ends
/// (returns, panics, or is aborted).
struct Running {
    concurrent: Arc<Mutex<HashMap<String, (u32, u32)>>>,
    job: String,
}

impl Running {
    fn enter(concurrent: &Arc<Mutex<HashMap<String, (u32, u32)>>>, job: &str) -> Self {
        let mut map = concurrent.lock().unwrap();
        let (now, most) = map.entry(job.to_owned()).or_default();
        *now += 1;
        *most = (*most).max(*now);
        Running {
            concurrent: concurrent.clone(),
            job: job.to_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some((now, _)) = self
            .concurrent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.job)
        {
            *now -= 1;
        }
    }
}

impl Recorder {
    fn most_at_once(&self, job: &str) -> u32 {
        self.concurrent.lock().unwrap().get(job).map_or(0, |(_, most)| *most)
    }

    fn runs_of(&self, job: &str) -> u32 {
        self.runs.lock().unwrap().get(job).copied().unwrap_or(0)
    }
}

/// Asserts that a job's history is a sequence its status machine allows: a
/// running job runs again only when a run took it over from an expired lease.
fn assert_valid_history(job: &Job) {
    let history = &job.history;
    assert_eq!(
        history.first().map(|c| c.status),
        Some(JobStatus::Queued),
        "{history:?}"
    );
    for pair in history.windows(2) {
        let (from, to) = (pair[0].status, pair[1].status);
        let takeover = from == JobStatus::Running
            && to == JobStatus::Running
            && pair[1].reason.as_deref().is_some_and(|r| r.starts_with("taken over"));
        assert!(from.can_become(to) || takeover, "{from} -> {to} in {history:?}");
    }
    assert_eq!(history.last().map(|c| c.status), Some(job.status), "{history:?}");
}

fn config(name: &str) -> RunnerConfig {
    RunnerConfig::new(name)
        .concurrency(2)
        .block(Duration::from_millis(50))
        .claim_interval(Duration::from_millis(50))
        .min_idle(Duration::from_millis(300))
        .max_deliveries(3)
        .retry(RetryPolicy::new(3, Backoff::fixed(Duration::from_millis(50))))
        .promote_interval(Duration::from_millis(50))
        .shutdown_grace(Duration::from_secs(5))
}

async fn enqueue(store: &Store, id: &str, repo: &str) {
    let job = Job::new(id, "u1", repo, now_millis());
    Job::create_and_enqueue(&mut store.clone(), &job, now_millis())
        .await
        .unwrap();
}

fn spawn_runner(
    store: &Store,
    handler: Recorder,
    cfg: RunnerConfig,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<RunStats>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = Runner::new(store.clone(), handler, cfg);
    let handle = tokio::spawn(async move {
        runner
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    (stop, handle)
}

async fn wait_for(mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition within 30 s");
}

async fn status(store: &Store, id: &str) -> Job {
    Job::get(&mut store.clone(), id).await.unwrap().unwrap()
}

async fn two_runners_share_the_work_and_run_nothing_twice(store: Store) {
    let handler = Recorder::default();
    let (stop_a, a) = spawn_runner(&store, handler.clone(), config("a"));
    let (stop_b, b) = spawn_runner(&store, handler.clone(), config("b"));
    for i in 0..30 {
        enqueue(&store, &format!("j{i}"), if i % 2 == 0 { "slow" } else { "ok" }).await;
    }
    wait_for(async || {
        let mut conn = store.clone();
        let mut all = true;
        for i in 0..30 {
            all &= Job::get(&mut conn, format!("j{i}")).await.unwrap().unwrap().status == JobStatus::Succeeded;
        }
        all
    })
    .await;
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.succeeded + b.succeeded, 30);
    assert!(a.succeeded > 0 && b.succeeded > 0, "both runners worked: {a:?} {b:?}");
    let runs = handler.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 30);
    assert!(runs.values().all(|n| *n == 1), "no job ran twice: {runs:?}");
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    assert_eq!(
        q.pending(&mut store.clone()).await.unwrap().count,
        0,
        "every job was acknowledged"
    );
    let out = Job::output(&mut store.clone(), "j0", OutputRange::ALL).await.unwrap();
    assert_eq!(out, vec!["building slow"]);
}

async fn a_killed_runners_job_is_taken_over_and_succeeds_once(store: Store) {
    let doomed = Recorder {
        hang_every_job: true,
        ..Recorder::default()
    };
    let (_stop, dying) = spawn_runner(&store, doomed.clone(), config("doomed"));
    enqueue(&store, "j1", "ok").await;
    // The first runner takes the job, then dies before acknowledging it.
    tokio::time::timeout(Duration::from_secs(30), doomed.started.notified())
        .await
        .unwrap();
    dying.abort();
    let _ = dying.await;
    assert_eq!(status(&store, "j1").await.status, JobStatus::Running);

    let rescuer = Recorder::default();
    let (stop, handle) = spawn_runner(&store, rescuer.clone(), config("rescuer"));
    wait_for(async || status(&store, "j1").await.status == JobStatus::Succeeded).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(stats.succeeded, 1);
    assert_eq!(rescuer.runs.lock().unwrap()["j1"], 1);
    let job = status(&store, "j1").await;
    assert_eq!(job.retries, 1, "the second start is counted");
    let succeeded = job.history.iter().filter(|c| c.status == JobStatus::Succeeded).count();
    assert_eq!(succeeded, 1, "{:?}", job.history);
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    assert_eq!(q.pending(&mut store.clone()).await.unwrap().count, 0);
}

async fn a_poison_job_is_dead_lettered_after_the_maximum_deliveries(store: Store) {
    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    enqueue(&store, "bad", "poison").await;
    enqueue(&store, "nonzero", "exit-2").await;
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    wait_for(async || q.dead_len(&mut store.clone()).await.unwrap() == 1).await;
    wait_for(async || status(&store, "nonzero").await.status == JobStatus::Failed).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.retried, 2);
    assert_eq!(handler.runs.lock().unwrap()["bad"], 3, "three attempts");
    let job = status(&store, "bad").await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error.as_deref(), Some("cannot clone"));
    assert_eq!(job.attempt(), 3);
    let retries: Vec<(Option<u32>, bool)> = job
        .history
        .iter()
        .filter(|c| c.status == JobStatus::Retrying)
        .map(|c| (c.attempt, c.run_at.is_some()))
        .collect();
    assert_eq!(retries, [(Some(1), true), (Some(2), true)], "{:?}", job.history);
    assert_valid_history(&job);
    let dead = q.dead_letters(&mut store.clone(), "-", 10).await.unwrap();
    assert_eq!(dead[0].fields["job_id"], "bad");
    assert_eq!(dead[0].fields["reason"], "cannot clone");
    assert_eq!(dead[0].fields["deliveries"], "1", "each attempt is an entry of its own");
    assert_eq!(q.pending(&mut store.clone()).await.unwrap().count, 0);
    // A non-zero exit is a finished job, not a poison one.
    let nonzero = status(&store, "nonzero").await;
    assert_eq!(
        (nonzero.exit_code, handler.runs.lock().unwrap()["nonzero"]),
        (Some(2), 1)
    );
}

async fn shutdown_releases_jobs_that_do_not_finish_in_time(store: Store) {
    let handler = Recorder::default();
    let cfg = config("r").shutdown_grace(Duration::from_millis(200));
    let (stop, handle) = spawn_runner(&store, handler.clone(), cfg);
    enqueue(&store, "long", "hang").await;
    tokio::time::timeout(Duration::from_secs(30), handler.started.notified())
        .await
        .unwrap();
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(stats.released, 1);
    let job = status(&store, "long").await;
    assert_eq!(job.status, JobStatus::Queued);
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    assert_eq!(
        q.pending(&mut store.clone()).await.unwrap().count,
        1,
        "still pending for another runner"
    );
}

/// A runner in another language: XREADGROUP + HGETALL + XACK.
async fn a_plain_redis_consumer_processes_a_repobox_job(store: Store) {
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .ensure_group(&mut store.clone())
        .await
        .unwrap();
    enqueue(&store, "go-job", "https://example.com/x.git").await;

    // Another language's client, through its own connection.
    let mut conn = store.dedicated(None);
    let reply: redis::streams::StreamReadReply = conn
        .xread_options(
            &[JOBS_STREAM],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group(JOBS_GROUP, "go-runner")
                .count(1),
        )
        .await
        .unwrap();
    let entry = &reply.keys[0].ids[0];
    let job_id: String = entry.get("job_id").unwrap();
    let user_id: String = entry.get("user_id").unwrap();
    let enqueued_at: i64 = entry.get("enqueued_at").unwrap();
    assert_eq!((job_id.as_str(), user_id.as_str()), ("go-job", "u1"));
    assert!(enqueued_at > 0);
    let job: HashMap<String, String> = conn.hgetall(format!("job:{job_id}")).await.unwrap();
    assert_eq!(job["repo_url"], "https://example.com/x.git");
    assert_eq!(job["status"], "queued");
    let _: () = conn.hset(format!("job:{job_id}"), "status", "succeeded").await.unwrap();
    let acked: i64 = conn.xack(JOBS_STREAM, JOBS_GROUP, &[&entry.id]).await.unwrap();
    assert_eq!(acked, 1);
    assert_eq!(status(&store, "go-job").await.status, JobStatus::Succeeded);
}

async fn every_kind_of_poison_is_dead_lettered_after_exactly_the_maximum_deliveries(store: Store) {
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    // A stream entry whose job has no hash, an id no job can have, no job_id at all.
    q.enqueue(&mut conn, &[("job_id", "ghost"), ("user_id", "u1")])
        .await
        .unwrap();
    q.enqueue(&mut conn, &[("job_id", "a:b"), ("user_id", "u1")])
        .await
        .unwrap();
    q.enqueue(&mut conn, &[("user_id", "u1")]).await.unwrap();
    // A job whose hash does not decode (a status no runner knows).
    enqueue(&store, "weird", "ok").await;
    let _: () = redis::cmd("HSET")
        .arg("job:weird")
        .arg("status")
        .arg("weird")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A queued job with a field that does not decode (`retries`): on one
    // server the read that delivers it starts it (its status, its lease),
    // the runner cannot decode it, and the start is undone.
    enqueue(&store, "corrupt", "ok").await;
    let _: () = redis::cmd("HSET")
        .arg("job:corrupt")
        .arg("retries")
        .arg("abc")
        .query_async(&mut conn)
        .await
        .unwrap();
    // A job whose bookkeeping fails (its hash vanishes while it runs), and a handler that panics.
    enqueue(&store, "vanish", "vanish").await;
    enqueue(&store, "panics", "panic").await;

    let handler = Recorder {
        store: Some(store.clone()),
        ..Recorder::default()
    };
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    wait_for(async || q.dead_len(&mut store.clone()).await.unwrap() == 7).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(stats.dead_lettered, 7);

    let dead = q.dead_letters(&mut conn, "-", 10).await.unwrap();
    let reason = |job: Option<&str>| -> String {
        let letter = dead
            .iter()
            .find(|d| d.fields.get("job_id").map(String::as_str) == job)
            .unwrap_or_else(|| panic!("no dead letter for {job:?}: {dead:?}"));
        // A handler's failures are retried as attempts, each on an entry
        // of its own; the rest are deliveries of one entry.
        let deliveries = if job == Some("panics") { "1" } else { "3" };
        assert_eq!(letter.fields["deliveries"], deliveries, "{letter:?}");
        letter.fields["reason"].clone()
    };
    assert!(reason(Some("ghost")).contains("does not exist"));
    assert!(reason(Some("a:b")).contains("not a job id"));
    assert!(reason(None).contains("no job_id"));
    assert!(reason(Some("weird")).contains("cannot be read"));
    assert!(reason(Some("corrupt")).contains("cannot be read"));
    // Never left `running` under a run that did not run.
    let raw: Option<String> = redis::cmd("HGET")
        .arg("job:corrupt")
        .arg("status")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw.as_deref(), Some("queued"));
    let running: Vec<String> = redis::cmd("ZRANGE")
        .arg("jobs:status:running")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!running.contains(&"corrupt".to_owned()), "{running:?}");
    // Its outcome could not be recorded; by the last delivery the job is gone.
    let vanished = reason(Some("vanish"));
    assert!(
        vanished.contains("could not be recorded") || vanished.contains("does not exist"),
        "{vanished}"
    );
    assert!(reason(Some("panics")).contains("panicked"));
    assert_eq!(q.pending(&mut conn).await.unwrap().count, 0, "nothing loops");
    // A job that exists and decodes is marked failed, with the reason in its history.
    let panicked = status(&store, "panics").await;
    assert_eq!(panicked.status, JobStatus::Failed);
    assert!(panicked.error.as_deref().unwrap().contains("panicked"));
    let last = panicked.history.last().unwrap();
    assert_eq!(last.status, JobStatus::Failed);
    assert!(last.reason.as_deref().unwrap().contains("panicked"), "{last:?}");
    assert_eq!(handler.runs.lock().unwrap()["panics"], 3, "three attempts");
    assert_eq!(panicked.attempt(), 3);
}

/// Appends a second `jobs:stream` entry for a job that already has one, as a
/// cluster outbox that appended twice, or `jobs retry` racing
/// `queue requeue-dead`, would.
async fn enqueue_again(store: &Store, id: &str) {
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .enqueue(
            &mut store.clone(),
            &[("job_id", id), ("user_id", "u1"), ("enqueued_at", "1")],
        )
        .await
        .unwrap();
}

async fn settled(store: &Store) -> bool {
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.pending(&mut store.clone()).await.unwrap().count == 0
}

async fn two_entries_for_one_job_run_it_once_with_one_runner(store: Store) {
    let mut conn = store.clone();
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .ensure_group(&mut conn)
        .await
        .unwrap();
    enqueue(&store, "dup", "slow").await;
    enqueue_again(&store, "dup").await;
    enqueue_again(&store, "dup").await;
    let handler = Recorder::default();
    // Concurrency 3: all three entries are read in one go and run side by side.
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r").concurrency(3));
    wait_for(async || status(&store, "dup").await.status.is_final() && settled(&store).await).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(handler.runs_of("dup"), 1);
    assert_eq!(handler.most_at_once("dup"), 1);
    assert_eq!((stats.succeeded, stats.skipped), (1, 2), "{stats:?}");
    let job = status(&store, "dup").await;
    assert_eq!(job.status, JobStatus::Succeeded);
    let statuses: Vec<JobStatus> = job.history.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded]);
    assert_valid_history(&job);
    assert_eq!(job.lease_until, None, "a finished job holds no lease");
}

async fn two_entries_for_one_job_run_it_once_with_two_runners(store: Store) {
    let mut conn = store.clone();
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .ensure_group(&mut conn)
        .await
        .unwrap();
    let handler = Recorder::default();
    let (stop_a, a) = spawn_runner(&store, handler.clone(), config("a"));
    let (stop_b, b) = spawn_runner(&store, handler.clone(), config("b"));
    for i in 0..6 {
        let id = format!("d{i}");
        enqueue(&store, &id, "slow").await;
        enqueue_again(&store, &id).await;
    }
    wait_for(async || {
        let mut over = true;
        for i in 0..6 {
            over &= status(&store, &format!("d{i}")).await.status.is_final();
        }
        over && settled(&store).await
    })
    .await;
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.succeeded + b.succeeded, 6, "{a:?} {b:?}");
    assert_eq!(a.skipped + b.skipped, 6, "every duplicate acknowledged: {a:?} {b:?}");
    for i in 0..6 {
        let id = format!("d{i}");
        assert_eq!(handler.runs_of(&id), 1, "{id}");
        assert_eq!(handler.most_at_once(&id), 1, "{id}");
        let job = status(&store, &id).await;
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_valid_history(&job);
    }
}

async fn a_retried_and_requeued_dead_job_runs_once_at_a_time(store: Store) {
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    enqueue(&store, "again", "poison").await;
    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    wait_for(async || q.dead_len(&mut store.clone()).await.unwrap() == 1).await;
    assert_eq!(status(&store, "again").await.status, JobStatus::Failed);
    assert_eq!(handler.runs_of("again"), 3);
    // The cause is fixed; an operator retries the job and, at the same time,
    // another requeues its dead letter: two entries for one job.
    let fix = JobPatch {
        repo_url: Some("slow".into()),
        ..Default::default()
    };
    Job::update(&mut conn, "again", &fix).await.unwrap();
    Job::retry(&mut conn, "again", now_millis()).await.unwrap();
    let requeued = q.requeue_dead(&mut conn, &[]).await.unwrap();
    assert_eq!(requeued.len(), 1);
    wait_for(async || status(&store, "again").await.status == JobStatus::Succeeded && settled(&store).await).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(handler.runs_of("again"), 4, "three failed attempts, then one run");
    assert_eq!(handler.most_at_once("again"), 1);
    assert_eq!(stats.succeeded, 1, "{stats:?}");
    let job = status(&store, "again").await;
    assert_valid_history(&job);
    let statuses: Vec<JobStatus> = job.history.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses[statuses.len() - 3..],
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded],
        "{statuses:?}"
    );
}

async fn a_run_that_lost_its_lease_stops_and_cannot_write_the_jobs_status(store: Store) {
    let mut conn = store.clone();
    Queue::new(JOBS_STREAM, JOBS_GROUP)
        .ensure_group(&mut conn)
        .await
        .unwrap();
    enqueue(&store, "held", "hang").await;
    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("a").lease(Duration::from_secs(5)));
    wait_for(async || status(&store, "held").await.status == JobStatus::Running).await;
    let first = status(&store, "held").await;
    let first_run = first.run_id.clone().expect("a run id");
    assert!(first.lease_until.is_some() && first.run_entry.is_some());
    // Another delivery may not take it over while the lease is live...
    let second = Job::start(&mut conn, "held", "0-1", Some("u1"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(&second, Start::Leased(lease) if lease.run_id.as_deref() == Some(first_run.as_str())),
        "{second:?}"
    );
    // ...but once it has passed (here: moved into the past, as if the runner
    // had been stopped for a while), exactly one does.
    let _: () = conn.hset("job:held", "lease_until", "1").await.unwrap();
    let Start::Started(taken) = Job::start(&mut conn, "held", "0-1", Some("u1"), Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("the passed lease is taken over");
    };
    let taken = *taken;
    let second_run = taken.run_id.clone().unwrap();
    assert_ne!(second_run, first_run);
    // The first run finds out at its next renewal and stops its handler
    // without writing the job's status.
    wait_for(async || handler.concurrent.lock().unwrap()["held"].0 == 0).await;
    stop.send(()).unwrap();
    let stats = handle.await.unwrap();
    assert_eq!(stats.lease_lost, 1, "{stats:?}");
    assert_eq!((stats.succeeded, stats.failed, stats.released), (0, 0, 0), "{stats:?}");
    let now = status(&store, "held").await;
    assert_eq!(now.status, JobStatus::Running);
    assert_eq!(now.run_id.as_deref(), Some(second_run.as_str()));
    // The old run's copy cannot write a status, nor renew, nor release.
    let err = Job::update_status_from(
        &mut conn,
        first,
        JobStatus::Succeeded,
        now_millis(),
        JobOutcome::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        Job::renew_lease(&mut conn, "held", &first_run, Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
    let err = Job::release(&mut conn, "held", &first_run, now_millis(), "bye")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LeaseLost { .. }), "{err:?}");
    // The run that holds it can.
    assert!(
        Job::renew_lease(&mut conn, "held", &second_run, Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );
    let done = Job::update_status_from(
        &mut conn,
        taken,
        JobStatus::Succeeded,
        now_millis(),
        JobOutcome::default(),
    )
    .await
    .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    let job = status(&store, "held").await;
    assert_valid_history(&job);
}

async fn an_entry_naming_another_user_is_dead_lettered_and_the_job_left_alone(store: Store) {
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let job = Job::new("theirs", "u1", "ok", now_millis());
    Job::create(&mut conn, &job).await.unwrap();
    q.enqueue(
        &mut conn,
        &[("job_id", "theirs"), ("user_id", "mallory"), ("enqueued_at", "1")],
    )
    .await
    .unwrap();
    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    wait_for(async || q.dead_len(&mut store.clone()).await.unwrap() == 1).await;
    stop.send(()).unwrap();
    handle.await.unwrap();
    assert_eq!(handler.runs_of("theirs"), 0);
    let dead = q.dead_letters(&mut conn, "-", 10).await.unwrap();
    assert!(
        dead[0].fields["reason"].contains("user_id is not the job's"),
        "{dead:?}"
    );
    assert_eq!(
        status(&store, "theirs").await.status,
        JobStatus::Queued,
        "not the entry's job to fail"
    );
}

/// On a cluster, `create_and_enqueue` writes the job, then appends its
/// stream entry in another slot. When that `XADD` is refused (here by an
/// ACL rule, as a failover would) the caller's retry is refused
/// `AlreadyExists`: that refusal must not clear the first attempt's outbox
/// record, which the runner's sweep then appends, and the job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_create_and_enqueue_whose_first_xadd_failed_runs_the_job_once() {
    let cluster = repobox_orm::testing::RedisCluster::start(3, 0);
    let store = cluster.store();
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let acl = |rule: &'static str| {
        for node in cluster.nodes() {
            let mut c = node.client().get_connection().unwrap();
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg("default")
                .arg(rule)
                .query(&mut c)
                .unwrap();
        }
    };
    acl("-xadd");
    let job = Job::new("once", "u1", "slow", now_millis());
    let first = Job::create_and_enqueue(&mut conn, &job, now_millis()).await;
    assert!(first.is_err(), "the XADD is refused: {first:?}");
    acl("+xadd");
    let retry = Job::create_and_enqueue(&mut conn, &job, now_millis()).await;
    assert!(
        matches!(&retry, Err(Error::Orm(repobox_orm::Error::AlreadyExists { .. }))),
        "{retry:?}"
    );
    let outbox: u64 = conn.hlen(format!("{JOBS_STREAM}:outbox")).await.unwrap();
    assert_eq!(outbox, 1, "the first attempt's record is still there");

    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    wait_for(async || status(&store, "once").await.status == JobStatus::Succeeded && settled(&store).await).await;
    stop.send(()).unwrap();
    handle.await.unwrap();
    assert_eq!(handler.runs_of("once"), 1);
    let outbox: u64 = conn.hlen(format!("{JOBS_STREAM}:outbox")).await.unwrap();
    assert_eq!(outbox, 0);
    assert_valid_history(&status(&store, "once").await);
}

/// `kill -9` of the primary that holds `jobs:stream`, on a cluster with a
/// replica per primary and Redis's default `cluster-node-timeout` (15 s),
/// while a writer enqueues jobs and a runner runs them, both on the default
/// `StoreConfig`: the writer sees no error but the unknown outcome of a write
/// in flight at the kill (its calls wait out the failover within
/// `cluster_wait`), and every job it was told about reaches a final status,
/// run once at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stream_primary_fails_over_and_no_acknowledged_job_is_stranded() {
    let mut cluster = repobox_orm::testing::RedisCluster::start_with_default_node_timeout(3, 1);
    let store = Store::open(cluster.url().as_str()).unwrap();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut store.clone()).await.unwrap();
    let handler = Recorder::default();
    let runner_store = Store::open(cluster.url().as_str()).unwrap();
    let (stop, handle) = spawn_runner(&runner_store, handler.clone(), config("r"));

    let writer = {
        let mut conn = store.clone();
        tokio::spawn(async move {
            let (mut acknowledged, mut errors, mut unknown) = (Vec::new(), Vec::new(), 0);
            for i in 0..250 {
                let id = format!("f{i}");
                let job = Job::new(&id, "u1", "ok", now_millis());
                // A write in flight when the primary died has an unknown
                // outcome (the only error allowed): the writer tries again,
                // and `AlreadyExists` says the first attempt made the job.
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match Job::create_and_enqueue(&mut conn, &job, now_millis()).await {
                        Ok(_) => acknowledged.push(id.clone()),
                        Err(Error::Orm(repobox_orm::Error::WriteOutcomeUnknown(_))) if attempts < 5 => {
                            unknown += 1;
                            continue;
                        }
                        Err(Error::Orm(repobox_orm::Error::AlreadyExists { .. })) if attempts > 1 => {
                            acknowledged.push(id.clone())
                        }
                        Err(e) => errors.push(format!("{id}: {e}")),
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            (acknowledged, errors, unknown)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let primary = cluster.owner_of(cluster.slot_of(JOBS_STREAM));
    cluster.node_mut(primary).kill();
    let (acknowledged, errors, unknown) = writer.await.unwrap();
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
    assert!(
        unknown <= 3,
        "{unknown} unknown outcomes: only writes in flight at the kill may have one"
    );
    assert_eq!(acknowledged.len(), 250);

    let mut conn = store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut left: Vec<String> = acknowledged.clone();
    while !left.is_empty() {
        let mut still = Vec::new();
        for id in left {
            match Job::get(&mut conn, id.as_str()).await {
                Ok(Some(job)) if job.status.is_final() => {}
                _ => still.push(id),
            }
        }
        left = still;
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} jobs never reached a final status: {:?}",
                left.len(),
                &left[..left.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(()).unwrap();
    handle.await.unwrap();
    for id in &acknowledged {
        let job = status(&store, id).await;
        assert_eq!(job.status, JobStatus::Succeeded, "{id}");
        assert_eq!(handler.most_at_once(id), 1, "{id}");
        assert_valid_history(&job);
    }
}

/// A runner dies mid-run holding a lease longer than the idle time, and the
/// job's entry has used up its deliveries: the next runner leaves the entry
/// pending while the dead run's lease holds (dead-lettering it then would
/// leave the job `running` with nothing to take it over), and once the lease
/// has passed marks the job failed and dead-letters the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_entry_of_a_leased_job_waits_for_the_lease_then_fails_the_job() {
    let server = repobox_orm::testing::RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut store.clone()).await.unwrap();
    enqueue(&store, "held", "hang").await;
    let cfg = |name: &str| config(name).max_deliveries(1).lease(Duration::from_secs(3));
    let (_stop_a, a) = spawn_runner(&store, Recorder::default(), cfg("a"));
    wait_for(async || status(&store, "held").await.status == JobStatus::Running).await;
    // Runner a dies: its tasks are dropped, its lease is left to pass.
    a.abort();
    let _ = a.await;
    let lease_until = status(&store, "held").await.lease_until.unwrap();
    let (stop_b, b) = spawn_runner(&store, Recorder::default(), cfg("b"));
    wait_for(async || q.dead_len(&mut store.clone()).await.unwrap() == 1).await;
    stop_b.send(()).unwrap();
    b.await.unwrap();
    let job = status(&store, "held").await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let failed_at = job.history.last().unwrap().at;
    assert!(
        failed_at >= lease_until,
        "failed at {failed_at}, before the lease passed at {lease_until}"
    );
    assert_eq!(q.pending(&mut store.clone()).await.unwrap().count, 0);
    assert_valid_history(&job);
}

/// On a cluster the primary of `jobs:stream` is out of memory while the
/// job's own primary is not: `create_and_enqueue` writes the job, then its
/// `XADD` is refused. That is not "nothing was written" (an `OutOfMemory`
/// would tell the caller to submit the job again): it is an outcome to read,
/// the job exists, and once the node has memory again the outbox sweep
/// enqueues it and it runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_stream_node_after_the_job_was_written_is_an_unknown_outcome_not_a_refusal() {
    let cluster = repobox_orm::testing::RedisCluster::start(3, 0);
    let store = cluster.store();
    let mut conn = store.clone();
    let q = Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.ensure_group(&mut conn).await.unwrap();
    let stream_node = cluster.owner_of(cluster.slot_of(JOBS_STREAM));
    let id = (0..100)
        .map(|i| format!("oom{i}"))
        .find(|id| {
            let node = cluster.owner_of(cluster.slot_of(&format!("job:{id}")));
            let outbox = cluster.owner_of(cluster.slot_of(&format!("{JOBS_STREAM}:outbox")));
            node != stream_node
                && outbox != stream_node
                && cluster.owner_of(cluster.slot_of("jobs:user:u1")) != stream_node
        })
        .expect("a job id on another primary");
    let max_memory = |max: &str| {
        let mut c = cluster.nodes()[stream_node].client().get_connection().unwrap();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(max)
            .query(&mut c)
            .unwrap();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction")
            .query(&mut c)
            .unwrap();
    };
    max_memory("1");
    let job = Job::new(id.as_str(), "u1", "ok", now_millis());
    let first = Job::create_and_enqueue(&mut conn, &job, now_millis()).await;
    assert!(
        matches!(&first, Err(Error::Orm(repobox_orm::Error::WriteOutcomeUnknown(_)))),
        "{first:?}"
    );
    assert!(
        Job::exists(&mut conn, id.as_str()).await.unwrap(),
        "the job was written"
    );
    max_memory("0");
    let handler = Recorder::default();
    let (stop, handle) = spawn_runner(&store, handler.clone(), config("r"));
    wait_for(async || status(&store, &id).await.status == JobStatus::Succeeded && settled(&store).await).await;
    stop.send(()).unwrap();
    handle.await.unwrap();
    assert_eq!(handler.runs_of(&id), 1);
}
