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
