//! The Store against a server that dies, restarts, fails over, kills our
//! connection, stops answering, and a store that closes with work in flight.

use std::collections::HashSet;
use std::time::Duration;

use redis::AsyncCommands;
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisServer;
use repobox_orm::{Backoff, Store, StoreConfig};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("item:<id>")]
#[index(sorted = "items:all:<group>", score = n)]
struct Item {
    id: String,
    group: String,
    n: i64,
}

/// No index: its writes take the small scripts (`put.lua`, `update.lua`).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("memo:<id>")]
struct Memo {
    id: String,
    text: String,
}

fn item(n: i64) -> Item {
    Item {
        id: n.to_string(),
        group: "g".into(),
        n,
    }
}

/// A guard against hangs, far above any configured bound: not a timing assertion.
async fn no_hang<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("a call hung")
}

fn quick_config() -> StoreConfig {
    StoreConfig::default()
        .response_timeout(Some(Duration::from_secs(2)))
        .backoff(Backoff::default().max_attempts(Some(8)))
}

async fn admin(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    server.connection().await
}

async fn client_id(store: &Store) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut store.clone())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_no_acknowledged_write_and_duplicates_none() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = Store::with_config(server.url().as_str(), quick_config()).unwrap();
    let restarted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let restarted = restarted.clone();
        tokio::spawn(async move {
            let mut conn = store.clone();
            let mut acked = Vec::new();
            let mut failed = 0;
            let mut acked_after_restart = 0;
            for n in 0..400i64 {
                let entry_n = n.to_string();
                let entry = [("n", entry_n.as_str())];
                match no_hang(Item::create_and_append(&mut conn, &item(n), "items:stream", &entry)).await {
                    Ok(_) => {
                        acked.push(n);
                        acked_after_restart += usize::from(restarted.load(std::sync::atomic::Ordering::SeqCst));
                    }
                    Err(Error::WriteOutcomeUnknown(_) | Error::Redis(_) | Error::Timeout(_)) => failed += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (acked, failed, acked_after_restart)
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    restarted.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failed, acked_after_restart) = writer.await.unwrap();
    assert_eq!(acked.len() + failed, 400);
    assert!(
        acked_after_restart > 100,
        "the store came back by itself: {acked_after_restart} acked after the restart"
    );

    let mut conn = store.clone();
    for n in &acked {
        assert!(
            Item::exists(&mut conn, n.to_string()).await.unwrap(),
            "acknowledged write {n} survived"
        );
    }
    let entries: redis::streams::StreamRangeReply = conn.xrange_all("items:stream").await.unwrap();
    let ns: Vec<String> = entries.ids.iter().filter_map(|e| e.get::<String>("n")).collect();
    let unique: HashSet<&String> = ns.iter().collect();
    assert_eq!(unique.len(), ns.len(), "no write was applied twice");
    let count = Item::count_by_group(&mut conn, "g").await.unwrap();
    assert_eq!(count as usize, ns.len(), "every item has exactly its one stream entry");
}

#[tokio::test]
async fn server_down_at_start_then_up() {
    let port = RedisServer::free_port();
    let config = StoreConfig::default().backoff(Backoff::default().max_attempts(Some(2)));
    let store = Store::with_config(format!("redis://127.0.0.1:{port}/").as_str(), config).unwrap();
    let mut conn = store.clone();
    let err = no_hang(Item::get(&mut conn, "1")).await.unwrap_err();
    assert!(
        matches!(err, Error::Redis(ref e) if e.is_connection_refusal() || e.is_io_error()),
        "{err:?}"
    );
    let _server = RedisServer::start_on(port, &[]);
    Item::create(&mut conn, &item(1)).await.unwrap();
    assert_eq!(Item::get(&mut conn, "1").await.unwrap(), Some(item(1)));
}

/// A call left unpolled halfway through connecting (one arm of a `select!`
/// while another arm awaits a second call) does not hold the second call
/// up: the connect goes on by itself and both calls get it.
#[tokio::test]
async fn a_call_parked_mid_connect_does_not_hold_up_the_next() {
    let port = RedisServer::free_port();
    let store = Store::open(format!("redis://127.0.0.1:{port}/").as_str()).unwrap();
    let mut first = store.clone();
    let ping = redis::cmd("PING");
    let parked = ping.query_async::<String>(&mut first);
    tokio::pin!(parked);
    // One poll: the first call begins to connect (to a server not up yet)
    // and is not polled again until the second call is done.
    let polled =
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(parked.as_mut(), cx))).await;
    assert!(polled.is_pending());
    let _server = RedisServer::start_on(port, &[]);
    let second: String = no_hang(redis::cmd("PING").query_async(&mut store.clone()))
        .await
        .expect("the second call connects while the first is parked");
    assert_eq!(second, "PONG");
    assert_eq!(no_hang(parked).await.unwrap(), "PONG");
}

