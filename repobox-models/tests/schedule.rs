//! Jobs for later, against real servers: delayed jobs, retries after a
//! backoff, their promotion to the stream, and the status index.

use std::time::Duration;

use redis::AsyncCommands;
use repobox_models::*;
use repobox_orm::Store;
use repobox_orm::prelude::Page;

// Each on a single server and on a 3-primary cluster, where the job, its
// status entry, `jobs:delayed` and the stream are in different slots.
repobox_orm::on_both_backends!(
    a_delayed_job_waits_for_its_time_and_is_queued_once,
    a_delayed_job_can_be_cancelled_or_run_now,
    failed_runs_wait_for_their_backoff_until_the_attempts_are_used_up,
    the_status_index_follows_every_move,
    finished_jobs_are_purged_with_their_output_and_index_entries,
    many_jobs_are_enqueued_each_atomically_many_per_round_trip,
    status_changes_cancellations_progress_and_output_are_events
);

const STREAM: &str = "jobs:stream";

fn job(id: &str, user: &str) -> Job {
    Job::new(id, user, "https://git.example/r.git", 1_700_000_000_000)
}

async fn stream_job_ids(conn: &mut Store) -> Vec<String> {
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(STREAM).await.unwrap();
    entries.ids.iter().map(|e| e.get::<String>("job_id").unwrap()).collect()
}

async fn delayed_ids(conn: &mut Store) -> Vec<(String, i64)> {
    conn.zrange_withscores("jobs:delayed", 0, -1).await.unwrap()
}

async fn a_delayed_job_waits_for_its_time_and_is_queued_once(mut conn: Store) {
    let now = redis_now(&mut conn).await.unwrap();
    Job::enqueue_at(&mut conn, &job("d1", "u1"), now + 600).await.unwrap();
    let later = Job::enqueue_in(&mut conn, &job("d2", "u1"), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(later >= now + 3_600_000);

    let d1 = Job::get(&mut conn, "d1").await.unwrap().unwrap();
    assert_eq!(d1.status, JobStatus::Delayed);
    assert_eq!(d1.run_at, Some(now + 600));
    assert_eq!(d1.history.last().unwrap().run_at, Some(now + 600));
    assert_eq!(
        delayed_ids(&mut conn).await,
        vec![("d1".to_owned(), now + 600), ("d2".to_owned(), later)]
    );
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Delayed).await.unwrap(), 2);

    // Not early: nothing is due yet, nothing reaches the stream.
    let early = Job::promote_due(&mut conn, STREAM, 100).await.unwrap();
    assert_eq!(early, Promoted::default());
    assert!(stream_job_ids(&mut conn).await.is_empty());

    tokio::time::sleep(Duration::from_millis(700)).await;
    // Two runners promote at once: the job is queued exactly once.
    let (mut a, mut b) = (conn.clone(), conn.clone());
    let (pa, pb) = tokio::join!(
        Job::promote_due(&mut a, STREAM, 100),
        Job::promote_due(&mut b, STREAM, 100)
    );
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!(pa.jobs.len() + pb.jobs.len(), 1, "{pa:?} {pb:?}");
    assert_eq!(stream_job_ids(&mut conn).await, vec!["d1".to_owned()]);
    let d1 = Job::get(&mut conn, "d1").await.unwrap().unwrap();
    assert_eq!(d1.status, JobStatus::Queued);
    assert_eq!(d1.run_at, None);
    assert_eq!(delayed_ids(&mut conn).await, vec![("d2".to_owned(), later)]);
    assert_eq!(
        Job::promote_due(&mut conn, STREAM, 100).await.unwrap(),
        Promoted::default()
    );
    assert_eq!(stream_job_ids(&mut conn).await.len(), 1, "promoted once");

    // A queued job another writer gave a `run_at` loses it (and its place
    // in jobs:delayed) instead of holding up the jobs that wait.
    let mut odd = job("odd", "u1");
    odd.run_at = Some(1);
    Job::create(&mut conn, &odd).await.unwrap();
    assert_eq!(Job::promote_due(&mut conn, STREAM, 100).await.unwrap().raced, 1);
    assert_eq!(Job::get(&mut conn, "odd").await.unwrap().unwrap().run_at, None);
    assert_eq!(delayed_ids(&mut conn).await, vec![("d2".to_owned(), later)]);
    // A member another writer left in jobs:delayed whose job is not waiting
    // is dropped by the read, never queued.
    Job::create(&mut conn, &job("q1", "u1")).await.unwrap();
    let _: () = conn.zadd("jobs:delayed", "q1", 1).await.unwrap();
    let _: () = conn.zadd("jobs:delayed", "gone", 1).await.unwrap();
    assert_eq!(
        Job::promote_due(&mut conn, STREAM, 100).await.unwrap(),
        Promoted::default()
    );
    assert_eq!(delayed_ids(&mut conn).await, vec![("d2".to_owned(), later)]);
    assert_eq!(stream_job_ids(&mut conn).await.len(), 1);
}

