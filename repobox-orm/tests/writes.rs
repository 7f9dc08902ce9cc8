//! The cheapest command per write, against a real redis-server: the small
//! scripts and bare `HSET`s of writes that maintain no index entry, creates
//! and deletes without the general script, and bulk writes many per script
//! call; each keeps the contract (atomic, refused with nothing written,
//! answered per entity) under other clients' keys and racing writers.

use redis::AsyncCommands;
use repobox_orm::prelude::*;
use repobox_orm::testing::{CountingConnection, RedisServer};

mod common;

use common::*;

// On one server and on a 3-primary cluster.
repobox_orm::on_both_backends!(
    entities_without_indexes_take_the_cheapest_write_and_keep_the_contract,
    bulk_creates_go_many_per_script_call_and_answer_per_entity,
    a_single_index_key_of_the_wrong_type_fails_the_write_before_anything_is_written,
    a_partial_index_holds_exactly_the_entities_with_a_score,
    a_conditional_update_appends_its_stream_entry_only_when_it_writes,
    a_conditional_update_acknowledges_its_delivery_only_when_it_writes
);

/// `Option` scores: a partial index, and a second index on the same entity.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("chore:<id>")]
#[index(sorted = "chores:due", score = due_at, name = "due")]
#[index(sorted = "chores:owner:<owner>", score = n)]
struct Chore {
    id: String,
    owner: String,
    n: i64,
    due_at: Option<i64>,
}

fn chore(id: &str, due_at: Option<i64>) -> Chore {
    Chore {
        id: id.into(),
        owner: "ann".into(),
        n: 1,
        due_at,
    }
}

async fn due(conn: &mut Store) -> Vec<(String, i64)> {
    conn.zrange_withscores("chores:due", 0, -1).await.unwrap()
}