#[tokio::test]
async fn connect_eagerly_reports_a_dead_server() {
    let port = RedisServer::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let opened = Store::open(url.as_str());
    assert!(opened.is_ok(), "open does no I/O");
    let config = StoreConfig::default().retry(false);
    let lazy = Store::with_config(url.as_str(), config).unwrap();
    let err = redis::cmd("PING")
        .query_async::<String>(&mut lazy.clone())
        .await
        .unwrap_err();
    assert!(err.is_connection_refusal(), "{err}");
}

#[tokio::test]
async fn readonly_replica_fails_writes_clearly_and_recovers() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let store = Store::with_config(server.url().as_str(), quick_config()).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    let memo = Memo {
        id: "m".into(),
        text: "hi".into(),
    };
    Memo::create(&mut conn, &memo).await.unwrap();
    let before = client_id(&store).await;

    // A failover demotes the primary: it now follows a primary that is not there.
    let dead = RedisServer::free_port();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(dead)
        .query_async(&mut admin)
        .await
        .unwrap();
    let err = Item::create(&mut conn, &item(2)).await.unwrap_err();
    assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");
    assert!(err.to_string().contains("read-only replica"), "{err}");
    assert_ne!(client_id(&store).await, before, "the store reconnected after READONLY");
    // Every write script refuses the same way: READONLY is not mistaken for
    // a key of another type (the scripts check types with pcall).
    let patch = ItemPatch {
        n: Some(5),
        ..Default::default()
    };
    let refused = [
        Item::update(&mut conn, "1", &patch).await.map(drop),
        Item::delete(&mut conn, "1").await.map(drop),
        Item::create_many(&mut conn, &[item(3)])
            .await
            .map(|mut r| r.remove(0))
            .and_then(|r| r),
        Memo::update(
            &mut conn,
            "m",
            &MemoPatch {
                text: Some("bye".into()),
            },
        )
        .await,
        Memo::create(
            &mut conn,
            &Memo {
                id: "n".into(),
                ..memo.clone()
            },
        )
        .await,
    ];
    for err in refused {
        let err = err.unwrap_err();
        assert!(matches!(err, Error::ReadOnly(_)), "{err:?}");
    }
    assert_eq!(
        Item::get(&mut conn, "1").await.unwrap(),
        Some(item(1)),
        "reads still work"
    );

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut admin)
        .await
        .unwrap();
    Item::create(&mut conn, &item(2)).await.unwrap();
    assert_eq!(Item::count_by_group(&mut conn, "g").await.unwrap(), 2);
}

#[tokio::test]
async fn client_kill_is_survived() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let store = Store::with_config(server.url().as_str(), quick_config()).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    let id = client_id(&store).await;
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap();
    // A read is re-sent on a new connection if it meets the dead one.
    assert_eq!(no_hang(Item::get(&mut conn, "1")).await.unwrap(), Some(item(1)));
    assert_ne!(client_id(&store).await, id);
    Item::create(&mut conn, &item(2)).await.unwrap();
}

