//! `repobox_orm::migrate`: backfill, drop and transform steps while other
//! tasks write through the library the whole time, on one server and on a
//! cluster (shared by this binary's tests; each test has keys of its own);
//! the checkpoint's resume, the refusal to finish twice, the dry run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use repobox_orm::Walk;
use repobox_orm::meta::IndexKind;
use repobox_orm::migrate::{MigrateOptions, Migration, RunEnd, Step, migrate};
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisCluster;

/// A test on its own server, and on the cluster this binary shares.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let server = repobox_orm::testing::RedisServer::start();
                super::$name(repobox_orm::Store::open(server.url()).unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$name(super::RedisCluster::shared().store()).await;
            }
        }
    )*};
}

on_both!(
    a_backfill_indexes_what_was_written_before_while_others_write,
    a_dropped_index_leaves_no_key_and_lookalikes_stay,
    a_transform_fills_a_field_and_loses_no_concurrent_write,
    a_stopped_run_resumes_from_its_checkpoint_and_a_finished_one_is_not_run_again,
);

/// A small deterministic generator, so that a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A migration made of `steps`.
struct Steps(&'static str, fn() -> repobox_orm::Result<Vec<Step>>);

impl Migration for Steps {
    fn name(&self) -> &'static str {
        self.0
    }
    fn description(&self) -> &'static str {
        "a test's steps"
    }
    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        (self.1)()
    }
}

/// `n` writer tasks doing `op`, each told its number and given a generator of its own.
fn writers<F, Fut>(n: u64, op: F) -> Vec<tokio::task::JoinHandle<u64>>
where
    F: Fn(u64, Rng) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    (0..n).map(|w| tokio::spawn(op(w, Rng(0x9e37_79b9 + w)))).collect()
}

async fn joined(tasks: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    let mut ops = 0;
    for t in tasks {
        ops += t.await.unwrap();
    }
    ops
}

const STATUSES: [&str; 3] = ["queued", "running", "done"];

mod v1 {
    use super::*;

    /// Before the indexes were added.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("bf:<id>")]
    pub struct Task {
        pub id: String,
        pub user_id: String,
        pub status: String,
        pub created_at: i64,
    }
}