async fn a_partial_index_holds_exactly_the_entities_with_a_score(mut conn: Store) {
    // Created one by one and in bulk: only the scored ones are entered.
    Chore::create(&mut conn, &chore("c1", None)).await.unwrap();
    Chore::create(&mut conn, &chore("c2", Some(5))).await.unwrap();
    for r in Chore::create_many(&mut conn, &[chore("c3", Some(7)), chore("c4", None)])
        .await
        .unwrap()
    {
        r.unwrap();
    }
    Chore::save(&mut conn, &chore("c5", None)).await.unwrap();
    assert_eq!(due(&mut conn).await, [("c2".into(), 5), ("c3".into(), 7)]);
    assert_eq!(
        Chore::count_by_owner(&mut conn, "ann").await.unwrap(),
        5,
        "the other index holds every one"
    );

    // A score set enters the entity, a score cleared takes it out.
    let set = |v: Option<i64>| ChorePatch {
        due_at: Some(v),
        ..Default::default()
    };
    Chore::update(&mut conn, "c1", &set(Some(3))).await.unwrap();
    Chore::update(&mut conn, "c2", &set(None)).await.unwrap();
    Chore::save(&mut conn, &chore("c3", None)).await.unwrap();
    Chore::update(&mut conn, "c4", &set(Some(9))).await.unwrap();
    Chore::update(&mut conn, "c4", &set(Some(1))).await.unwrap();
    assert_eq!(due(&mut conn).await, [("c4".into(), 1), ("c1".into(), 3)]);
    // A change of another field leaves the partial index alone.
    Chore::update(
        &mut conn,
        "c2",
        &ChorePatch {
            n: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(due(&mut conn).await.len(), 2);

    // Reads list what is scored, by score range.
    let page = Chore::due(&mut conn, Page::oldest(10).scores(f64::NEG_INFINITY, 2.0))
        .await
        .unwrap();
    assert_eq!(page.items, [chore("c4", Some(1))]);
    assert_eq!(Chore::count_due(&mut conn).await.unwrap(), 2);
    // A member whose entity has no score (another writer's) is not listed,
    // and the read takes it out.
    let _: () = conn.zadd("chores:due", "c5", 0).await.unwrap();
    let page = Chore::due(&mut conn, Page::oldest(10)).await.unwrap();
    assert_eq!(page.items, [chore("c4", Some(1)), chore("c1", Some(3))]);
    assert_eq!(due(&mut conn).await, [("c4".into(), 1), ("c1".into(), 3)]);
    // The sweep agrees.
    let report = repobox_orm::check_indexes::<Chore, _>(&mut conn).await.unwrap();
    assert!(
        report
            .iter()
            .all(|r| r.gone + r.mismatched + r.missing + r.rescored + r.bad == 0),
        "{report:#?}"
    );
    // Deleted: out of both.
    assert!(Chore::delete(&mut conn, "c1").await.unwrap());
    assert_eq!(due(&mut conn).await, [("c4".into(), 1)]);
}

async fn a_conditional_update_appends_its_stream_entry_only_when_it_writes(mut conn: Store) {
    Chore::create(&mut conn, &chore("a1", Some(4))).await.unwrap();
    let take = ChorePatch {
        due_at: Some(None),
        n: Some(2),
        ..Default::default()
    };
    let expect = |v: Option<i64>| ChorePatch {
        due_at: Some(v),
        ..Default::default()
    };
    // Refused: nothing written, nothing appended.
    let refused = Chore::update_if_and_append(
        &mut conn,
        "a1",
        &take,
        &expect(Some(5)),
        "chores:stream",
        &[("id", "a1")],
    )
    .await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    let len: u64 = conn.xlen("chores:stream").await.unwrap();
    assert_eq!(len, 0);
    assert_eq!(due(&mut conn).await, [("a1".into(), 4)]);
    // Written: the entity, its index entries and the entry together.
    let id = Chore::update_if_and_append(
        &mut conn,
        "a1",
        &take,
        &expect(Some(4)),
        "chores:stream",
        &[("id", "a1")],
    )
    .await
    .unwrap();
    let entries: redis::streams::StreamRangeReply = conn.xrange_all("chores:stream").await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    assert_eq!(entries.ids[0].id, id);
    assert_eq!(entries.ids[0].get::<String>("id").as_deref(), Some("a1"));
    assert!(due(&mut conn).await.is_empty());
    assert_eq!(Chore::get(&mut conn, "a1").await.unwrap().unwrap().n, 2);
    // A second try with the same expectation finds it moved on.
    let again = Chore::update_if_and_append(
        &mut conn,
        "a1",
        &take,
        &expect(Some(4)),
        "chores:stream",
        &[("id", "a1")],
    )
    .await;
    assert!(matches!(again, Err(Error::Conflict { .. })));
    // An absent entity is not created.
    let absent =
        Chore::update_if_and_append(&mut conn, "zz", &take, &expect(None), "chores:stream", &[("id", "zz")]).await;
    assert!(absent.is_err());
    assert_eq!(Chore::get(&mut conn, "zz").await.unwrap(), None);
    let len: u64 = conn.xlen("chores:stream").await.unwrap();
    assert_eq!(len, 1);
}

async fn a_conditional_update_acknowledges_its_delivery_only_when_it_writes(conn: Store) {
    let mut conn = CountingConnection::new(conn);
    let queue = repobox_orm::Queue::new("chores:queue", "workers");
    queue.ensure_group(&mut conn).await.unwrap();
    Chore::create(&mut conn, &chore("k1", Some(4))).await.unwrap();
    queue.enqueue(&mut conn, &[("id", "k1")]).await.unwrap();
    let delivered = queue.read(&mut conn, "w1", 10, None).await.unwrap();
    let entry = delivered[0].id.clone();
    let pending = async |conn: &mut CountingConnection<Store>| queue.pending(conn).await.unwrap().count;
    assert_eq!(pending(&mut conn).await, 1);
    // `due_at` moves the partial index: its guard is the condition's value.
    let take = ChorePatch {
        due_at: Some(None),
        ..Default::default()
    };
    let expect = |v: Option<i64>| ChorePatch {
        due_at: Some(v),
        ..Default::default()
    };
    let event = [("id", "k1"), ("kind", "done")];
    // Refused: nothing written, nothing appended, the delivery still pending.
    let refused = Chore::update_if_and_ack(
        &mut conn,
        "k1",
        &take,
        &expect(Some(5)),
        Some(("chores:events", &event)),
        &queue,
        &entry,
    )
    .await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    assert_eq!(pending(&mut conn).await, 1);
    let len: u64 = conn.xlen("chores:events").await.unwrap();
    assert_eq!(len, 0);
    // Written: the entity, its index entries, the event and the
    // acknowledgement together; on one server in one round trip (the
    // conditions name the guards, so nothing is read first).
    conn.take();
    let appended = Chore::update_if_and_ack(
        &mut conn,
        "k1",
        &take,
        &expect(Some(4)),
        Some(("chores:events", &event)),
        &queue,
        &entry,
    )
    .await
    .unwrap();
    let trips = conn.take();
    if !conn.inner().is_cluster() {
        assert_eq!(trips, 1);
    }
    assert!(appended.is_some());
    assert_eq!(pending(&mut conn).await, 0);
    let len: u64 = conn.xlen("chores:events").await.unwrap();
    assert_eq!(len, 1);
    assert!(due(conn.inner_mut()).await.is_empty());
    assert_eq!(Chore::get(&mut conn, "k1").await.unwrap().unwrap().due_at, None);
    // Without an entry to append it only acknowledges.
    queue.enqueue(&mut conn, &[("id", "k1")]).await.unwrap();
    let entry = queue.read(&mut conn, "w1", 10, None).await.unwrap()[0].id.clone();
    let back = ChorePatch {
        n: Some(3),
        ..Default::default()
    };
    let none = Chore::update_if_and_ack(&mut conn, "k1", &back, &expect(None), None, &queue, &entry)
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(pending(&mut conn).await, 0);
    assert_eq!(Chore::get(&mut conn, "k1").await.unwrap().unwrap().n, 3);
    // A key of another type where the acknowledged stream should be refuses
    // the write before anything is written, on a cluster too (where the
    // acknowledgement is a step after the write).
    let _: () = conn.inner_mut().set("chores:notastream", "x").await.unwrap();
    let other = repobox_orm::Queue::new("chores:notastream", "workers");
    let four = ChorePatch {
        n: Some(4),
        ..Default::default()
    };
    let refused = Chore::update_if_and_ack(&mut conn, "k1", &four, &expect(None), None, &other, "1-0").await;
    assert!(matches!(refused, Err(Error::WrongType { .. })), "{refused:?}");
    assert_eq!(Chore::get(&mut conn, "k1").await.unwrap().unwrap().n, 3);
}

/// No index: a save is a bare `HSET`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("bare:<id>")]
struct Bare {
    id: String,
    n: i64,
    note: Option<String>,
}

/// No index, a TTL: every write checks the key's type first (`put.lua`).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("leased:<id>")]
#[ttl(minutes = 10)]
struct Leased {
    id: String,
    n: i64,
}

async fn entities_without_indexes_take_the_cheapest_write_and_keep_the_contract(conn: Store) {
    let mut conn = CountingConnection::new(conn);
    let bare = |id: &str, n, note: Option<&str>| Bare {
        id: id.into(),
        n,
        note: note.map(Into::into),
    };
    // Load the scripts once.
    Leased::save(
        &mut conn,
        &Leased {
            id: "warm".into(),
            n: 0,
        },
    )
    .await
    .unwrap();
    conn.take();

    Bare::save(&mut conn, &bare("1", 1, Some("hi"))).await.unwrap();
    assert_eq!(conn.take(), 1, "save: one HSET");
    let _: () = conn.hset("bare:1", "added_by_app", "keep").await.unwrap();
    conn.take();
    Bare::save(&mut conn, &bare("1", 2, None)).await.unwrap();
    assert_eq!(conn.take(), 1, "save that drops a field: HSET and HDEL in one MULTI");
    assert_eq!(Bare::get(&mut conn, "1").await.unwrap(), Some(bare("1", 2, None)));
    let raw = hgetall(conn.inner_mut(), "bare:1").await;
    assert_eq!(raw.get("added_by_app").map(String::as_str), Some("keep"));
    assert!(!raw.contains_key("note"));
    assert!(matches!(
        Bare::create(&mut conn, &bare("1", 3, None)).await,
        Err(Error::AlreadyExists { .. })
    ));
    Bare::update(
        &mut conn,
        "1",
        &BarePatch {
            n: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        Bare::update(
            &mut conn,
            "ghost",
            &BarePatch {
                n: Some(4),
                ..Default::default()
            }
        )
        .await
        .unwrap_err()
        .is_not_found()
    );
    assert!(
        !Bare::exists(&mut conn, "ghost").await.unwrap(),
        "an update never creates"
    );
    let ttl: i64 = conn.pttl("bare:1").await.unwrap();
    assert_eq!(ttl, -1);

    // Another client's key of another type: refused, not a byte changed.
    for key in ["bare:str", "leased:str"] {
        let _: () = conn.set(key, "theirs").await.unwrap();
        let _: () = conn.pexpire(key, 100_000).await.unwrap();
    }
    let before = (
        dump(conn.inner_mut(), "bare:str").await,
        dump(conn.inner_mut(), "leased:str").await,
    );
    for result in [
        Bare::save(&mut conn, &bare("str", 1, Some("x"))).await,
        Bare::save(&mut conn, &bare("str", 1, None)).await,
        Bare::create(&mut conn, &bare("str", 1, None)).await,
        Bare::update(
            &mut conn,
            "str",
            &BarePatch {
                n: Some(1),
                ..Default::default()
            },
        )
        .await,
        Leased::save(&mut conn, &Leased { id: "str".into(), n: 1 }).await,
        Leased::create(&mut conn, &Leased { id: "str".into(), n: 1 }).await,
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
    }
    let after = (
        dump(conn.inner_mut(), "bare:str").await,
        dump(conn.inner_mut(), "leased:str").await,
    );
    assert_eq!(after, before);
    let ttl: i64 = conn.pttl("leased:str").await.unwrap();
    assert!(ttl > 0 && ttl <= 100_000, "the other client's TTL stands: {ttl}");

    // A TTL entity: the full TTL on save, kept by an update.
    conn.take();
    Leased::save(&mut conn, &Leased { id: "1".into(), n: 1 }).await.unwrap();
    assert_eq!(conn.take(), 1, "save with a TTL: one small script");
    let _: () = conn.pexpire("leased:1", 5_000).await.unwrap();
    Leased::update(&mut conn, "1", &LeasedPatch { n: Some(2) })
        .await
        .unwrap();
    let ttl: i64 = conn.pttl("leased:1").await.unwrap();
    assert!(ttl > 0 && ttl <= 5_000, "an update keeps the remaining TTL: {ttl}");
    Leased::save(&mut conn, &Leased { id: "1".into(), n: 3 }).await.unwrap();
    let ttl: i64 = conn.pttl("leased:1").await.unwrap();
    assert!(ttl > 590_000, "a save sets the full TTL: {ttl}");
}

/// Sorted and set indexes, a TTL, no unique index: `create_many` sends up
/// to 100 of them per script call.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("run:<id>")]
#[ttl(minutes = 30)]
#[index(sorted = "runs:<owner>", score = at)]
#[index(set = "runs:state:<state>")]
struct Run {
    id: String,
    owner: String,
    state: String,
    at: i64,
}

async fn bulk_creates_go_many_per_script_call_and_answer_per_entity(conn: Store) {
    let cluster = conn.is_cluster();
    let mut conn = CountingConnection::new(conn);
    let run = |i: i64, owner: &str| Run {
        id: format!("r{i}"),
        owner: owner.into(),
        state: if i % 2 == 0 { "even" } else { "odd" }.into(),
        at: i,
    };
    // Loads the scripts (one create, and two in one call).
    Run::create_many(&mut conn, &[run(-1, "warm")]).await.unwrap();
    Run::create_many(&mut conn, &[run(-2, "warm"), run(-4, "warm")])
        .await
        .unwrap();
    conn.take();
    let runs: Vec<Run> = (0..1200)
        .map(|i| run(i, if i % 3 == 0 { "ann" } else { "bob" }))
        .collect();
    let results = Run::create_many(&mut conn, &runs).await.unwrap();
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    // One round trip per 500 on one server; on a cluster the entities'
    // keys are in several slots, so they are routed the ordered way before
    // anything is sent: three steps (claims, hashes, last steps) per 500.
    assert_eq!(conn.take(), if cluster { 9 } else { 3 });
    assert_eq!(Run::count_by_owner(&mut conn, "ann").await.unwrap(), 400);
    let page = Run::by_owner(&mut conn, "ann", Page::newest(2))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page, vec![run(1197, "ann"), run(1194, "ann")]);
    assert_eq!(
        Run::by_state(&mut conn, "odd")
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        601,
        "600 and the warm-up run"
    );
    for key in ["run:r7", "runs:ann", "runs:state:odd"] {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 29 * 60_000, "{key} lives as long as its entities: {ttl}");
    }

    // Per entity: an existing key, a duplicate in the batch, another type at
    // the hash key, another type at an index key, a bad key part.
    let _: () = conn.set("run:str", "theirs").await.unwrap();
    let _: () = conn.set("runs:carl", "theirs").await.unwrap();
    let before = (
        dump(conn.inner_mut(), "run:str").await,
        dump(conn.inner_mut(), "runs:carl").await,
    );
    let batch = vec![
        run(5, "ann"),
        run(5000, "dan"),
        run(5000, "dan"),
        Run {
            id: "str".into(),
            ..run(5001, "dan")
        },
        run(5002, "carl"),
        Run {
            id: "a b".into(),
            ..run(5003, "dan")
        },
        run(5004, "dan"),
    ];
    let results = Run::create_many(&mut conn, &batch).await.unwrap();
    assert!(
        matches!(results[0], Err(Error::AlreadyExists { .. })),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok());
    assert!(
        matches!(results[2], Err(Error::AlreadyExists { .. })),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[3], Err(Error::WrongType { key, .. }) if key == "run:str"),
        "{:?}",
        results[3]
    );
    assert!(
        matches!(&results[4], Err(Error::WrongType { key, .. }) if key == "runs:carl"),
        "{:?}",
        results[4]
    );
    assert!(
        matches!(results[5], Err(Error::InvalidKeyPart { .. })),
        "{:?}",
        results[5]
    );
    assert!(results[6].is_ok());
    // One at a time (`create.lua`), the same answers.
    let one = Run::create(&mut conn, &run(5005, "carl")).await.unwrap_err();
    assert!(
        matches!(&one, Error::WrongType { key, .. } if key == "runs:carl"),
        "{one:?}"
    );
    let one = Run::create(
        &mut conn,
        &Run {
            id: "str".into(),
            ..run(5006, "dan")
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&one, Error::WrongType { key, .. } if key == "run:str"),
        "{one:?}"
    );
    let one = Run::create(&mut conn, &run(5, "eve")).await.unwrap_err();
    assert!(matches!(one, Error::AlreadyExists { .. }), "{one:?}");
    Run::create(&mut conn, &run(5007, "eve")).await.unwrap();
    for key in ["run:r5007", "runs:eve", "runs:state:odd"] {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 29 * 60_000, "{key} lives as long as its entities: {ttl}");
    }
    assert_eq!(Run::count_by_owner(&mut conn, "eve").await.unwrap(), 1);
    let after = (
        dump(conn.inner_mut(), "run:str").await,
        dump(conn.inner_mut(), "runs:carl").await,
    );
    assert_eq!(after, before, "other clients' keys are untouched");
    for refused in ["r5002", "r5005"] {
        assert!(
            !Run::exists(&mut conn, refused).await.unwrap(),
            "nothing of a refused entity is written"
        );
    }
    for (state, refused) in [("even", "r5002"), ("odd", "r5005")] {
        let members: Vec<String> = conn.smembers(format!("runs:state:{state}")).await.unwrap();
        assert!(!members.iter().any(|m| m == refused), "{refused} in {members:?}");
    }
    assert_eq!(
        Run::get(&mut conn, "r5").await.unwrap(),
        Some(run(5, "bob")),
        "an existing entity is kept"
    );
    assert_eq!(Run::count_by_owner(&mut conn, "dan").await.unwrap(), 2);
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("solo:<id>")]
#[index(sorted = "solos:<group>", score = n)]
struct Solo {
    id: String,
    group: String,
    n: i64,
}