#[tokio::test]
async fn a_server_that_stops_answering_times_out() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let config = StoreConfig::default().response_timeout(Some(Duration::from_millis(300)));
    let store = Store::with_config(server.url().as_str(), config).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    // A read and a write on the paused connection.
    let mut conn2 = store.clone();
    let two = item(2);
    let (read, write) =
        no_hang(async { tokio::join!(Item::get(&mut conn, "1"), Item::create(&mut conn2, &two)) }).await;
    let err = read.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    let err = write.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        Item::get(&mut conn, "1").await.unwrap(),
        Some(item(1)),
        "works again once the server answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_lets_in_flight_commands_finish_and_then_refuses() {
    let server = RedisServer::start();
    let mut admin = admin(&server).await;
    let store = Store::with_config(server.url().as_str(), quick_config()).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(0)).await.unwrap();
    // Hold the server for a moment so that commands are in flight when close starts.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut in_flight = Vec::new();
    for n in 1..=5 {
        let mut conn = store.clone();
        in_flight.push(tokio::spawn(async move { Item::create(&mut conn, &item(n)).await }));
    }
    no_hang(async {
        while store.in_flight() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    store.close().await;
    for h in in_flight {
        h.await.unwrap().expect("a command in flight at close finishes");
    }
    assert!(store.is_closed());

    let processed = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = processed(redis::cmd("INFO").arg("stats").query_async(&mut admin).await.unwrap());
    let err = Item::get(&mut conn, "1").await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
    assert!(matches!(Item::create(&mut conn, &item(9)).await, Err(Error::Closed)));
    let after = processed(redis::cmd("INFO").arg("stats").query_async(&mut admin).await.unwrap());
    assert_eq!(
        after - before,
        1,
        "only the first INFO was processed in between: the store sent nothing"
    );
    let stored: u64 = admin.zcard("items:all:g").await.unwrap();
    assert_eq!(stored, 6);
}

#[tokio::test]
async fn urls_with_password_and_database_work() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", server.port());
    let store = Store::connect(url.as_str()).await.unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    let mut plain = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/3", server.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    assert!(
        plain.exists::<_, bool>("item:1").await.unwrap(),
        "written to database 3"
    );
    let wrong = Store::with_config(
        format!("redis://:nope@127.0.0.1:{}/", server.port()).as_str(),
        StoreConfig::default().retry(false),
    )
    .unwrap();
    assert!(Item::get(&mut wrong.clone(), "1").await.is_err());
}

#[tokio::test]
async fn a_wrong_password_fails_within_one_handshake_and_is_not_shown() {
    let server = RedisServer::start_with(&["--requirepass", "right-pw"]);
    let admin_url = format!("redis://:right-pw@127.0.0.1:{}/", server.port());
    let mut admin = redis::Client::open(admin_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let connections = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    for url in [
        format!("redis://:TopSecretPW@127.0.0.1:{}/", server.port()),
        format!("redis://127.0.0.1:{}/", server.port()),
    ] {
        let before = connections(redis::cmd("INFO").arg("stats").query_async(&mut admin).await.unwrap());
        // Retries on, and as many attempts as it likes: an auth error must not use them.
        let config = StoreConfig::default().backoff(Backoff::default().max_attempts(None));
        let store = Store::with_config(url.as_str(), config).unwrap();
        let err = no_hang(redis::cmd("PING").query_async::<String>(&mut store.clone()))
            .await
            .unwrap_err();
        let err = Error::from(err);
        let text = err.to_string();
        assert!(
            text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("uthentication"),
            "{text}"
        );
        assert!(!text.contains("TopSecretPW"), "{text}");
        assert!(err.is_auth_failure(), "{text}");
        assert!(!err.is_missing_group(), "{text}");
        let after = connections(redis::cmd("INFO").arg("stats").query_async(&mut admin).await.unwrap());
        assert_eq!(after - before, 1, "one handshake, not a retry loop: {text}");
    }
}

#[tokio::test]
async fn a_stalled_server_never_holds_a_call_past_its_bound() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let config = StoreConfig::default()
        .response_timeout(Some(Duration::from_millis(300)))
        .connect_timeout(Duration::from_millis(300))
        .backoff(Backoff::default().max(Duration::from_millis(200)).max_attempts(None));
    let bound = config.call_bound().unwrap();
    assert_eq!(bound, Duration::from_millis(800));
    let store = Store::with_config(server.url().as_str(), config).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    // The server stalls for far longer than the bound.
    let mut staller = admin(&server).await;
    let stall = tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(40).query_async(&mut staller).await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The first call meets the stalled connection, the next ones a handshake
    // that gets no answer: each fails with the bound instead of waiting 40 s.
    for _ in 0..3 {
        let read = tokio::time::timeout(Duration::from_secs(10), Item::get(&mut conn, "1"))
            .await
            .expect("a call held far past its bound");
        let err = read.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        let write = tokio::time::timeout(Duration::from_secs(10), Item::create(&mut conn, &item(2)))
            .await
            .expect("a call held far past its bound");
        assert!(write.is_err());
    }
    stall.abort();
}