/// The same hashes, now indexed.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("bf:<id>")]
#[index(set = "bf:status:<status>")]
#[index(sorted = "bf:user:<user_id>", score = created_at)]
struct Task {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

const OLD: u64 = 3_000;

async fn a_backfill_indexes_what_was_written_before_while_others_write(mut conn: Store) {
    let old: Vec<v1::Task> = (0..OLD)
        .map(|i| v1::Task {
            id: format!("o{i}"),
            user_id: format!("u{}", i % 13),
            status: STATUSES[(i % 3) as usize].into(),
            created_at: i as i64,
        })
        .collect();
    for r in v1::Task::create_many(&mut conn, &old).await.unwrap() {
        r.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Writers through the new code: new tasks, status changes and deletes
    // of old and new ones, all the time the backfill runs.
    let tasks = writers(4, {
        let (conn, stop) = (conn.clone(), stop.clone());
        move |_, mut rng| {
            let (mut conn, stop) = (conn.clone(), stop.clone());
            async move {
                let mut ops = 0;
                while !stop.load(Ordering::Relaxed) || ops < 50 {
                    let id = if rng.below(2) == 0 {
                        format!("o{}", rng.below(OLD))
                    } else {
                        format!("n{}", rng.below(500))
                    };
                    let status = STATUSES[rng.below(3) as usize].to_owned();
                    match rng.below(4) {
                        0 => {
                            let task = Task {
                                id,
                                user_id: format!("u{}", rng.below(13)),
                                status,
                                created_at: 10_000 + rng.below(1000) as i64,
                            };
                            Task::save(&mut conn, &task).await.unwrap();
                        }
                        1 => {
                            Task::delete(&mut conn, &id).await.unwrap();
                        }
                        _ => {
                            let patch = TaskPatch {
                                status: Some(status),
                                ..Default::default()
                            };
                            match Task::update(&mut conn, &id, &patch).await {
                                Ok(()) | Err(repobox_orm::Error::NotFound { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    ops += 1;
                }
                ops
            }
        }
    });
    let migration = Steps("bf-indexes", || {
        Ok(vec![
            Step::backfill_index::<Task>("by_status")?,
            Step::backfill_index::<Task>("by_user_id")?,
        ])
    });
    let report = migrate(&mut conn, &migration, &MigrateOptions::default().skip_verify(true))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let ops = joined(tasks).await;
    assert!(ops >= 200, "{ops}");
    assert_eq!(report.end, RunEnd::Finished, "{report:?}");
    assert!(report.steps[0].changed > OLD / 3, "{report:?}");
    assert!(report.steps[1].changed > OLD / 3, "{report:?}");
    assert_eq!(report.problems(), 0, "{report:?}");
    // Every entity in its indexes, no entry without its entity.
    for r in repobox_orm::check_indexes::<Task, _>(&mut conn).await.unwrap() {
        assert_eq!((r.needs_repair(), r.conflicts, r.bad), (0, 0, 0), "{r:?}");
    }
    // And the pages see the old ones: every old task still there is listed.
    let mut listed = 0;
    for status in STATUSES {
        listed += Task::count_by_status(&mut conn, status).await.unwrap();
    }
    let mut keys = 0u64;
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("bf:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys += batch.iter().filter(|k| Task::META.key.parse_key(k).is_some()).count() as u64;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(listed, keys);
}

mod v2 {
    use super::*;

    /// Before its status index was removed.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("dr:<id>")]
    #[index(set = "dr:status:<status>")]
    #[index(sorted = "dr:user:<user_id>", score = created_at)]
    pub struct Item {
        pub id: String,
        pub user_id: String,
        pub status: String,
        pub created_at: i64,
    }
}

/// Without it.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("dr:<id>")]
#[index(sorted = "dr:user:<user_id>", score = created_at)]
struct Item {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

async fn a_dropped_index_leaves_no_key_and_lookalikes_stay(mut conn: Store) {
    let old: Vec<v2::Item> = (0..600)
        .map(|i| v2::Item {
            id: format!("i{i}"),
            user_id: format!("u{}", i % 7),
            // Many status values: many index keys to drop.
            status: format!("s{}", i % 200),
            created_at: i,
        })
        .collect();
    for r in v2::Item::create_many(&mut conn, &old).await.unwrap() {
        r.unwrap();
    }
    // Keys that look like the dropped index's and are not: another shape,
    // another type.
    let _: () = conn.sadd("dr:status:a:b", "x").await.unwrap();
    let _: () = conn.set("dr:status:plain", "x").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(3, {
        let (conn, stop) = (conn.clone(), stop.clone());
        move |_, mut rng| {
            let (mut conn, stop) = (conn.clone(), stop.clone());
            async move {
                let mut ops = 0;
                while !stop.load(Ordering::Relaxed) || ops < 50 {
                    let item = Item {
                        id: format!("i{}", rng.below(800)),
                        user_id: format!("u{}", rng.below(7)),
                        status: format!("s{}", rng.below(200)),
                        created_at: rng.below(5000) as i64,
                    };
                    if rng.below(3) == 0 {
                        Item::delete(&mut conn, &item.id).await.unwrap();
                    } else {
                        Item::save(&mut conn, &item).await.unwrap();
                    }
                    ops += 1;
                }
                ops
            }
        }
    });
    let migration = Steps("dr-status", || {
        Ok(vec![Step::drop_index::<Item>("dr:status:<status>", IndexKind::Set)?])
    });
    let dry = migrate(&mut conn, &migration, &MigrateOptions::default().dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.end, RunEnd::DryRun);
    assert_eq!(dry.steps[0].changed, 200, "{dry:?}");
    let still: bool = conn.exists("dr:status:s0").await.unwrap();
    assert!(still, "a dry run removes nothing");
    let report = migrate(&mut conn, &migration, &MigrateOptions::default())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    joined(tasks).await;
    assert_eq!(report.end, RunEnd::Finished);
    assert_eq!(report.steps[0].changed, 200, "{report:?}");
    for s in 0..200 {
        let left: bool = conn.exists(format!("dr:status:s{s}")).await.unwrap();
        assert!(!left, "dr:status:s{s}");
    }
    let lookalikes: u64 = conn.exists(&["dr:status:a:b", "dr:status:plain"]).await.unwrap();
    assert_eq!(lookalikes, 2);
    // Nothing of an index still declared was touched.
    assert!(report.is_verified(), "{report:?}");
    for r in repobox_orm::check_indexes::<Item, _>(&mut conn).await.unwrap() {
        assert_eq!((r.needs_repair(), r.conflicts, r.bad), (0, 0, 0), "{r:?}");
    }
    // Refused before anything runs: an index still declared, a bad template.
    for (template, what) in [("dr:user:<user_id>", "still declared"), ("dr:<x", "without its")] {
        let err = Step::drop_index::<Item>(template, IndexKind::Sorted { score: "created_at" }).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
}

/// A run whose hashes have an old name for `exit_code`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("tr:<id>")]
struct Run {
    id: String,
    #[redis(alias = "exit")]
    exit_code: Option<i32>,
    note: Option<String>,
}

fn fill_exit_code() -> repobox_orm::Result<Vec<Step>> {
    Ok(vec![Step::transform::<Run>("fill exit_code from exit", |hash, out| {
        match (hash.get("exit_code"), hash.get("exit")) {
            (None, Some(exit)) => out.set("exit_code", exit.to_vec()),
            (Some(_), Some(_)) => out.delete("exit"),
            _ => {}
        }
        Ok(())
    })])
}

const RUNS: u64 = 2_000;

async fn a_transform_fills_a_field_and_loses_no_concurrent_write(mut conn: Store) {
    for i in 0..RUNS {
        let _: () = redis::cmd("HSET")
            .arg(format!("tr:r{i}"))
            .arg(&["id", &format!("r{i}"), "exit", &(i % 7).to_string()])
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // What the writers did last to each run: a new exit code, or a delete.
    let last: Arc<Mutex<HashMap<u64, Option<i32>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(4, {
        let (conn, stop, last) = (conn.clone(), stop.clone(), last.clone());
        move |w, mut rng| {
            let (mut conn, stop, last) = (conn.clone(), stop.clone(), last.clone());
            async move {
                let mut ops = 0;
                while !stop.load(Ordering::Relaxed) || ops < 50 {
                    // Each writer keeps to runs of its own, so "last" is exact.
                    let i = w + 4 * rng.below(RUNS / 4);
                    if last.lock().unwrap().get(&i) == Some(&None) {
                        continue;
                    }
                    if rng.below(5) == 0 {
                        Run::delete(&mut conn, &format!("r{i}")).await.unwrap();
                        last.lock().unwrap().insert(i, None);
                    } else {
                        let code = 100 + rng.below(50) as i32;
                        let patch = RunPatch {
                            exit_code: Some(Some(code)),
                            note: Some(Some("by the app".into())),
                        };
                        Run::update(&mut conn, &format!("r{i}"), &patch).await.unwrap();
                        last.lock().unwrap().insert(i, Some(code));
                    }
                    ops += 1;
                }
                ops
            }
        }
    });
    let report = migrate(&mut conn, &Steps("tr-exit", fill_exit_code), &MigrateOptions::default())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    joined(tasks).await;
    assert_eq!(report.end, RunEnd::Finished);
    assert_eq!(report.problems(), 0, "{report:?}");
    assert!(report.is_verified(), "{report:?}");
    let last = last.lock().unwrap().clone();
    let mut transformed = 0;
    for i in 0..RUNS {
        let key = format!("tr:r{i}");
        let fields: HashMap<String, String> = conn.hgetall(&key).await.unwrap();
        match last.get(&i) {
            Some(None) => assert!(fields.is_empty(), "{key} was deleted and came back: {fields:?}"),
            Some(Some(code)) => assert_eq!(fields.get("exit_code"), Some(&code.to_string()), "{key}"),
            None => {
                transformed += 1;
                assert_eq!(fields.get("exit_code"), Some(&(i % 7).to_string()), "{key}: {fields:?}");
            }
        }
        assert!(!fields.contains_key("exit"), "{key} still has its old name: {fields:?}");
    }
    assert!(transformed > 0 && report.steps[0].changed >= transformed, "{report:?}");
}

/// The same, under keys of its own.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("rs:<id>")]
struct Legacy {
    id: String,
    #[redis(alias = "exit")]
    exit_code: Option<i32>,
}

fn fill_legacy() -> repobox_orm::Result<Vec<Step>> {
    Ok(vec![Step::transform::<Legacy>(
        "fill exit_code from exit",
        |hash, out| {
            if let (None, Some(exit)) = (hash.get("exit_code"), hash.get("exit")) {
                out.set("exit_code", exit.to_vec());
            }
            Ok(())
        },
    )])
}

/// Sets `stop` once the walk has advanced `after` times.
struct StopAfter {
    stop: AtomicBool,
    after: usize,
    seen: Mutex<usize>,
}

impl repobox_orm::WalkProgress for StopAfter {
    fn pass(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {
        let mut seen = self.seen.lock().unwrap();
        *seen += 1;
        if *seen >= self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

async fn a_stopped_run_resumes_from_its_checkpoint_and_a_finished_one_is_not_run_again(mut conn: Store) {
    const N: u64 = 3_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.hset_multiple(format!("rs:l{i}"), &[("id", format!("l{i}")), ("exit", "1".into())])
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let migration = Steps("rs-exit", fill_legacy);
    let states = repobox_orm::migrate::states(&mut conn, &[&migration]).await.unwrap();
    assert_eq!(states[0].state, "not_started");

    // Stopped after its first batch (Ctrl-C): the checkpoint says where.
    let stopper = StopAfter {
        stop: AtomicBool::new(false),
        after: 1,
        seen: Mutex::new(0),
    };
    let walk = Walk::new().progress(&stopper);
    let options = MigrateOptions::default().walk(walk).stop_when(&stopper.stop);
    let first = migrate(&mut conn, &migration, &options).await.unwrap();
    assert_eq!(first.end, RunEnd::Stopped);
    assert!(!first.resumed);
    assert!(first.steps[0].looked < N, "{first:?}");
    let states = repobox_orm::migrate::states(&mut conn, &[&migration]).await.unwrap();
    assert_eq!((states[0].state, states[0].step), ("in_progress", Some(0)));

    // Resumed: no key is looked at twice, none changed twice.
    let second = migrate(&mut conn, &migration, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(second.end, RunEnd::Finished);
    assert!(second.resumed);
    assert_eq!(second.steps[0].changed, N, "{second:?}");
    let looked = second.steps[0].looked;
    assert!((N..N + 1_000).contains(&looked), "{second:?}");
    let left: u64 = {
        let mut n = 0;
        for i in 0..N {
            let old: bool = conn.hexists(format!("rs:l{i}"), "exit").await.unwrap();
            n += u64::from(old);
        }
        n
    };
    assert_eq!(left, 0);

    // Finished: not run again, unless restarted (and then nothing to do).
    let third = migrate(&mut conn, &migration, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(third.end, RunEnd::AlreadyDone);
    assert_eq!(third.steps[0].changed, N);
    let again = migrate(&mut conn, &migration, &MigrateOptions::default().restart(true))
        .await
        .unwrap();
    assert_eq!((again.end, again.steps[0].changed), (RunEnd::Finished, 0), "{again:?}");

    // The same name with other steps: refused, unless restarted.
    let other = Steps("rs-exit", || {
        Ok(vec![Step::transform::<Legacy>("something else", |_, _| Ok(()))])
    });
    let err = migrate(&mut conn, &other, &MigrateOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("other steps"), "{err}");

    // A transform that would change its own result again is refused at
    // the first entity, before anything of it is written.
    let _: () = conn.hset("rs:bump", "id", "bump").await.unwrap();
    let _: () = conn.hset("rs:bump", "exit_code", "1").await.unwrap();
    let bump = Steps("rs-bump", || {
        Ok(vec![Step::transform::<Legacy>("bump", |hash, out| {
            let n: i64 = hash.get_str("exit_code").and_then(|s| s.parse().ok()).unwrap_or(0);
            out.set("exit_code", (n + 1).to_string());
            Ok(())
        })])
    });
    let err = migrate(&mut conn, &bump, &MigrateOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("changes [\"exit_code\"] again"), "{err}");
    let code: String = conn.hget("rs:bump", "exit_code").await.unwrap();
    assert_eq!(code, "1");

    // Two runs at once: the second takes the checkpoint over, the first
    // stops at its next batch.
    let slow = Walk::new().per_second(std::num::NonZeroU32::new(2_000));
    let racer = Steps("rs-race", fill_legacy);
    let first = {
        let mut conn = conn.clone();
        tokio::spawn(async move {
            let racer = Steps("rs-race", fill_legacy);
            migrate(&mut conn, &racer, &MigrateOptions::default().walk(slow))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second = migrate(&mut conn, &racer, &MigrateOptions::default()).await.unwrap();
    assert_eq!(second.end, RunEnd::Finished);
    assert_eq!(first.await.unwrap().end, RunEnd::TakenOver);
}