async fn a_single_index_key_of_the_wrong_type_fails_the_write_before_anything_is_written(mut conn: Store) {
    let _: () = conn.set("solos:g", "not a zset").await.unwrap();
    let solo = Solo {
        id: "1".into(),
        group: "g".into(),
        n: 1,
    };
    let err = Solo::create(&mut conn, &solo).await.unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key, .. } if key == "solos:g"),
        "{err}"
    );
    assert!(!Solo::exists(&mut conn, "1").await.unwrap(), "the hash was not written");
    let err = Solo::save(&mut conn, &solo).await.unwrap_err();
    assert!(
        matches!(&err, Error::WrongType { key, .. } if key == "solos:g"),
        "{err}"
    );
    assert!(!Solo::exists(&mut conn, "1").await.unwrap());
    // In bulk, the index entry goes first: the clobbered key refuses its
    // entities with nothing written, the others are created.
    let other = |id: &str| Solo {
        id: id.into(),
        group: "h".into(),
        n: 2,
    };
    let results = Solo::create_many(&mut conn, &[solo.clone(), other("2"), other("2")])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(Error::WrongType { key, .. }) if key == "solos:g"),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    assert!(matches!(results[2], Err(Error::AlreadyExists { .. })), "{results:?}");
    assert!(!Solo::exists(&mut conn, "1").await.unwrap());
    let clobbered: String = conn.get("solos:g").await.unwrap();
    assert_eq!(clobbered, "not a zset");
    let results = Solo::create_many(&mut conn, &[other("2"), other("3")]).await.unwrap();
    assert!(matches!(results[0], Err(Error::AlreadyExists { .. })), "{results:?}");
    assert!(results[1].is_ok(), "{results:?}");
    let members: Vec<String> = conn.zrange("solos:h", 0, -1).await.unwrap();
    assert_eq!(members, ["2", "3"]);
    let _: () = conn.del("solos:g").await.unwrap();
    Solo::create(&mut conn, &solo).await.unwrap();
    assert_eq!(
        Solo::by_group(&mut conn, "g", Page::oldest(5))
            .await
            .unwrap()
            .into_result()
            .unwrap(),
        vec![solo.clone()]
    );
    let _: () = conn.del("solos:g").await.unwrap();
    let _: () = conn.set("solos:g", "clobbered").await.unwrap();
    if conn.is_cluster() {
        // On a cluster a delete removes the hash first (ordered steps): the
        // entity goes, and the clobbered key is left as it was.
        assert!(Solo::delete(&mut conn, "1").await.unwrap());
        assert_eq!(Solo::get(&mut conn, "1").await.unwrap(), None);
        let left: String = conn.get("solos:g").await.unwrap();
        assert_eq!(left, "clobbered");
    } else {
        // A delete whose index key was clobbered fails before the hash goes,
        // and says which key.
        let err = Solo::delete(&mut conn, "1").await.unwrap_err();
        assert!(
            err.to_string().contains("solos:g") && err.to_string().contains("wrong kind"),
            "{err}"
        );
        assert_eq!(Solo::get(&mut conn, "1").await.unwrap(), Some(solo));
    }
}

