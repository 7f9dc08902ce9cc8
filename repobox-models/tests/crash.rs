//! Crash between the steps of every ordered write: on a cluster, User,
//! Session and Job keep their keys in several slots, so their writes are
//! single-slot steps. A fault injected after each step stops the write as a
//! dead writer would; reads must still answer right, `repair_indexes` must
//! leave exact indexes (a `check_indexes` after it finds nothing), and the
//! outbox sweep must enqueue every job that exists.

use std::time::Duration;

use repobox_models::*;
use repobox_orm::testing::RedisCluster;
use repobox_orm::testing::faults::{OrderedStep, fail_after};
use repobox_orm::{IndexReport, Queue, Store};

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: format!("User {id}"),
        created_at: 1_700_000_000_000,
        last_login_at: None,
        is_admin: false,
    }
}

fn problems(reports: &[IndexReport]) -> u64 {
    reports
        .iter()
        .map(|r| r.gone + r.mismatched + r.rescored + r.missing + r.bad)
        .sum()
}

/// Repairs every index, then checks that nothing is left to repair.
async fn repair_is_exact(conn: &mut Store) {
    repobox_orm::repair_indexes::<User, _>(conn).await.unwrap();
    repobox_orm::repair_indexes::<Session, _>(conn).await.unwrap();
    repobox_orm::repair_indexes::<Job, _>(conn).await.unwrap();
    let mut left = repobox_orm::check_indexes::<User, _>(conn).await.unwrap();
    left.extend(repobox_orm::check_indexes::<Session, _>(conn).await.unwrap());
    left.extend(repobox_orm::check_indexes::<Job, _>(conn).await.unwrap());
    assert_eq!(problems(&left), 0, "{left:#?}");
}

fn crashed<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    let err = result.expect_err("the injected fault stops the write");
    assert!(err.to_string().contains("injected fault"), "{err}");
}

#[tokio::test]
async fn users_survive_a_crash_after_every_step() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    const { assert!(!User::CO_LOCATED && !Session::CO_LOCATED && !Job::CO_LOCATED) };

    // create: claimed only -> no user, and the e-mail is free.
    fail_after("user:c1", OrderedStep::Claimed);
    crashed(User::create(&mut conn, &user("c1", "c1@x.io")).await);
    assert_eq!(User::get(&mut conn, "c1").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "c1@x.io").await.unwrap(), None);
    User::create(&mut conn, &user("c2", "c1@x.io")).await.unwrap();
    assert_eq!(User::by_email(&mut conn, "c1@x.io").await.unwrap().unwrap().id, "c2");

    // create: hash written -> the user and its e-mail are both there.
    fail_after("user:c3", OrderedStep::HashWritten);
    crashed(User::create(&mut conn, &user("c3", "c3@x.io")).await);
    assert_eq!(User::by_email(&mut conn, "c3@x.io").await.unwrap().unwrap().id, "c3");

    // update moving the unique e-mail, after each step.
    User::create(&mut conn, &user("m1", "old1@x.io")).await.unwrap();
    let patch = UserPatch {
        email: Some("new1@x.io".into()),
        ..Default::default()
    };
    fail_after("user:m1", OrderedStep::Claimed);
    crashed(User::update(&mut conn, "m1", &patch).await);
    assert_eq!(User::by_email(&mut conn, "old1@x.io").await.unwrap().unwrap().id, "m1");
    assert_eq!(User::by_email(&mut conn, "new1@x.io").await.unwrap(), None);

    User::create(&mut conn, &user("m2", "old2@x.io")).await.unwrap();
    let patch = UserPatch {
        email: Some("new2@x.io".into()),
        ..Default::default()
    };
    fail_after("user:m2", OrderedStep::HashWritten);
    crashed(User::update(&mut conn, "m2", &patch).await);
    assert_eq!(User::by_email(&mut conn, "new2@x.io").await.unwrap().unwrap().id, "m2");
    assert_eq!(User::by_email(&mut conn, "old2@x.io").await.unwrap(), None);
    // The old e-mail is free again: its stale claim is taken over.
    User::create(&mut conn, &user("m3", "old2@x.io")).await.unwrap();

    // delete: hash gone, claim left -> no user, e-mail free.
    User::create(&mut conn, &user("d1", "d1@x.io")).await.unwrap();
    fail_after("user:d1", OrderedStep::HashWritten);
    crashed(User::delete(&mut conn, "d1").await);
    assert_eq!(User::get(&mut conn, "d1").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "d1@x.io").await.unwrap(), None);

    // The same steps in a batch: one write of a bulk call stops after its
    // claims, another after its hash; the others finish, and each one's
    // state is what the same crash leaves of a single write.
    fail_after("user:b2", OrderedStep::Claimed);
    fail_after("user:b3", OrderedStep::HashWritten);
    let batch = [
        user("b1", "b1@x.io"),
        user("b2", "b2@x.io"),
        user("b3", "b3@x.io"),
        user("b4", "b4@x.io"),
    ];
    let results = User::create_many(&mut conn, &batch).await.unwrap();
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    crashed(results[1].as_ref().map(drop).map_err(ToString::to_string));
    crashed(results[2].as_ref().map(drop).map_err(ToString::to_string));
    assert_eq!(User::get(&mut conn, "b2").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "b2@x.io").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "b3@x.io").await.unwrap().unwrap().id, "b3");
    for id in ["b1", "b4"] {
        let found = User::by_email(&mut conn, &format!("{id}@x.io")).await.unwrap();
        assert_eq!(found.unwrap().id, id);
    }
    // A bulk save that moves e-mails, one stopping after its claim.
    fail_after("user:b4", OrderedStep::Claimed);
    let moved = [user("b1", "b1-new@x.io"), user("b4", "b4-new@x.io")];
    let results = User::save_many(&mut conn, &moved).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    crashed(results[1].as_ref().map(drop).map_err(ToString::to_string));
    assert_eq!(
        User::by_email(&mut conn, "b1-new@x.io").await.unwrap().unwrap().id,
        "b1"
    );
    assert_eq!(User::by_email(&mut conn, "b1@x.io").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "b4@x.io").await.unwrap().unwrap().id, "b4");
    assert_eq!(User::by_email(&mut conn, "b4-new@x.io").await.unwrap(), None);

    repair_is_exact(&mut conn).await;
    assert_eq!(User::by_email(&mut conn, "b2@x.io").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "b4@x.io").await.unwrap().unwrap().id, "b4");
    assert_eq!(User::by_email(&mut conn, "c3@x.io").await.unwrap().unwrap().id, "c3");
    assert_eq!(User::by_email(&mut conn, "new1@x.io").await.unwrap(), None);
    assert_eq!(User::by_email(&mut conn, "old1@x.io").await.unwrap().unwrap().id, "m1");
    conn.close().await;
}

