//! A live reshard on a Redis Cluster: the slots holding `jobs:stream`, its
//! dead letters, a job's output list and a bare-saved entity move to other
//! primaries while writers keep writing them through the default `Store`.
//! Transactions (`Job::append_output`, the bare save, `requeue_dead`) follow
//! the `ASK`s of the migration and the `MOVED`s after it: no call fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use repobox_models::{JOBS_GROUP, JOBS_STREAM, Job};
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisCluster;
use repobox_orm::{Queue, Store};

/// An entity without indexes or TTL: its save is a bare `HSET` (and `HDEL`)
/// in one `MULTI`/`EXEC`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("bare:<id>")]
struct Bare {
    id: String,
    n: u64,
    note: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_through_a_live_reshard_of_their_slots() {
    let cluster = Arc::new(RedisCluster::start(3, 0));
    let store = Store::open(cluster.url().as_str()).unwrap();
    let queue = Queue::new(JOBS_STREAM, JOBS_GROUP);
    queue.ensure_group(&mut store.clone()).await.unwrap();
    let dead = queue.dead_stream().to_owned();

    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..3u8 {
        let (store, done, failures, calls, queue, dead) = (
            store.clone(),
            done.clone(),
            failures.clone(),
            calls.clone(),
            queue.clone(),
            dead.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut conn = store.clone();
            let mut i = 0u64;
            // Until the reshard is over, and 50 calls past it.
            let mut after = 0;
            while after < 50 {
                if done.load(Ordering::SeqCst) {
                    after += 1;
                }
                i += 1;
                let result: Result<(), String> = match writer {
                    0 => Job::append_output(&mut conn, "j1", &[format!("line {i}")])
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    1 => Bare::save(
                        &mut conn,
                        &Bare {
                            id: "b1".into(),
                            n: i,
                            note: i.is_multiple_of(2).then(|| "even".into()),
                        },
                    )
                    .await
                    .map_err(|e| e.to_string()),
                    _ => async {
                        let id: String = redis::cmd("XADD")
                            .arg(&dead)
                            .arg("*")
                            .arg(&[("job_id", "j1"), ("reason", "test")])
                            .query_async(&mut conn)
                            .await?;
                        queue.requeue_dead(&mut conn, &[id]).await?;
                        Ok::<(), repobox_orm::Error>(())
                    }
                    .await
                    .map_err(|e| e.to_string()),
                };
                calls.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = result {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("writer {writer}, call {i}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    // Let the writers warm up, then move each slot to the next primary.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys = ["job:j1:output", "bare:b1", JOBS_STREAM, &dead];
    let moved = {
        let cluster = cluster.clone();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut moved = Vec::new();
            for key in &keys {
                let slot = cluster.slot_of(key);
                if moved.contains(&slot) {
                    continue;
                }
                let to = (cluster.owner_of(slot) + 1) % 3;
                cluster.move_slot(slot, to);
                assert_eq!(cluster.owner_of(slot), to);
                moved.push(slot);
                std::thread::sleep(Duration::from_millis(100));
            }
            moved
        })
        .await
        .unwrap()
    };
    assert!(!moved.is_empty());
    done.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "of {} calls (see the lines above)",
        calls.load(Ordering::SeqCst)
    );
    // What was written is there, on the new owners.
    let mut conn = store.clone();
    assert!(Job::output_count(&mut conn, "j1").await.unwrap() > 50);
    assert!(Bare::get(&mut conn, "b1").await.unwrap().is_some());
    assert_eq!(queue.dead_len(&mut conn).await.unwrap(), 0, "every letter went back");
    store.close().await;
}