/// A connection that runs `before` (another client's commands) on the
/// server just before it forwards its first script call (alone or in a
/// pipeline): what a writer racing a delete between its read and its script
/// does.
struct RaceBeforeScript {
    inner: CountingConnection<redis::aio::MultiplexedConnection>,
    before: Option<redis::Pipeline>,
}

impl redis::aio::ConnectionLike for RaceBeforeScript {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let is_script = matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(b"EVALSHA")));
            if is_script && let Some(race) = self.before.take() {
                let () = race.query_async(self.inner.inner_mut()).await?;
            }
            self.inner.req_packed_command(cmd).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let scripts = pipeline
                .cmd_iter()
                .any(|cmd| matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(b"EVALSHA"))));
            if scripts && let Some(race) = self.before.take() {
                let () = race.query_async(self.inner.inner_mut()).await?;
            }
            self.inner.req_packed_commands(pipeline, offset, count).await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl RaceBeforeScript {
    /// Forwards to `conn`, counting round trips; `before` runs first.
    fn new(conn: &redis::aio::MultiplexedConnection, before: redis::Pipeline) -> Self {
        RaceBeforeScript {
            inner: CountingConnection::new(conn.clone()),
            before: Some(before),
        }
    }
}

/// What another client does to move task `id` from `from` to `to`: its
/// hash and its sorted-index entry, consistently.
fn moved_by_another_client(id: &str, from: &str, to: &str, score: i64) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.hset(format!("task:{id}"), "owner", to)
        .ignore()
        .zrem(format!("tasks:owner:{from}"), id)
        .ignore()
        .zadd(format!("tasks:owner:{to}"), id, score)
        .ignore();
    pipe
}