async fn a_delayed_job_can_be_cancelled_or_run_now(mut conn: Store) {
    for id in ["c1", "n1"] {
        Job::enqueue_in(&mut conn, &job(id, "u1"), Duration::from_secs(3600))
            .await
            .unwrap();
    }
    assert_eq!(
        Job::cancel(&mut conn, "c1", now_millis()).await.unwrap(),
        Cancel::Cancelled
    );
    let c1 = Job::get(&mut conn, "c1").await.unwrap().unwrap();
    assert_eq!((c1.status, c1.run_at), (JobStatus::Cancelled, None));

    let entry = Job::run_now(&mut conn, "n1", now_millis()).await.unwrap();
    assert!(!entry.is_empty());
    let n1 = Job::get(&mut conn, "n1").await.unwrap().unwrap();
    assert_eq!((n1.status, n1.run_at), (JobStatus::Queued, None));
    assert_eq!(n1.history.last().unwrap().reason.as_deref(), Some("run now"));
    assert!(delayed_ids(&mut conn).await.is_empty());
    assert_eq!(stream_job_ids(&mut conn).await, vec!["n1".to_owned()]);
    // Only waiting jobs run now.
    assert!(matches!(
        Job::run_now(&mut conn, "n1", now_millis()).await,
        Err(Error::InvalidTransition { .. })
    ));
    assert!(matches!(
        Job::run_now(&mut conn, "c1", now_millis()).await,
        Err(Error::InvalidTransition { .. })
    ));
    // A policy that cannot work is refused before anything is written.
    let mut bad = job("b1", "u1");
    bad.retry = Some(RetryPolicy::new(0, Backoff::fixed(Duration::ZERO)));
    assert!(Job::enqueue_at(&mut conn, &bad, 0).await.is_err());
    assert_eq!(Job::get(&mut conn, "b1").await.unwrap(), None);
}

async fn start(conn: &mut Store, id: &str, entry: &str) -> Job {
    match Job::start(conn, id, entry, Some("u1"), Duration::from_secs(30))
        .await
        .unwrap()
    {
        Start::Started(job) => *job,
        other => panic!("not started: {other:?}"),
    }
}

fn failed(reason: &str) -> JobOutcome {
    JobOutcome {
        exit_code: None,
        error: Some(reason.into()),
    }
}