#[tokio::test]
async fn sessions_survive_a_crash_after_every_step() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    User::create(&mut conn, &user("u1", "u1@x.io")).await.unwrap();
    let (token, session) = Session::create_user_session(&mut conn, "u1", None, None).await.unwrap();
    let key = format!("session:{}", session.id);
    fail_after(&key, OrderedStep::HashWritten);
    crashed(Session::revoke(&mut conn, &token).await);
    assert_eq!(Session::get_valid(&mut conn, &token).await.unwrap(), None);
    assert!(Session::by_user_id(&mut conn, "u1").await.unwrap().items.is_empty());
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

#[tokio::test]
async fn no_job_is_lost_whatever_step_its_writer_dies_after() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    let now = 1_700_000_000_000;
    let steps = [
        OrderedStep::Outboxed,
        OrderedStep::Claimed,
        OrderedStep::HashWritten,
        OrderedStep::Appended,
    ];
    for (i, step) in steps.iter().enumerate() {
        let id = format!("j{i}");
        fail_after(&format!("job:{id}"), *step);
        crashed(Job::create_and_enqueue(&mut conn, &Job::new(&id, "u1", "https://x/r.git", now + i as i64), now).await);
    }
    // Reads: a job exists only once its hash is written, and the user's
    // page shows exactly the jobs that exist.
    let exists = [false, false, true, true];
    for (i, want) in exists.iter().enumerate() {
        assert_eq!(
            Job::get(&mut conn, &format!("j{i}")).await.unwrap().is_some(),
            *want,
            "j{i}"
        );
    }
    let page = Job::user_jobs(&mut conn, "u1", repobox_orm::Page::newest(10))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["j3", "j2"]);
    let enqueued = |entries: Vec<repobox_orm::queue::Entry>| -> Vec<String> {
        entries
            .into_iter()
            .filter_map(|e| e.fields.get("job_id").cloned())
            .collect()
    };
    assert_eq!(enqueued(queue.entries(&mut conn, "-", 100).await.unwrap()), ["j3"]);

    // The sweep enqueues the job whose writer died before its entry (j2),
    // drops the entries of jobs never written (j0, j1), and appends j3's
    // again: a duplicate entry, which the runner's status compare-and-set
    // keeps from running twice.
    let swept = queue.sweep_outbox(&mut conn, Duration::ZERO).await.unwrap();
    assert_eq!((swept.appended, swept.dropped, swept.young), (2, 2, 0), "{swept:?}");
    let mut ids = enqueued(queue.entries(&mut conn, "-", 100).await.unwrap());
    ids.sort();
    assert_eq!(ids, ["j2", "j3", "j3"]);
    let again = queue.sweep_outbox(&mut conn, Duration::ZERO).await.unwrap();
    assert_eq!(again, Default::default(), "the outbox is empty");
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