#[tokio::test]
async fn a_delete_racing_another_writer_removes_the_entries_where_they_are_or_nothing() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    // Load the scripts (a fresh server answers NOSCRIPT first).
    Task::create(&mut conn, &task("warm", "x", 0)).await.unwrap();
    assert!(Task::delete(&mut conn, "warm").await.unwrap());

    // Another client moves the task from ann to bob after the delete read
    // where its entries are: the script sees the move, and the delete
    // removes the entries where they are now, one round trip later.
    Task::create(&mut conn, &task("m", "ann", 5)).await.unwrap();
    let mut c = RaceBeforeScript::new(&conn, moved_by_another_client("m", "ann", "bob", 5));
    assert!(Task::delete(&mut c, "m").await.unwrap());
    assert_eq!(c.inner.take(), 3, "lookup, the refused script, the script again");
    for owner in ["ann", "bob"] {
        let members: Vec<String> = conn.zrange(format!("tasks:owner:{owner}"), 0, -1).await.unwrap();
        assert!(members.is_empty(), "{owner}: {members:?}");
    }
    let left: Vec<String> = conn.keys("task*").await.unwrap();
    let status: Vec<String> = conn.smembers("tasks:status:queued").await.unwrap();
    assert!(
        left.iter().all(|k| k == "tasks:status:queued") && status.is_empty(),
        "{left:?} {status:?}"
    );

    // Another client deletes the hash after the read: nothing is left to
    // delete, the delete says so, and the script writes nothing.
    Task::create(&mut conn, &task("g", "ann", 6)).await.unwrap();
    let mut gone = redis::pipe();
    gone.del("task:g").ignore();
    let mut c = RaceBeforeScript::new(&conn, gone);
    assert!(!Task::delete(&mut c, "g").await.unwrap());
    assert_eq!(c.inner.take(), 2, "lookup, the script");
    let ghost: Vec<String> = conn.zrange("tasks:owner:ann", 0, -1).await.unwrap();
    assert_eq!(ghost, ["g"], "the other client's ghost is left to read repair");

    // A clobbered second index key refuses the delete before anything goes.
    Task::create(&mut conn, &task("c", "ann", 7)).await.unwrap();
    let _: () = conn.del("tasks:status:queued").await.unwrap();
    let _: () = conn.set("tasks:status:queued", "clobbered").await.unwrap();
    let before = (
        dump(&mut conn, "task:c").await,
        dump(&mut conn, "tasks:owner:ann").await,
        dump(&mut conn, "task:slug:slug-c").await,
    );
    let err = Task::delete(&mut conn, "c").await.unwrap_err();
    assert!(err.to_string().contains("tasks:status:queued"), "{err}");
    let after = (
        dump(&mut conn, "task:c").await,
        dump(&mut conn, "tasks:owner:ann").await,
        dump(&mut conn, "task:slug:slug-c").await,
    );
    assert_eq!(before, after, "a refused delete wrote something");
}