async fn failed_runs_wait_for_their_backoff_until_the_attempts_are_used_up(mut conn: Store) {
    let policy = RetryPolicy::new(3, Backoff::fixed(Duration::from_millis(300)));
    let entry = Job::create_and_enqueue(&mut conn, &job("r1", "u1"), 1).await.unwrap();

    // Attempt 1 fails: retrying, due a backoff from now by Redis's clock.
    let run = start(&mut conn, "r1", &entry).await;
    assert_eq!(run.attempt(), 1);
    let before = redis_now(&mut conn).await.unwrap();
    let j = Job::fail_run(&mut conn, run, failed("boom 1"), &policy, true)
        .await
        .unwrap();
    assert_eq!(j.status, JobStatus::Retrying);
    let run_at = j.run_at.unwrap();
    assert!((before + 300..before + 1300).contains(&run_at), "{before} {run_at}");
    let last = j.history.last().unwrap();
    assert_eq!(
        (last.status, last.attempt, last.run_at, last.reason.as_deref()),
        (JobStatus::Retrying, Some(1), Some(run_at), Some("boom 1"))
    );
    assert_eq!(Job::get(&mut conn, "r1").await.unwrap().unwrap(), j);
    assert_eq!(delayed_ids(&mut conn).await, vec![("r1".to_owned(), run_at)]);
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Retrying).await.unwrap(), 1);
    // The old entry, delivered again meanwhile, does not start it early.
    assert!(matches!(
        Job::start(&mut conn, "r1", &entry, Some("u1"), Duration::from_secs(30))
            .await
            .unwrap(),
        Start::Over(JobStatus::Retrying)
    ));
    assert_eq!(Job::promote_due(&mut conn, STREAM, 10).await.unwrap().jobs.len(), 0);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let promoted = Job::promote_due(&mut conn, STREAM, 10).await.unwrap();
    assert_eq!(promoted.jobs.len(), 1);
    let run = start(&mut conn, "r1", &promoted.jobs[0].1).await;
    assert_eq!(run.attempt(), 2);
    let j = Job::fail_run(&mut conn, run, failed("boom 2"), &policy, true)
        .await
        .unwrap();
    assert_eq!(
        (j.status, j.history.last().unwrap().attempt),
        (JobStatus::Retrying, Some(2))
    );

    // The run's own copy is a lease: a run that no longer holds the job
    // cannot schedule it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let promoted = Job::promote_due(&mut conn, STREAM, 10).await.unwrap();
    let run = start(&mut conn, "r1", &promoted.jobs[0].1).await;
    let mut stale = run.clone();
    stale.run_id = Some("another-run".into());
    assert!(matches!(
        Job::fail_run(&mut conn, stale, failed("late"), &policy, true).await,
        Err(Error::LeaseLost { .. })
    ));
    // Attempt 3 of 3: failed for good.
    assert_eq!(run.attempt(), 3);
    let j = Job::fail_run(&mut conn, run, failed("boom 3"), &policy, true)
        .await
        .unwrap();
    assert_eq!((j.status, j.run_at), (JobStatus::Failed, None));
    assert!(delayed_ids(&mut conn).await.is_empty());
    let statuses: Vec<JobStatus> = j.history.iter().map(|h| h.status).collect();
    use JobStatus::*;
    assert_eq!(
        statuses,
        [
            Queued, Running, Retrying, Queued, Running, Retrying, Queued, Running, Failed
        ]
    );

    // A failure that is not retryable, or a job whose own policy allows
    // one attempt, fails at once.
    let entry = Job::create_and_enqueue(&mut conn, &job("r2", "u1"), 1).await.unwrap();
    let run = start(&mut conn, "r2", &entry).await;
    let j = Job::fail_run(&mut conn, run, failed("bad input"), &policy, false)
        .await
        .unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    let mut own = job("r3", "u1");
    own.retry = Some(RetryPolicy::never());
    let entry = Job::create_and_enqueue(&mut conn, &own, 1).await.unwrap();
    let run = start(&mut conn, "r3", &entry).await;
    let j = Job::fail_run(&mut conn, run, failed("once"), &policy, true)
        .await
        .unwrap();
    assert_eq!(j.status, JobStatus::Failed);

    // A policy another writer stored out of bounds is taken within them:
    // the outcome is written, the wait at most 30 days.
    let entry = Job::create_and_enqueue(&mut conn, &job("r4", "u1"), 1).await.unwrap();
    let absurd =
        r#"{"max_attempts":9,"backoff":{"kind":"fixed","base_ms":18446744073709551615,"max_ms":18446744073709551615}}"#;
    let _: () = conn.hset("job:r4", "retry", absurd).await.unwrap();
    let run = start(&mut conn, "r4", &entry).await;
    let now = redis_now(&mut conn).await.unwrap();
    let j = Job::fail_run(&mut conn, run, failed("far"), &policy, true)
        .await
        .unwrap();
    assert_eq!(j.status, JobStatus::Retrying);
    assert!(j.run_at.unwrap() <= now + 31 * 24 * 3_600_000, "{:?}", j.run_at);
}

