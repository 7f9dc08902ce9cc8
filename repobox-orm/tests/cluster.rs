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

#[tokio::test]
async fn a_script_across_slots_is_refused_before_it_is_sent() {
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
    let exists: (bool, bool) = redis::pipe()
        .exists("cross:a")
        .exists("cross:b")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, (false, false));
    // Keys sharing a hash tag are one slot: the script runs.
    let () = script.key("{t}:a").key("{t}:b").invoke_async(&mut conn).await.unwrap();
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