/// Starts every entry of `id` in turn: exactly one may start a run.
async fn runs_once(conn: &mut Store, queue: &Queue, id: &str) {
    let entries = queue.entries(conn, "-", 100).await.unwrap();
    let mut started = 0;
    for e in entries
        .iter()
        .filter(|e| e.fields.get("job_id").map(String::as_str) == Some(id))
    {
        match Job::start(conn, id, &e.id, Some("u1"), Duration::from_secs(60))
            .await
            .unwrap()
        {
            Start::Started(_) => started += 1,
            Start::Leased(_) | Start::Over(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 1, "{id}: one run, {entries:?}");
}

#[tokio::test]
async fn a_due_job_is_queued_once_whatever_step_its_promoter_dies_after() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    let steps = [
        OrderedStep::Outboxed,
        OrderedStep::Claimed,
        OrderedStep::HashWritten,
        OrderedStep::Appended,
    ];
    for (i, step) in steps.iter().enumerate() {
        let id = format!("p{i}");
        Job::enqueue_at(&mut conn, &Job::new(&id, "u1", "https://x/r.git", 1), 0)
            .await
            .unwrap();
        fail_after(&format!("job:{id}"), *step);
        crashed(Job::promote_due(&mut conn, JOBS_STREAM, 10).await);
        // Before its hash is written the job still waits; after, it is queued.
        let waiting = i < 2;
        let job = Job::get(&mut conn, &id).await.unwrap().unwrap();
        assert_eq!(job.status.is_scheduled(), waiting, "{id} after {step:?}: {job:?}");
        // An entry the sweep appends for a job still waiting is not a run:
        // starting it finds the job delayed.
        queue.sweep_outbox(&mut conn, Duration::ZERO).await.unwrap();
        if waiting {
            let entries = queue.entries(&mut conn, "-", 100).await.unwrap();
            for e in entries.iter().filter(|e| e.fields.get("job_id") == Some(&id)) {
                let start = Job::start(&mut conn, &id, &e.id, Some("u1"), Duration::from_secs(60)).await;
                assert!(matches!(start, Ok(Start::Over(JobStatus::Delayed))), "{start:?}");
            }
        }
        // The next promotion (of whatever is still due) finishes the move.
        Job::promote_due(&mut conn, JOBS_STREAM, 10).await.unwrap();
        let job = Job::get(&mut conn, &id).await.unwrap().unwrap();
        assert_eq!((job.status, job.run_at), (JobStatus::Queued, None), "{id}");
        assert!(
            Job::due(&mut conn, repobox_orm::Page::oldest(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        runs_once(&mut conn, &queue, &id).await;
    }
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

#[tokio::test]
async fn a_failed_run_is_retried_once_whatever_step_its_writer_dies_after() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    let policy = RetryPolicy::new(3, Backoff::fixed(Duration::ZERO));
    let failed = JobOutcome {
        exit_code: None,
        error: Some("boom".into()),
    };
    for (i, step) in [OrderedStep::Claimed, OrderedStep::HashWritten].iter().enumerate() {
        let id = format!("r{i}");
        let entry = Job::create_and_enqueue(&mut conn, &Job::new(&id, "u1", "https://x/r.git", 1), 1)
            .await
            .unwrap();
        let Start::Started(run) = Job::start(&mut conn, &id, &entry, Some("u1"), Duration::from_millis(200))
            .await
            .unwrap()
        else {
            panic!("not started")
        };
        fail_after(&format!("job:{id}"), *step);
        crashed(Job::fail_run(&mut conn, *run, failed.clone(), &policy, true).await);
        let job = Job::get(&mut conn, &id).await.unwrap().unwrap();
        if *step == OrderedStep::Claimed {
            // Nothing of the retry was written: the job is still running,
            // and the claimed entries are not listed.
            assert_eq!(job.status, JobStatus::Running);
            assert!(
                Job::due(&mut conn, repobox_orm::Page::oldest(10))
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            );
            let retrying = Job::by_status(&mut conn, JobStatus::Retrying, repobox_orm::Page::newest(10))
                .await
                .unwrap();
            assert!(retrying.items.is_empty());
            // Its lease passes and its delivery, still pending, takes it over.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let again = Job::start(&mut conn, &id, &entry, Some("u1"), Duration::from_secs(60))
                .await
                .unwrap();
            assert!(matches!(again, Start::Started(_)), "{again:?}");
        } else {
            assert_eq!(job.status, JobStatus::Retrying);
            let promoted = Job::promote_due(&mut conn, JOBS_STREAM, 10).await.unwrap();
            assert_eq!(promoted.jobs.len(), 1);
            runs_once(&mut conn, &queue, &id).await;
        }
    }
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

#[tokio::test]
async fn a_runs_end_acknowledges_its_delivery_after_the_write_whatever_step_its_writer_dies_after() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    queue.ensure_group(&mut conn).await.unwrap();
    let done = || JobOutcome {
        exit_code: Some(0),
        error: None,
    };
    let pending = async |conn: &mut Store| queue.pending(conn).await.unwrap().count;
    // `None`: no fault, the write and its acknowledgement both happen.
    let steps = [
        None,
        Some(OrderedStep::Outboxed),
        Some(OrderedStep::Claimed),
        Some(OrderedStep::HashWritten),
        Some(OrderedStep::Appended),
    ];
    for (i, step) in steps.iter().enumerate() {
        let id = format!("e{i}");
        Job::create_and_enqueue(&mut conn, &Job::new(&id, "u1", "https://x/r.git", 1), 1)
            .await
            .unwrap();
        let delivery = queue.read(&mut conn, "w1", 1, None).await.unwrap().remove(0);
        let Start::Started(run) = Job::start(&mut conn, &id, &delivery.id, Some("u1"), Duration::from_secs(60))
            .await
            .unwrap()
        else {
            panic!("not started")
        };
        let ended = Job::end_run(&mut conn, *run, JobStatus::Succeeded, 2, done(), (&queue, &delivery.id));
        let Some(step) = step else {
            ended.await.unwrap();
            assert_eq!(pending(&mut conn).await, 0, "acknowledged after the write");
            continue;
        };
        fail_after(&format!("job:{id}"), *step);
        crashed(ended.await);
        // Whatever was written, the delivery is still pending: nothing is
        // acknowledged before the status is.
        assert_eq!(pending(&mut conn).await, 1, "{id} after {step:?}");
        let job = Job::get(&mut conn, &id).await.unwrap().unwrap();
        let written = matches!(step, OrderedStep::HashWritten | OrderedStep::Appended);
        assert_eq!(
            job.status == JobStatus::Succeeded,
            written,
            "{id} after {step:?}: {job:?}"
        );
        if written {
            // Delivered again, it finds its job over: the runner
            // acknowledges it as a duplicate, and nothing runs twice.
            let again = Job::start(&mut conn, &id, &delivery.id, Some("u1"), Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(again, Start::Over(JobStatus::Succeeded));
        } else {
            // The run still holds the job: it is taken over once its lease
            // passes, like the job of a runner that died.
            assert_eq!(job.status, JobStatus::Running);
        }
        queue.ack(&mut conn, &[&delivery.id]).await.unwrap();
    }
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

/// Writers of one job racing on a cluster (several runners promoting the
/// same due jobs, several cancels of one job): the loser's claimed entries
/// are released without taking away the winner's, so the indexes are exact
/// with no repair. (Before the release read the hash again, about a third
/// of the racing cancels left their job out of `jobs:status:cancelled`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_of_one_job_leave_exact_indexes_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    for i in 0..60 {
        let id = format!("k{i}");
        Job::create(&mut conn, &Job::new(&id, "u1", "https://x/r.git", 1000))
            .await
            .unwrap();
        let cancels: Vec<_> = (0..3)
            .map(|_| {
                let (mut c, id) = (conn.clone(), id.clone());
                tokio::spawn(async move { Job::cancel(&mut c, &id, 2000).await })
            })
            .collect();
        for cancel in cancels {
            let _ = cancel.await.unwrap();
        }
    }
    for round in 0..6 {
        for i in 0..10 {
            let job = Job::new(format!("p{round}-{i}"), "u1", "https://x/r.git", 1000);
            Job::enqueue_at(&mut conn, &job, 1).await.unwrap();
        }
        let promoters: Vec<_> = (0..3)
            .map(|_| {
                let mut c = conn.clone();
                tokio::spawn(async move { Job::promote_due(&mut c, JOBS_STREAM, 100).await })
            })
            .collect();
        let mut promoted = 0;
        for p in promoters {
            promoted += p.await.unwrap().unwrap().jobs.len();
        }
        assert_eq!(promoted, 10, "each due job promoted once");
    }
    let report = repobox_orm::check_indexes::<Job, _>(&mut conn).await.unwrap();
    assert_eq!(problems(&report), 0, "{report:#?}");
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Cancelled).await.unwrap(), 60);
    assert_eq!(Job::count_by_status(&mut conn, JobStatus::Queued).await.unwrap(), 60);
    conn.close().await;
}

#[tokio::test]
async fn a_purge_stopped_after_each_step_leaves_no_ghost() {
    let cluster = RedisCluster::start(3, 0);
    let mut conn = cluster.store();
    // A delete's steps: read its fields, delete the hash, remove the entries.
    for (i, step) in [OrderedStep::HashWritten].iter().enumerate() {
        let id = format!("g{i}");
        Job::create_and_enqueue(&mut conn, &Job::new(&id, "u1", "https://x/r.git", 1), 1)
            .await
            .unwrap();
        Job::update_status(&mut conn, &id, JobStatus::Cancelled, 2, JobOutcome::default())
            .await
            .unwrap();
        fail_after(&format!("job:{id}"), *step);
        crashed(Job::purge(&mut conn, JobStatus::Cancelled, 10, 10, false).await);
        // Whatever is left is listed only if the job is there, and the next
        // purge finishes it.
        let listed = Job::by_status(&mut conn, JobStatus::Cancelled, repobox_orm::Page::newest(10))
            .await
            .unwrap();
        let exists = Job::get(&mut conn, &id).await.unwrap().is_some();
        assert_eq!(listed.items.len(), usize::from(exists), "{id} after {step:?}");
        Job::purge(&mut conn, JobStatus::Cancelled, 10, 10, false)
            .await
            .unwrap();
        assert_eq!(Job::get(&mut conn, &id).await.unwrap(), None);
        let page = Job::user_jobs(&mut conn, "u1", repobox_orm::Page::newest(10))
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{page:?}");
    }
    repair_is_exact(&mut conn).await;
    conn.close().await;
}

/// Which model operations stay one atomic script on a cluster and which
/// become ordered steps, by their round trips through a counting store (the
/// engine routes a write before sending it, so nothing is sent to be
/// refused): the keys of User, Session and Job are in several slots; a write
/// that touches only the entity's hash (no index entry moves) is atomic.
#[tokio::test]
async fn model_operations_on_a_cluster_are_atomic_or_ordered_as_documented() {
    use repobox_orm::testing::CountingConnection;
    let cluster = RedisCluster::start(3, 0);
    let mut conn = CountingConnection::new(cluster.store());
    // Load the scripts (a script load reaches every primary).
    User::create(&mut conn, &user("warm", "warm@x.io")).await.unwrap();
    User::update_last_login(&mut conn, "warm", 1).await.unwrap();
    Job::create_and_enqueue(&mut conn, &Job::new("warm", "warm", "x", 1), 1)
        .await
        .unwrap();
    conn.take();

    User::create(&mut conn, &user("a1", "a1@x.io")).await.unwrap();
    assert_eq!(conn.take(), 3, "User::create: ordered (claim, hash, entry)");
    User::update_last_login(&mut conn, "a1", 5).await.unwrap();
    assert_eq!(conn.take(), 1, "User::update_last_login: atomic");
    let job = Job::new("a1", "a1", "https://x/r.git", 10);
    Job::create_and_enqueue(&mut conn, &job, 10).await.unwrap();
    assert_eq!(
        conn.take(),
        6,
        "Job::create_and_enqueue: ordered, through the outbox (record, claim, hash, entry, XADD, clear)"
    );
    Job::update_status(&mut conn, "a1", JobStatus::Running, 11, JobOutcome::default())
        .await
        .unwrap();
    assert_eq!(
        conn.take(),
        7,
        "Job::update_status: a read, then ordered steps, since its entry in `jobs:status:<status>` moves to another slot and its event goes to `jobs:events` (outbox, claim, hash, old entry, XADD, outbox cleared; its compare-and-set names every field that places its entries, so the fields need no read)"
    );
    GitProviders::add(&mut conn, "a1", GitProvider::GitHub).await.unwrap();
    assert_eq!(conn.take(), 1, "GitProviders::add: atomic (one key)");
    assert!(Job::delete(&mut conn, "a1").await.unwrap());
    assert_eq!(conn.take(), 3, "Job::delete: ordered (fields, hash, entry)");
    conn.inner().close().await;
}
