//! The cluster fixture of the test kit: three primaries on loopback ports,
//! ready when `start` returns, every slot served, every process gone on drop.

use repobox_orm::testing::RedisCluster;

#[test]
fn a_three_master_cluster_starts_serves_every_slot_and_stops() {
    let ports: Vec<u16>;
    {
        let cluster = RedisCluster::start(3, 0);
        assert_eq!(cluster.masters(), 3);
        ports = cluster.nodes().iter().map(|n| n.port()).collect();
        let mut conn = cluster.nodes()[0].client().get_connection().unwrap();
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
        // A key in another node's slot is a MOVED, as a cluster client expects.
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let moved = keys.iter().any(|k| {
            let err = redis::cmd("SET").arg(k).arg(1).query::<()>(&mut conn).err();
            err.is_some_and(|e| e.redirect_node().is_some())
        });
        assert!(moved, "no key of 20 fell on another node");
    }
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a node on {port} outlived the fixture"
        );
    }
}

fn cluster() -> &'static RedisCluster {
    RedisCluster::shared()
}

#[tokio::test]
async fn a_store_opened_on_a_cluster_url_routes_every_command() {
    let store = cluster().store();
    assert!(store.is_cluster());
    let mut conn = store.clone();
    let keys: Vec<String> = (0..50).map(|i| format!("store:key:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let () = redis::cmd("SET").arg(k).arg(i).query_async(&mut conn).await.unwrap();
    }
    // A pipeline across slots is split per slot and answered in order.
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("GET").arg(k);
    }
    let values: Vec<usize> = pipe.query_async(&mut conn).await.unwrap();
    assert_eq!(values, (0..50).collect::<Vec<_>>());
    // SCAN walks every primary: it finds all 50 keys, each once.
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("store:key:*")
            .arg("COUNT")
            .arg(7)
            .query_async(&mut conn)
            .await
            .unwrap();
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(found, want);
    store.close().await;
}

/// Whether `cross:a` and `cross:b` exist.
async fn neither_written(conn: &mut repobox_orm::Store) -> (bool, bool) {
    redis::pipe()
        .exists("cross:a")
        .exists("cross:b")
        .query_async(conn)
        .await
        .unwrap()
}

/// A user's script across slots goes to its first key's primary, which
/// refuses it (`CROSSSLOT`) and runs nothing; the store makes up no answer.
#[tokio::test]
async fn a_script_across_slots_is_refused_and_runs_nothing() {
    let store = cluster().store();
    let mut conn = store.clone();
    let script = redis::Script::new("return redis.call('SET', KEYS[1], '1') and redis.call('SET', KEYS[2], '1')");
    let err = script
        .key("cross:a")
        .key("cross:b")
        .invoke_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot),
        "{err}"
    );
    assert_eq!(neither_written(&mut conn).await, (false, false));
    // Keys sharing a hash tag are one slot: the script runs.
    let () = script.key("{t}:a").key("{t}:b").invoke_async(&mut conn).await.unwrap();
    // A transaction across slots cannot be atomic: the store refuses it
    // unsent, as its own error.
    let err = redis::pipe()
        .atomic()
        .set("cross:a", "1")
        .set("cross:b", "1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), redis::ErrorKind::Client, "{err}");
    assert!(err.to_string().contains("atomic only within one slot"), "{err}");
    assert_eq!(neither_written(&mut conn).await, (false, false));
}

#[test]
fn cluster_urls_are_parsed_and_their_secrets_kept_out_of_errors() {
    let err = repobox_orm::Store::open("redis+cluster://:hunter2@127.0.0.1:1,,x").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(
        repobox_orm::Store::open("rediss+cluster://a:1,b:2")
            .unwrap()
            .is_cluster()
    );
}