async fn the_status_index_follows_every_move(mut conn: Store) {
    let ids = |l: &repobox_orm::Listing<Job>| l.items.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    for (i, id) in ["s1", "s2", "s3"].iter().enumerate() {
        let mut j = job(id, "u1");
        j.created_at += i as i64;
        Job::create_and_enqueue(&mut conn, &j, 1).await.unwrap();
    }
    let queued = Job::by_status(&mut conn, JobStatus::Queued, Page::newest(10))
        .await
        .unwrap();
    assert_eq!(ids(&queued), ["s3", "s2", "s1"], "newest first");
    Job::update_status(&mut conn, "s2", JobStatus::Running, 2, JobOutcome::default())
        .await
        .unwrap();
    Job::update_status(&mut conn, "s2", JobStatus::Succeeded, 3, JobOutcome::default())
        .await
        .unwrap();
    Job::cancel(&mut conn, "s3", 4).await.unwrap();
    for (status, want) in [
        (JobStatus::Queued, vec!["s1"]),
        (JobStatus::Running, vec![]),
        (JobStatus::Succeeded, vec!["s2"]),
        (JobStatus::Cancelled, vec!["s3"]),
    ] {
        let page = Job::by_status(&mut conn, status, Page::newest(10)).await.unwrap();
        assert_eq!(ids(&page), want, "{status}");
        assert_eq!(
            Job::count_by_status(&mut conn, status).await.unwrap(),
            want.len() as u64
        );
    }
    // Pages: offset and limit.
    let second = Job::by_status(&mut conn, JobStatus::Queued, Page::newest(1).offset(1))
        .await
        .unwrap();
    assert!(second.items.is_empty());
    // An entry another writer left under the wrong status is not listed.
    let _: () = conn.zadd("jobs:status:running", "s1", 9).await.unwrap();
    let running = Job::by_status(&mut conn, JobStatus::Running, Page::newest(10))
        .await
        .unwrap();
    assert!(running.items.is_empty());
}

async fn finish(conn: &mut Store, id: &str, to: JobStatus, at: i64) {
    let entry = Job::create_and_enqueue(conn, &job(id, "u1"), 1).await.unwrap();
    let run = start(conn, id, &entry).await;
    Job::append_output(conn, id, &["a line"]).await.unwrap();
    Job::update_status_from(conn, run, to, at, JobOutcome::default())
        .await
        .unwrap();
}

async fn finished_jobs_are_purged_with_their_output_and_index_entries(mut conn: Store) {
    // Finished 1 s and 9 s after they were created.
    let t0 = job("x", "u1").created_at;
    finish(&mut conn, "old", JobStatus::Succeeded, t0 + 1_000).await;
    finish(&mut conn, "new", JobStatus::Succeeded, t0 + 9_000).await;
    finish(&mut conn, "bad", JobStatus::Failed, t0 + 1_000).await;
    Job::create_and_enqueue(&mut conn, &job("waits", "u1"), 1)
        .await
        .unwrap();

    // A dry run counts and removes nothing.
    let dry = Job::purge(&mut conn, JobStatus::Succeeded, t0 + 5_000, 100, true)
        .await
        .unwrap();
    assert_eq!((dry.matched.as_slice(), dry.removed), (&["old".to_owned()][..], 0));
    assert!(Job::get(&mut conn, "old").await.unwrap().is_some());

    let done = Job::purge(&mut conn, JobStatus::Succeeded, t0 + 5_000, 100, false)
        .await
        .unwrap();
    assert_eq!((done.matched.as_slice(), done.removed), (&["old".to_owned()][..], 1));
    assert_eq!(Job::get(&mut conn, "old").await.unwrap(), None);
    assert_eq!(
        Job::output_count(&mut conn, "old").await.unwrap(),
        0,
        "its output went with it"
    );
    let user: Vec<String> = conn.zrange("jobs:user:u1", 0, -1).await.unwrap();
    assert!(!user.contains(&"old".to_owned()), "{user:?}");
    let succeeded: Vec<String> = conn.zrange("jobs:status:succeeded", 0, -1).await.unwrap();
    assert_eq!(succeeded, ["new"]);
    // Other statuses and newer jobs stay; unfinished statuses are refused.
    assert!(Job::get(&mut conn, "bad").await.unwrap().is_some());
    assert!(
        Job::purge(&mut conn, JobStatus::Queued, i64::MAX, 100, false)
            .await
            .is_err()
    );
    // A limit stops it.
    let limited = Job::purge(&mut conn, JobStatus::Succeeded, i64::MAX, 0, false)
        .await
        .unwrap();
    assert_eq!(limited, Purged::default());

    // One by one: not while running.
    assert!(Job::remove(&mut conn, "bad").await.unwrap());
    assert!(!Job::remove(&mut conn, "bad").await.unwrap());
    let entry = Job::create_and_enqueue(&mut conn, &job("busy", "u1"), 1).await.unwrap();
    start(&mut conn, "busy", &entry).await;
    assert!(matches!(
        Job::remove(&mut conn, "busy").await,
        Err(Error::InvalidTransition { .. })
    ));
    let failed: u64 = conn.zcard("jobs:status:failed").await.unwrap();
    assert_eq!(failed, 0);
}

