//! A sweep over an index of 1,000,000 members keeps its memory bounded by
//! its window, not by the index: measured with a counting allocator (the
//! only test of this binary, so that nothing else allocates meanwhile).

use repobox_orm::prelude::*;
use repobox_orm::testing::{PeakAlloc, RedisServer};

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("item:<id>")]
#[index(sorted = "items:<kind>", score = at)]
struct Item {
    id: String,
    kind: String,
    at: i64,
}

const MEMBERS: u64 = 1_000_000;

#[tokio::test]
async fn a_sweep_of_a_million_members_stays_within_its_window() {
    let server = RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    // A million members whose entities are gone, written by the server.
    let _: () = redis::cmd("EVAL")
        .arg("for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, 'gone' .. i) end")
        .arg(1)
        .arg("items:k")
        .arg(MEMBERS)
        .query_async(&mut conn)
        .await
        .unwrap();
    // A few live ones among them.
    for i in 0..3 {
        let item = Item {
            id: format!("live{i}"),
            kind: "k".into(),
            at: i,
        };
        Item::create(&mut conn, &item).await.unwrap();
    }
    let before = ALLOC.reset_peak();
    let reports = repobox_orm::check_indexes::<Item, _>(&mut conn).await.unwrap();
    let peak = ALLOC.peak_above(before);
    let report = &reports[0];
    assert_eq!(report.members, MEMBERS + 3, "{report:?}");
    assert_eq!(report.gone, MEMBERS, "{report:?}");
    // The million members' ids alone are more than 10 MB, which reading the
    // index whole (`ZRANGE 0 -1`, as the sweep did) held at once, with the
    // reply they came in. A window of 500 needs well under 4 MB (measured:
    // about 0.3 MB).
    assert!(peak < 4 << 20, "the sweep's memory grew by {peak} bytes");
    eprintln!("sweep of {MEMBERS} members: peak {peak} bytes above the start");
}