#[tokio::test]
async fn delete_many_answers_per_entity_within_one_call() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    Task::create(&mut conn, &task("warm", "x", 0)).await.unwrap();
    assert_eq!(
        Task::delete_many(&mut conn, &["warm", "absent"])
            .await
            .unwrap()
            .into_iter()
            .collect::<Result<Vec<bool>, _>>()
            .unwrap(),
        [true, false]
    );
    assert!(!Task::delete(&mut conn, "absent").await.unwrap());
    for (id, at) in [("a", 1), ("m", 2), ("b", 3)] {
        Task::create(&mut conn, &task(id, "ann", at)).await.unwrap();
    }
    // Between the reads and the call, another client moves `m` to bob: its
    // answer in the call is stale, and it goes again on its own.
    let moved = moved_by_another_client("m", "ann", "bob", 2);
    let mut racing = RaceBeforeScript::new(&conn, moved);
    let deleted = Task::delete_many(&mut racing, &["a", "nope", "m", "b"])
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<bool>, _>>()
        .unwrap();
    assert_eq!(deleted, [true, false, true, true]);
    assert_eq!(
        racing.inner.take(),
        3,
        "the reads, the call of four, the stale one again"
    );
    for owner in ["ann", "bob"] {
        let members: Vec<String> = conn.zrange(format!("tasks:owner:{owner}"), 0, -1).await.unwrap();
        assert!(members.is_empty(), "{owner}: {members:?}");
    }
    let left: Vec<String> = conn.keys("task:*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");

    // One entity's clobbered index key refuses that entity alone, with
    // nothing of it written; the others of the call are deleted.
    let running = |id: &str| Task {
        status: Status::Running,
        ..task(id, "cy", 4)
    };
    Task::create(&mut conn, &running("c")).await.unwrap();
    Task::create(&mut conn, &task("d", "cy", 5)).await.unwrap();
    let _: () = conn.del("tasks:status:running").await.unwrap();
    let _: () = conn.set("tasks:status:running", "clobbered").await.unwrap();
    let before = (dump(&mut conn, "task:c").await, dump(&mut conn, "tasks:owner:cy").await);
    let mut answers = Task::delete_many(&mut conn, &["c", "d"]).await.unwrap().into_iter();
    let err = answers.next().unwrap().unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err}");
    assert!(err.to_string().contains("tasks:status:running"), "{err}");
    assert!(answers.next().unwrap().unwrap(), "d is deleted, and says so");
    assert_eq!(Task::get(&mut conn, "c").await.unwrap(), Some(running("c")));
    assert_eq!(Task::get(&mut conn, "d").await.unwrap(), None);
    let members: Vec<String> = conn.zrange("tasks:owner:cy", 0, -1).await.unwrap();
    assert_eq!(members, ["c"]);
    assert_ne!(before.1, dump(&mut conn, "tasks:owner:cy").await, "d's entry went");
    assert_eq!(before.0, dump(&mut conn, "task:c").await, "c is untouched");
}