/// A server at its `maxmemory` with `noeviction` refuses writes with `OOM`:
/// every kind of write (a script, a bare command, a transaction, a bulk
/// call) fails with `Error::OutOfMemory`, which says that nothing was
/// written, never as an unknown outcome; reads go on.
#[tokio::test]
async fn an_oom_refusal_is_its_own_error_and_writes_nothing() {
    let server = RedisServer::start_with(&["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]);
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    Item::create(&mut conn, &item(1)).await.unwrap();
    // Fill the server with small values until it refuses one: it is past
    // its maxmemory now (a small refused command frees next to nothing).
    let mut admin = admin(&server).await;
    let big = "x".repeat(64 * 1024);
    let small = "x".repeat(256);
    let mut full = false;
    for i in 0..100_000 {
        if admin.set::<_, _, ()>(format!("fill:{i}"), &small).await.is_err() {
            full = true;
            break;
        }
    }
    assert!(full, "the server never refused a write");
    let before: u64 = redis::cmd("DBSIZE").query_async(&mut admin).await.unwrap();
    let refused = [
        Item::create(&mut conn, &item(2)).await.map(drop),
        Memo::save(
            &mut conn,
            &Memo {
                id: "m".into(),
                text: big.clone(),
            },
        )
        .await,
        Item::create_many(&mut conn, &[item(3), item(4)]).await.map(drop),
        redis::cmd("SET")
            .arg("plain")
            .arg(&big)
            .query_async::<()>(&mut conn)
            .await
            .map_err(repobox_orm::Error::from),
        // A transaction whose command is refused is aborted as a whole.
        redis::pipe()
            .atomic()
            .rpush("list", &big)
            .ignore()
            .pexpire("list", 1000)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(repobox_orm::Error::from),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        let Err(e) = r else {
            assert_eq!(i, 2, "only create_many answers Ok (per entity, below)");
            continue;
        };
        assert!(matches!(e, repobox_orm::Error::OutOfMemory(_)), "write {i}: {e:?}");
        assert!(!e.to_string().contains(&big[..100]), "write {i}: no value echoed");
    }
    let per_entity = Item::create_many(&mut conn, &[item(5)]).await;
    match per_entity {
        Ok(results) => assert!(
            matches!(results[0], Err(repobox_orm::Error::OutOfMemory(_))),
            "{results:?}"
        ),
        Err(e) => assert!(matches!(e, repobox_orm::Error::OutOfMemory(_)), "{e:?}"),
    }
    let after: u64 = redis::cmd("DBSIZE").query_async(&mut admin).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut admin).await.unwrap();
    let written: Vec<&String> = keys.iter().filter(|k| !k.starts_with("fill:")).collect();
    assert_eq!(after, before, "nothing was written: {written:?}");
    assert_eq!(Item::get(&mut conn, "1").await.unwrap(), Some(item(1)), "reads go on");
    store.close().await;
}

/// Something runs `SCRIPT FLUSH` every couple of milliseconds: every write
/// meets `NOSCRIPT` now and then, sometimes again right after loading its
/// script, and loads it as often as it takes; no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_every_few_milliseconds_fail_no_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = RedisServer::start();
    let store = Store::open(server.url().as_str()).unwrap();
    let mut conn = store.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let stop = stop.clone();
        let mut admin = admin(&server).await;
        tokio::spawn(async move {
            let mut flushes = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.unwrap();
                flushes += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            flushes
        })
    };
    for i in 0..150 {
        Item::create(&mut conn, &item(i)).await.unwrap();
        Item::save(&mut conn, &Item { n: i + 1000, ..item(i) }).await.unwrap();
        Memo::save(
            &mut conn,
            &Memo {
                id: i.to_string(),
                text: "t".into(),
            },
        )
        .await
        .unwrap();
        if i % 10 == 9 {
            let many: Vec<Item> = (0..20).map(|j| item(10_000 + i * 100 + j)).collect();
            let created = Item::create_many(&mut conn, &many).await.unwrap();
            assert!(created.iter().all(Result::is_ok), "{created:?}");
            let saved = Item::save_many(&mut conn, &many).await.unwrap();
            assert!(saved.iter().all(Result::is_ok), "{saved:?}");
            let ids: Vec<String> = many.iter().map(|m| m.id.clone()).collect();
            let deleted = Item::delete_many(&mut conn, &ids).await.unwrap();
            assert!(deleted.iter().all(|d| matches!(d, Ok(true))), "{deleted:?}");
        }
        assert!(Item::delete(&mut conn, i.to_string().as_str()).await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let flushes = flusher.await.unwrap();
    assert!(flushes > 50, "the scripts were flushed {flushes} times");
    store.close().await;
}