fn role(node: &repobox_orm::testing::RedisServer) -> String {
    let mut conn = node.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_writes_loses_no_acknowledged_write_and_the_writer_recovers() {
    let cluster = RedisCluster::start(3, 1);
    let store = cluster.store();
    let replica = (cluster.masters()..cluster.nodes().len())
        .find(|&i| role(&cluster.nodes()[i]) == "slave")
        .expect("a replica");
    let writer = {
        let mut conn = store.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failed = Vec::new();
            for i in 0..1500u32 {
                let key = format!("failover:{i}");
                match redis::cmd("SET").arg(&key).arg(i).query_async::<()>(&mut conn).await {
                    Ok(()) => acknowledged.push(key),
                    Err(e) => failed.push(format!("{key}: {e}")),
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (acknowledged, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // A manual failover: the primary pauses writes until its replica has
    // every one of them, then the replica takes over. Asked again while the
    // nodes still gossip who replicates whom.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    'failover: loop {
        let mut conn = cluster.nodes()[replica].client().get_connection().unwrap();
        let () = redis::cmd("CLUSTER").arg("FAILOVER").query(&mut conn).unwrap();
        let asked = std::time::Instant::now();
        while asked.elapsed() < std::time::Duration::from_secs(3) {
            if role(&cluster.nodes()[replica]) == "master" {
                break 'failover;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never took over: {:?}",
            cluster.nodes().iter().map(role).collect::<Vec<_>>()
        );
    }
    assert!(!writer.is_finished(), "the failover came after the writes");
    let (acknowledged, failed) = writer.await.unwrap();
    // Redirects are re-sent by the store: the writer never saw an error.
    assert!(
        failed.is_empty(),
        "writes failed during a graceful failover: {failed:?}"
    );
    assert_eq!(acknowledged.len(), 1500);
    let mut conn = store.clone();
    let mut pipe = redis::pipe();
    for key in &acknowledged {
        pipe.cmd("EXISTS").arg(key);
    }
    let exists: Vec<bool> = pipe.query_async(&mut conn).await.unwrap();
    assert!(exists.iter().all(|e| *e), "an acknowledged write was lost");
    // The old primary is a replica now; the store still writes everywhere.
    for i in 0..50 {
        let () = redis::cmd("SET")
            .arg(format!("after:{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    store.close().await;
}

#[derive(repobox_orm::RedisEntity, Debug, Clone, PartialEq)]
#[key("raw:<id>")]
#[index(sorted = "raws:<owner>", score = at)]
#[index(unique = "raw:name:<name>")]
struct Raw {
    id: String,
    owner: String,
    name: String,
    at: i64,
}

/// redis-rs's own cluster connection, passed to the generated calls: the
/// engine cannot see that it is a cluster, so its first `CROSSSLOT` answer
/// teaches the call's router (the refused writes go ordered, the rest of a
/// bulk call is routed as on a `Store`), and it sends one pipeline per slot
/// where the connection refuses a pipeline across slots.
#[tokio::test]
async fn the_generated_calls_work_on_redis_rs_own_cluster_connection() {
    use repobox_orm::Page;
    let client = redis::cluster::ClusterClient::new(cluster().urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let raw = |i: i64| Raw {
        id: format!("r{i}"),
        owner: "ann".into(),
        name: format!("name-{i}"),
        at: i,
    };
    for i in 0..20 {
        Raw::create(&mut conn, &raw(i)).await.unwrap();
    }
    let taken = Raw::create(
        &mut conn,
        &Raw {
            id: "other".into(),
            ..raw(3)
        },
    )
    .await;
    assert!(
        matches!(taken, Err(repobox_orm::Error::UniqueViolation { .. })),
        "{taken:?}"
    );
    // A bulk create: its first call of many is refused across slots, then
    // every entity goes ordered, each answered on its own.
    let mut bulk: Vec<Raw> = (20..40).map(raw).collect();
    bulk.push(Raw {
        id: "dup".into(),
        ..raw(5)
    });
    let created = Raw::create_many(&mut conn, &bulk).await.unwrap();
    assert!(created[..20].iter().all(Result::is_ok), "{created:?}");
    assert!(
        matches!(created[20], Err(repobox_orm::Error::UniqueViolation { .. })),
        "{created:?}"
    );
    assert_eq!(Raw::count_by_owner(&mut conn, "ann").await.unwrap(), 40);
    assert_eq!(Raw::by_name(&mut conn, "name-33").await.unwrap(), Some(raw(33)));
    let extra: Vec<String> = (20..40).map(|i| format!("r{i}")).collect();
    assert!(
        Raw::delete_many(&mut conn, &extra)
            .await
            .unwrap()
            .iter()
            .all(|d| matches!(d, Ok(true)))
    );
    assert_eq!(Raw::by_name(&mut conn, "name-33").await.unwrap(), None);
    let ids: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    let all = Raw::get_many(&mut conn, &ids).await.unwrap().into_result().unwrap();
    assert_eq!(all, (0..20).map(|i| Some(raw(i))).collect::<Vec<_>>());
    let page = Raw::by_owner(&mut conn, "ann", Page::newest(5))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page, (15..20).rev().map(raw).collect::<Vec<_>>());
    assert_eq!(Raw::by_name(&mut conn, "name-7").await.unwrap(), Some(raw(7)));
    let saved = Raw::save_many(
        &mut conn,
        &(0..20)
            .map(|i| Raw {
                owner: "bob".into(),
                ..raw(i)
            })
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(saved.iter().all(Result::is_ok));
    assert_eq!(Raw::count_by_owner(&mut conn, "bob").await.unwrap(), 20);
    // A sweep would see one node's keys here: it refuses, before reading anything.
    let partial = repobox_orm::check_indexes::<Raw, _>(&mut conn).await;
    assert!(
        matches!(&partial, Err(repobox_orm::Error::InvalidArgument { reason, .. }) if reason.contains("every primary")),
        "{partial:?}"
    );
    // Through a Store, whose SCAN walks every primary, it sees all 20.
    let reports = repobox_orm::check_indexes::<Raw, _>(&mut cluster().store())
        .await
        .unwrap();
    let by_owner = reports.iter().find(|r| r.index == "by_owner").unwrap();
    assert!(by_owner.members >= 20, "{reports:?}");
    assert!(
        Raw::by_owner(&mut conn, "ann", Page::newest(5))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let deleted = Raw::delete_many(&mut conn, &ids).await.unwrap();
    assert!(deleted.iter().all(|d| matches!(d, Ok(true))), "{deleted:?}");
    assert_eq!(Raw::by_name(&mut conn, "name-7").await.unwrap(), None);
}

/// A primary without a replica killed and restarted: calls on its slots fail
/// once their attempts are used up (a write refused at connect was never
/// sent, so it is tried again, not reported as unknown), calls on the other
/// primaries go on, and the store picks the node up again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_ridden_out_and_picked_up_again() {
    let mut cluster = RedisCluster::start(3, 0);
    let backoff = repobox_orm::Backoff::default()
        .step(std::time::Duration::from_millis(20))
        .max(std::time::Duration::from_millis(100))
        .max_attempts(Some(5));
    let store = repobox_orm::Store::with_config(
        cluster.url(),
        repobox_orm::StoreConfig::default()
            .backoff(backoff)
            .connect_timeout(std::time::Duration::from_millis(500))
            // Give up on the dead node's slots at once: this test is about
            // what the error says, not about waiting for a failover.
            .cluster_wait(std::time::Duration::from_millis(500)),
    )
    .unwrap();
    let mut conn = store.clone();
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for k in &keys {
        let () = redis::cmd("SET").arg(k).arg(1).query_async(&mut conn).await.unwrap();
    }
    let port = cluster.nodes()[0].port();
    // Which keys the killed primary serves.
    let mut direct = cluster.nodes()[0].client().get_connection().unwrap();
    let on_node: Vec<&String> = keys
        .iter()
        .filter(|k| redis::cmd("GET").arg(*k).query::<Option<String>>(&mut direct).is_ok())
        .collect();
    let elsewhere: Vec<&String> = keys.iter().filter(|k| !on_node.contains(k)).collect();
    assert!(!on_node.is_empty() && !elsewhere.is_empty());
    drop(direct);
    cluster.node_mut(0).kill();

    let err = redis::cmd("GET")
        .arg(on_node[0])
        .query_async::<Option<String>>(&mut conn)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("CROSSSLOT"), "{err}");
    let write = redis::cmd("SET")
        .arg(on_node[0])
        .arg(2)
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    let write = repobox_orm::Error::from(write);
    assert!(
        !matches!(write, repobox_orm::Error::WriteOutcomeUnknown(_)),
        "a write its node refused was never sent: {write:?}"
    );
    let other: Option<String> = redis::cmd("GET")
        .arg(elsewhere[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        other.as_deref(),
        Some("1"),
        "the other primaries still answer (port {port} is down)"
    );

    cluster.node_mut(0).restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match redis::cmd("GET")
            .arg(on_node[0])
            .query_async::<Option<String>>(&mut conn)
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(std::time::Instant::now() < deadline, "never picked up again: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let () = redis::cmd("SET")
        .arg(on_node[0])
        .arg(3)
        .query_async(&mut conn)
        .await
        .unwrap();
    store.close().await;
    assert!(matches!(
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(repobox_orm::Error::from),
        Err(repobox_orm::Error::Closed)
    ));
}

/// A slot moves to another primary behind the store's back: the part of a
/// pipeline that goes to its old owner is answered `MOVED` and sent again on
/// its own; the other slots' parts, which ran, are not run twice.
#[tokio::test]
async fn a_moved_slot_resends_only_its_part_of_a_pipeline() {
    let cluster = RedisCluster::start(3, 0);
    let store = cluster.store();
    let mut conn = store.clone();
    let () = redis::cmd("SET")
        .arg("warm")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| {
            let mut c = n.client().get_connection().unwrap();
            redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
        })
        .collect();
    // "inc:b" moves from its primary to the next one (its slot is empty).
    let owner = |key: &str| {
        cluster
            .nodes()
            .iter()
            .position(|n| {
                let mut c = n.client().get_connection().unwrap();
                redis::cmd("GET").arg(key).query::<Option<String>>(&mut c).is_ok()
            })
            .unwrap()
    };
    let (a, b) = ("inc:a", "inc:b");
    let slot: u16 = {
        let mut c = cluster.nodes()[0].client().get_connection().unwrap();
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(b).query(&mut c).unwrap()
    };
    let from = owner(b);
    let to = (from + 1) % 3;
    // A read across slots first: the store learns which primary serves what.
    let none: (Option<i64>, Option<i64>) = redis::pipe().get(a).get(b).query_async(&mut conn).await.unwrap();
    assert_eq!(none, (None, None));
    for i in [to, from, (from + 2) % 3] {
        let mut c = cluster.nodes()[i].client().get_connection().unwrap();
        let () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(&ids[to])
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(owner(b), to);
    let (x, y): (i64, i64) = redis::pipe()
        .incr(a, 1)
        .incr(b, 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((x, y), (1, 1));
    // The read goes per primary with the stale map, meets MOVED, and is sent again.
    let values: (i64, i64) = redis::pipe().get(a).get(b).query_async(&mut conn).await.unwrap();
    assert_eq!(values, (1, 1), "the part that ran was not run again");
    store.close().await;
}

/// A slot is migrating (`MIGRATING` on its owner, `IMPORTING` on another
/// primary) and some of its keys have already left: reads and writes of
/// those keys are answered `ASK` by the owner, and the store follows them to
/// the importing node with `ASKING`, for single commands, transactions and
/// read pipelines, with the default config (no waiting on a backoff). A
/// write pipeline of several commands of which some were redirected is an
/// unknown outcome, never "did not run". Once the migration ends, the old
/// owner answers `MOVED`, which transactions follow too.
#[tokio::test]
async fn an_open_migration_is_read_and_written_through_the_store() {
    use repobox_orm::{Error, Store};

    let cluster = RedisCluster::start(3, 0);
    let store = Store::open(cluster.url().as_str()).unwrap();
    let mut conn = store.clone();
    let (gone, stays, hash, new) = ("{mig}gone", "{mig}stays", "{mig}hash", "{mig}new");
    let () = redis::pipe()
        .set(gone, 1)
        .ignore()
        .set(stays, 1)
        .ignore()
        .hset(hash, "f", 1)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let slot = cluster.slot_of(gone);
    let to = (cluster.owner_of(slot) + 1) % 3;
    let from = cluster.open_migration(slot, to, &[gone, hash]);

    // Single commands: reads and writes of moved, staying and new keys.
    let read: i64 = redis::cmd("GET").arg(gone).query_async(&mut conn).await.unwrap();
    assert_eq!(read, 1);
    let n: i64 = redis::cmd("INCR").arg(gone).query_async(&mut conn).await.unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("INCR").arg(stays).query_async(&mut conn).await.unwrap();
    assert_eq!(n, 2);
    let () = redis::cmd("SET")
        .arg(new)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Transactions (a redirect aborts them, so nothing ran before it is followed).
    let (n, added): (i64, i64) = redis::pipe()
        .atomic()
        .incr(gone, 1)
        .hset(hash, "g", 2)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((n, added), (3, 1));
    let (n,): (i64,) = redis::pipe()
        .atomic()
        .incr(stays, 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 3);
    // A read pipeline over the slot and others.
    let values: (i64, i64, String, Option<String>) = redis::pipe()
        .get(gone)
        .get(stays)
        .get(new)
        .get("elsewhere")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(values, (3, 3, "x".to_owned(), None));
    // Several writes in one part, one of them redirected: the other ran.
    let mixed: Result<(i64, i64), redis::RedisError> =
        redis::pipe().incr(stays, 1).incr(gone, 1).query_async(&mut conn).await;
    let err = Error::from(mixed.expect_err("part of the pipeline was redirected"));
    assert!(matches!(err, Error::WriteOutcomeUnknown(_)), "{err:?}");
    let n: i64 = redis::cmd("GET").arg(stays).query_async(&mut conn).await.unwrap();
    assert_eq!(n, 4, "the write that was not redirected ran");

    // The migration ends behind the store's back: MOVED from the old owner.
    cluster.finish_migration(slot, from, to);
    for i in 0..10 {
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .incr(gone, 1)
            .incr(stays, 1)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("transaction {i} after the move: {e}"));
        assert_eq!(
            (a, b),
            (4 + i, 5 + i),
            "the redirected write of the mixed part did not run"
        );
        let () = redis::pipe()
            .set(new, i)
            .ignore()
            .hset(hash, "h", i)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("pipeline {i} after the move: {e}"));
    }
    store.close().await;
}

/// A cluster whose nodes are still agreeing on who serves what (returned as
/// soon as `redis-cli --cluster create` finishes): the first commands meet
/// `CLUSTERDOWN` or find no connection for their slot yet. They were never
/// run, so the store sends them again until the cluster has settled, within
/// the default `cluster_wait`: no call fails, none is reported as an
/// unknown outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_cluster_is_waited_for_and_its_first_writes_succeed() {
    for round in 0..3 {
        let cluster = RedisCluster::start_unsettled(3);
        let store = repobox_orm::Store::open(cluster.url().as_str()).unwrap();
        let mut conn = store.clone();
        for i in 0..60 {
            let () = redis::cmd("SET")
                .arg(format!("young:{i}"))
                .arg(i)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("round {round}, write {i}: {:?}", repobox_orm::Error::from(e)));
        }
        let (a, b): (i64, i64) = redis::pipe()
            .get("young:1")
            .get("young:59")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((a, b), (1, 59));
        store.close().await;
    }
}