async fn many_jobs_are_enqueued_each_atomically_many_per_round_trip(conn: Store) {
    let mut conn = repobox_orm::testing::CountingConnection::new(conn);
    // The first calls load the scripts of one write and of many.
    Job::create_and_enqueue(&mut conn, &job("warm1", "u1"), 1)
        .await
        .unwrap();
    for r in Job::create_and_enqueue_many(&mut conn, &[job("taken", "u1"), job("warm", "u1")], 1)
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let jobs: Vec<Job> = (0..100)
        .map(|i| job(&format!("m{i}"), "u1"))
        .chain([job("taken", "u2"), job("bad:id", "u1")])
        .collect();
    conn.take();
    let results = Job::create_and_enqueue_many(&mut conn, &jobs, 7).await.unwrap();
    let trips = conn.take();
    assert_eq!(results.len(), 102);
    assert!(results[..100].iter().all(Result::is_ok), "{:?}", &results[..3]);
    assert!(
        matches!(results[100], Err(Error::Orm(repobox_orm::Error::AlreadyExists { .. }))),
        "{:?}",
        results[100]
    );
    assert!(results[101].is_err(), "a bad id is refused");
    let mut conn = conn.inner().clone();
    let ids = stream_job_ids(&mut conn).await;
    assert_eq!(ids.len(), 103, "one entry per job created, none for the refused");
    assert_eq!(ids.iter().filter(|i| *i == "taken").count(), 1);
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Queued).await.unwrap(), 103);
    assert_eq!(
        Job::get(&mut conn, "taken").await.unwrap().unwrap().user_id,
        "u1",
        "the first stays"
    );
    // One script call for the lot on one server; on a cluster, ordered
    // steps, each one pipeline, and the refused create's release (which
    // reads the hash after it, for a racing writer's entries).
    let info: repobox_orm::redis::Value = repobox_orm::redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .unwrap();
    if format!("{info:?}").contains("cluster_enabled:1") {
        assert!(trips <= 9, "{trips} round trips");
    } else {
        assert_eq!(trips, 1);
    }
}