#[tokio::test]
async fn save_many_answers_per_entity_within_one_call() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for id in ["s1", "s2", "c3"] {
        Task::create(&mut conn, &task(id, "ann", 1)).await.unwrap();
    }
    let _: () = conn.set("tasks:status:running", "clobbered").await.unwrap();
    let before = dump(&mut conn, "task:c3").await;
    // Between the engine's assumption and the call, another client moves s1
    // to bob: its answer in the call is stale, and it goes again on its own.
    let moved = moved_by_another_client("s1", "ann", "bob", 1);
    let mut racing = RaceBeforeScript::new(&conn, moved);
    let saves = [
        task("s1", "cy", 1),
        Task {
            note: Some("kept".into()),
            ..task("s2", "ann", 1)
        },
        Task {
            status: Status::Running,
            ..task("c3", "ann", 1)
        },
    ];
    let results = Task::save_many(&mut racing, &saves).await.unwrap();
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(&results[2], Err(Error::WrongType { key, .. }) if key == "tasks:status:running"),
        "{results:?}"
    );
    for (owner, want) in [("ann", vec!["c3", "s2"]), ("bob", vec![]), ("cy", vec!["s1"])] {
        let members: Vec<String> = conn.zrange(format!("tasks:owner:{owner}"), 0, -1).await.unwrap();
        assert_eq!(members, want, "{owner}");
    }
    assert_eq!(Task::get(&mut conn, "s2").await.unwrap(), Some(saves[1].clone()));
    assert_eq!(
        dump(&mut conn, "task:c3").await,
        before,
        "a refused save writes nothing"
    );
    let clobbered: String = conn.get("tasks:status:running").await.unwrap();
    assert_eq!(clobbered, "clobbered");
}