async fn status_changes_cancellations_progress_and_output_are_events(mut conn: Store) {
    let from = JobEvent::last_id(&mut conn).await.unwrap();
    assert_eq!(from, "0-0", "no events yet");
    let entry = Job::create_and_enqueue(&mut conn, &job("e1", "u1"), 1).await.unwrap();
    let run = start(&mut conn, "e1", &entry).await;
    let run_id = run.run_id.clone().unwrap();
    Job::report_progress(&mut conn, "e1", &run_id, 250, Some("half"))
        .await
        .unwrap();
    assert!(matches!(
        Job::report_progress(&mut conn, "e1", "another-run", 10, None).await,
        Err(Error::LeaseLost { .. })
    ));
    Job::append_output(&mut conn, "e1", &["a", "b"]).await.unwrap();
    Job::cancel(&mut conn, "e1", 5).await.unwrap();
    Job::update_status_from(&mut conn, run, JobStatus::Cancelled, 6, JobOutcome::default())
        .await
        .unwrap();
    let e1 = Job::get(&mut conn, "e1").await.unwrap().unwrap();
    assert_eq!(
        (e1.progress, e1.progress_message.as_deref()),
        (Some(100), Some("half")),
        "capped at 100"
    );
    let events = JobEvent::read(&mut conn, &from, None, 100).await.unwrap();
    let seen: Vec<(String, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.kind.clone(),
                e.field("status").or(e.field("progress")).or(e.field("lines")),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("status".to_owned(), Some("running")),
            ("progress".to_owned(), Some("100")),
            ("output".to_owned(), Some("2")),
            ("cancel".to_owned(), None),
            ("status".to_owned(), Some("cancelled")),
        ]
    );
    assert!(events.iter().all(|e| e.job_id == "e1"));
    // A refused write appends no event.
    assert!(
        Job::update_status(&mut conn, "e1", JobStatus::Running, 7, JobOutcome::default())
            .await
            .is_err()
    );
    let last = events.last().unwrap().id.clone();
    assert_eq!(JobEvent::last_id(&mut conn).await.unwrap(), last);
    assert!(JobEvent::read(&mut conn, &last, None, 10).await.unwrap().is_empty());
    assert_eq!(JobEvent::trim(&mut conn).await.unwrap(), 0, "far under the cap");
}

/// The commands the server has processed so far (`INFO stats`).
async fn commands_processed(conn: &mut Store) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// What `/metrics` reads at every scrape costs the same few commands on an
/// empty queue and on 2,000 jobs, and counts them right.
#[tokio::test]
async fn the_overview_costs_the_same_few_commands_whatever_the_queue_holds() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    for level in Priority::LEVELS {
        let q = repobox_orm::Queue::new(level.stream(JOBS_STREAM).into_owned(), JOBS_GROUP);
        q.ensure_group(&mut conn).await.unwrap();
    }
    let before = commands_processed(&mut conn).await;
    let empty = Overview::read(&mut conn).await.unwrap();
    let on_empty = commands_processed(&mut conn).await - before - 1;
    assert!(empty.jobs.iter().all(|(_, n)| *n == 0), "{empty:?}");
    assert!(empty.paused_since.is_none());
    let jobs: Vec<Job> = (0..2_000)
        .map(|i| {
            Job::new(
                format!("j{i}"),
                format!("u{}", i % 7),
                "https://example.com/r.git",
                1_000 + i,
            )
        })
        .collect();
    for r in Job::create_and_enqueue_many(&mut conn, &jobs, 5_000).await.unwrap() {
        r.unwrap();
    }
    let q = repobox_orm::Queue::new(JOBS_STREAM, JOBS_GROUP);
    q.read(&mut conn, "r1", 10, None).await.unwrap();
    q.pause(&mut conn).await.unwrap();
    let before = commands_processed(&mut conn).await;
    let full = Overview::read(&mut conn).await.unwrap();
    let on_full = commands_processed(&mut conn).await - before - 1;
    assert_eq!(on_full, on_empty, "the same commands whatever the size");
    // A count of each status index, five reads of each level, the pause.
    assert!(on_full <= 26, "{on_full} commands");
    let queued = full.jobs.iter().find(|(s, _)| *s == JobStatus::Queued).unwrap().1;
    assert_eq!(queued, 2_000);
    let normal = full.levels.iter().find(|l| l.level == Priority::Normal).unwrap();
    assert_eq!(
        (normal.waiting, normal.pending, normal.consumers, normal.dead),
        (1_990, 10, 1, 0)
    );
    assert!(full.paused_since.is_some());
    assert_eq!(normal.length, 2_000);
}
