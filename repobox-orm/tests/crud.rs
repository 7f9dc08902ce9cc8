//! The generated CRUD, index and TTL calls against a real redis-server.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::AsyncCommands;
use repobox_orm::prelude::*;
use repobox_orm::testing::{CountingConnection, RedisServer};

mod common;

#[path = "crud/aliases.rs"]
mod aliases;
#[path = "crud/delete_if.rs"]
mod delete_if;

use common::*;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("cache:{<user_id>}:<provider>")]
struct Cache {
    user_id: String,
    provider: String,
    body: String,
}

// Every test here runs on a single server and on a 3-primary cluster: the
// entities here keep their keys in several slots, so on the cluster their
// writes are ordered steps (see the guide's "Redis Cluster", repobox-orm/docs/cluster.md).
repobox_orm::on_both_backends!(
    co_located_entities_write_in_one_script_on_any_backend,
    create_get_exists_delete,
    update_patches_and_never_recreates,
    save_moves_index_entries,
    unique_index_refuses_a_taken_value_and_writes_nothing,
    get_many_keeps_input_order,
    multi_placeholder_hash_tagged_keys,
    sorted_pages,
    bad_key_parts_are_refused_before_any_io,
    round_trips_are_counted,
    corrupt_hash_gives_a_decode_error_naming_key_and_field,
    a_key_of_the_wrong_type_fails_the_write_and_writes_nothing,
    fields_of_other_clients_survive_a_save,
    read_repair_drops_ghosts_and_fills_the_page,
    wire_format_is_plain_fields,
    ttl_entities_expire_with_their_index_entries,
    update_keeps_the_remaining_ttl_and_save_resets_it,
    sweep_removes_ghost_entries_of_every_index_key,
    bulk_calls_pipeline_in_chunks_and_report_per_entity
);

async fn create_get_exists_delete(mut conn: Store) {
    let t = task("1", "ann", 100);
    assert_eq!(Task::get(&mut conn, "1").await.unwrap(), None);
    assert!(!Task::exists(&mut conn, "1").await.unwrap());
    Task::create(&mut conn, &t).await.unwrap();
    assert_eq!(Task::get(&mut conn, "1").await.unwrap(), Some(t.clone()));
    assert!(Task::exists(&mut conn, "1").await.unwrap());
    assert_eq!(t.key().unwrap(), "task:1");
    assert_eq!(Task::key_for("1").unwrap(), "task:1");

    let err = Task::create(
        &mut conn,
        &Task {
            note: Some("other".into()),
            ..t.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists { ref key } if key == "task:1"),
        "{err}"
    );
    assert_eq!(
        Task::get(&mut conn, "1").await.unwrap(),
        Some(t.clone()),
        "a failed create writes nothing"
    );

    assert!(Task::delete(&mut conn, "1").await.unwrap());
    assert!(!Task::delete(&mut conn, "1").await.unwrap());
    assert_eq!(Task::get(&mut conn, "1").await.unwrap(), None);
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.is_empty(), "delete leaves no index entry behind: {keys:?}");
}

async fn update_patches_and_never_recreates(mut conn: Store) {
    let err = Task::update(
        &mut conn,
        "nope",
        &TaskPatch {
            note: Some(Some("x".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { ref key } if key == "task:nope"),
        "{err}"
    );
    // Also when the patch touches an indexed field (the two-step path).
    let err = Task::update(
        &mut conn,
        "nope",
        &TaskPatch {
            owner: Some("bob".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.is_not_found());
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    Task::create(
        &mut conn,
        &Task {
            note: Some("n".into()),
            ..task("1", "ann", 100)
        },
    )
    .await
    .unwrap();
    Task::update(
        &mut conn,
        "1",
        &TaskPatch {
            status: Some(Status::Running),
            note: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = Task::get(&mut conn, "1").await.unwrap().unwrap();
    assert_eq!((got.status, got.note.clone()), (Status::Running, None));
    assert!(
        !hgetall(&mut conn, "task:1").await.contains_key("note"),
        "None removes the field"
    );
    assert_eq!(Task::count_by_status(&mut conn, Status::Queued).await.unwrap(), 0);
    assert_eq!(
        Task::by_status(&mut conn, Status::Running)
            .await
            .unwrap()
            .into_result()
            .unwrap(),
        vec![got]
    );
}

async fn save_moves_index_entries(mut conn: Store) {
    let mut t = task("1", "ann", 100);
    Task::save(&mut conn, &t).await.unwrap();
    t.owner = "bob".into();
    t.slug = "new-slug".into();
    t.created_at = 200;
    Task::save(&mut conn, &t).await.unwrap();
    assert!(
        Task::by_owner(&mut conn, "ann", Page::newest(10))
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        Task::by_owner(&mut conn, "bob", Page::newest(10))
            .await
            .unwrap()
            .into_result()
            .unwrap(),
        vec![t.clone()]
    );
    let score: f64 = conn.zscore("tasks:owner:bob", "1").await.unwrap();
    assert_eq!(score, 200.0);
    assert!(!conn.exists::<_, bool>("tasks:owner:ann").await.unwrap());
    assert!(
        !conn.exists::<_, bool>("task:slug:slug-1").await.unwrap(),
        "the old unique value is freed"
    );
    assert_eq!(Task::by_slug(&mut conn, "new-slug").await.unwrap(), Some(t.clone()));

    // The same through update.
    Task::update(
        &mut conn,
        "1",
        &TaskPatch {
            owner: Some("cy".into()),
            created_at: Some(300),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(Task::count_by_owner(&mut conn, "bob").await.unwrap(), 0);
    let page = Task::by_owner(&mut conn, "cy", Page::newest(10))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page[0].created_at, 300);
    // A score-only update keeps the index key and moves the score.
    Task::update(
        &mut conn,
        "1",
        &TaskPatch {
            created_at: Some(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let score: f64 = conn.zscore("tasks:owner:cy", "1").await.unwrap();
    assert_eq!(score, 50.0);
}

async fn unique_index_refuses_a_taken_value_and_writes_nothing(mut conn: Store) {
    Task::create(&mut conn, &task("1", "ann", 1)).await.unwrap();
    let mut other = task("2", "bob", 2);
    other.slug = "slug-1".into();
    let err = Task::create(&mut conn, &other).await.unwrap_err();
    match &err {
        Error::UniqueViolation {
            index,
            index_key,
            owner,
        } => {
            assert_eq!(
                (*index, index_key.as_str(), owner.as_str()),
                ("by_slug", "task:slug:slug-1", "1")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!Task::exists(&mut conn, "2").await.unwrap());
    assert_eq!(Task::count_by_owner(&mut conn, "bob").await.unwrap(), 0);

    other.slug = "slug-2".into();
    Task::create(&mut conn, &other).await.unwrap();
    let err = Task::update(
        &mut conn,
        "2",
        &TaskPatch {
            slug: Some("slug-1".into()),
            owner: Some("dan".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(
        Task::get(&mut conn, "2").await.unwrap(),
        Some(other.clone()),
        "nothing of the update was applied"
    );
    other.slug = "slug-1".into();
    assert!(matches!(
        Task::save(&mut conn, &other).await,
        Err(Error::UniqueViolation { .. })
    ));

    // Deleting frees the value.
    Task::delete(&mut conn, "1").await.unwrap();
    Task::save(&mut conn, &other).await.unwrap();
    assert_eq!(
        Task::by_slug(&mut conn, "slug-1").await.unwrap().map(|t| t.id),
        Some("2".into())
    );
}

async fn get_many_keeps_input_order(mut conn: Store) {
    for i in 0..5 {
        Task::create(&mut conn, &task(&i.to_string(), "ann", i)).await.unwrap();
    }
    let got = Task::get_many(&mut conn, &["4", "missing", "0", "4"])
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let ids: Vec<Option<String>> = got.into_iter().map(|t| t.map(|t| t.id)).collect();
    assert_eq!(ids, vec![Some("4".into()), None, Some("0".into()), Some("4".into())]);
    assert!(
        Task::get_many::<_, &str>(&mut conn, &[])
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .is_empty()
    );
}

/// Every key in the owner's slot: one script per write, on any backend.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("note:{<owner>}:<id>")]
#[index(sorted = "notes:{<owner>}", score = at)]
#[index(set = "notes:{<owner>}:<tag>")]
#[cluster(co_located)]
struct Note {
    owner: String,
    id: String,
    tag: String,
    at: i64,
}

async fn co_located_entities_write_in_one_script_on_any_backend(conn: Store) {
    const { assert!(Note::CO_LOCATED && !Task::CO_LOCATED) };
    let mut conn = CountingConnection::new(conn);
    let note = |id: &str, tag: &str, at| Note {
        owner: "ann".into(),
        id: id.into(),
        tag: tag.into(),
        at,
    };
    // Load the scripts (a fresh server answers NOSCRIPT first).
    Note::create(&mut conn, &note("warm", "x", 0)).await.unwrap();
    Note::save(&mut conn, &note("warm", "x", 0)).await.unwrap();
    assert!(!Note::delete(&mut conn, "ann", "absent").await.unwrap());
    conn.take();
    Note::create(&mut conn, &note("1", "red", 10)).await.unwrap();
    assert_eq!(conn.take(), 1, "create");
    Note::save(&mut conn, &note("1", "blue", 20)).await.unwrap();
    assert_eq!(
        conn.take(),
        2,
        "save that moves an entry: the script learns the old one"
    );
    let page = Note::by_owner(&mut conn, "ann", Page::newest(10))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page, vec![note("1", "blue", 20), note("warm", "x", 0)]);
    assert_eq!(conn.take(), 2, "page");
    assert_eq!(
        Note::by_owner_and_tag(&mut conn, "ann", "blue")
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        1
    );
    assert!(
        Note::by_owner_and_tag(&mut conn, "ann", "red")
            .await
            .unwrap()
            .items
            .is_empty()
    );
    conn.take();
    assert!(Note::delete(&mut conn, "ann", "1").await.unwrap());
    assert_eq!(conn.take(), 2, "delete");
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg("notes:{ann}")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, ["ann:warm"]);

    // A bulk create across owners (each owner's notes in a slot of their
    // own): on a cluster, creates share a script call only where they share
    // a slot, so no call is refused and every create stays one script.
    let by = |owner: &str, id: &str| Note {
        owner: owner.into(),
        id: id.into(),
        tag: "bulk".into(),
        at: 1,
    };
    Note::create_many(&mut conn, &[by("warm", "a"), by("warm", "b")])
        .await
        .unwrap();
    conn.take();
    let notes: Vec<Note> = ["bo", "cy", "di", "ed"]
        .iter()
        .flat_map(|owner| [by(owner, "1"), by(owner, "2")])
        .collect();
    let created = Note::create_many(&mut conn, &notes).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    assert_eq!(conn.take(), 1, "one round trip for the chunk, on either backend");
    assert_eq!(Note::count_by_owner(&mut conn, "cy").await.unwrap(), 2);
}

async fn multi_placeholder_hash_tagged_keys(mut conn: Store) {
    let c = Cache {
        user_id: "u1".into(),
        provider: "github".into(),
        body: "{}".into(),
    };
    Cache::save(&mut conn, &c).await.unwrap();
    assert_eq!(c.key().unwrap(), "cache:{u1}:github");
    assert_eq!(c.entity_id().unwrap(), "u1:github");
    assert_eq!(Cache::get(&mut conn, "u1", "github").await.unwrap(), Some(c.clone()));
    assert_eq!(
        Cache::get_many(&mut conn, &[("u1", "github"), ("u1", "gitlab")])
            .await
            .unwrap()
            .into_result()
            .unwrap(),
        vec![Some(c), None]
    );
    // A bad part of any id refuses the whole call before any I/O.
    assert!(matches!(
        Cache::get_many(&mut conn, &[("u1", "github"), ("u1", "git:lab")]).await,
        Err(Error::InvalidKeyPart { .. })
    ));
    assert!(matches!(
        Cache::delete_many(&mut conn, &[("u1", "github"), ("", "gitlab")]).await,
        Err(Error::InvalidKeyPart { .. })
    ));
    assert!(Cache::exists(&mut conn, "u1", "github").await.unwrap());
    assert_eq!(
        Cache::delete_many(&mut conn, &[("u1", "github"), ("u1", "gitlab")])
            .await
            .unwrap()
            .into_iter()
            .collect::<Result<Vec<bool>, _>>()
            .unwrap(),
        [true, false]
    );
}

async fn sorted_pages(mut conn: Store) {
    for i in 1..=10 {
        Task::create(&mut conn, &task(&i.to_string(), "ann", i * 10))
            .await
            .unwrap();
    }
    let ids = |v: Vec<Task>| v.into_iter().map(|t| t.id.parse::<i64>().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        ids(Task::by_owner(&mut conn, "ann", Page::newest(3))
            .await
            .unwrap()
            .into_result()
            .unwrap()),
        vec![10, 9, 8]
    );
    assert_eq!(
        ids(Task::by_owner(&mut conn, "ann", Page::oldest(3))
            .await
            .unwrap()
            .into_result()
            .unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        ids(Task::by_owner(&mut conn, "ann", Page::newest(3).offset(8))
            .await
            .unwrap()
            .into_result()
            .unwrap()),
        vec![2, 1]
    );
    assert_eq!(
        ids(Task::by_owner(&mut conn, "ann", Page::oldest(10).scores(25.0, 50.0))
            .await
            .unwrap()
            .into_result()
            .unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(
        ids(
            Task::by_owner(&mut conn, "ann", Page::newest(2).offset(1).scores(25.0, 50.0))
                .await
                .unwrap()
                .into_result()
                .unwrap()
        ),
        vec![4, 3]
    );
    assert!(
        Task::by_owner(&mut conn, "ann", Page::newest(0))
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .is_empty()
    );
    assert!(
        Task::by_owner(&mut conn, "nobody", Page::newest(5))
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .is_empty()
    );
    assert_eq!(Task::count_by_owner(&mut conn, "ann").await.unwrap(), 10);
}

async fn bad_key_parts_are_refused_before_any_io(conn: Store) {
    let mut conn = CountingConnection::new(conn);
    for bad in ["", "a:b", "a b", "x*", "{t}", "q?", "[a]", "tab\t", "nl\n", "\u{7}"] {
        assert!(
            matches!(Task::get(&mut conn, bad).await, Err(Error::InvalidKeyPart { .. })),
            "{bad:?}"
        );
        assert!(matches!(
            Task::delete(&mut conn, bad).await,
            Err(Error::InvalidKeyPart { .. })
        ));
        assert!(matches!(
            Task::by_owner(&mut conn, bad, Page::newest(5)).await,
            Err(Error::InvalidKeyPart { .. })
        ));
        assert!(matches!(
            Task::create(&mut conn, &task(bad, "ann", 1)).await,
            Err(Error::InvalidKeyPart { .. })
        ));
        assert!(matches!(
            Task::create(&mut conn, &task("ok", bad, 1)).await,
            Err(Error::InvalidKeyPart { .. })
        ));
        assert!(matches!(
            Task::get_many(&mut conn, &[bad]).await,
            Err(Error::InvalidKeyPart { .. })
        ));
    }
    assert_eq!(conn.round_trips(), 0);
}

async fn round_trips_are_counted(conn: Store) {
    let cluster = conn.is_cluster();
    let mut conn = CountingConnection::new(conn);
    // Round trips on a single server, and on a cluster, where Task's keys are
    // in several slots: a write is routed there as ordered steps before
    // anything is sent (claims, the hash, the last steps); a pipeline across
    // slots is one call, sent to every slot concurrently.
    let trips = |standalone: usize, on_cluster: usize| if cluster { on_cluster } else { standalone };
    // Load the scripts once (a fresh server answers NOSCRIPT first).
    Task::create(&mut conn, &task("warm", "x", 0)).await.unwrap();
    let unindexed = TaskPatch {
        note: Some(None),
        ..Default::default()
    };
    Task::update(&mut conn, "warm", &unindexed).await.unwrap();
    let _ = Task::by_owner(&mut conn, "x", Page::newest(1)).await.unwrap();
    assert!(!Task::delete(&mut conn, "absent").await.unwrap());
    conn.take();

    Task::create(&mut conn, &task("0", "ann", 0)).await.unwrap();
    assert_eq!(conn.take(), trips(1, 3), "create");
    Task::save(
        &mut conn,
        &Task {
            note: Some("n".into()),
            ..task("0", "ann", 0)
        },
    )
    .await
    .unwrap();
    assert_eq!(conn.take(), trips(1, 3), "save that moves no index entry");
    Task::update(
        &mut conn,
        "0",
        &TaskPatch {
            note: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(conn.take(), 1, "update of unindexed fields");
    Task::get(&mut conn, "0").await.unwrap();
    assert_eq!(conn.take(), 1, "get");
    Task::exists(&mut conn, "0").await.unwrap();
    assert_eq!(conn.take(), 1, "exists");

    for i in 1..1000 {
        Task::create(&mut conn, &task(&i.to_string(), "ann", i)).await.unwrap();
    }
    conn.take();
    let ids: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(
        Task::get_many(&mut conn, &ids)
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        1000
    );
    assert_eq!(conn.take(), 1, "get_many of 1000");
    assert_eq!(
        Task::by_owner(&mut conn, "ann", Page::newest(1000))
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        1000
    );
    assert!(conn.take() <= 2, "a 1000-entry page");
    assert_eq!(
        Task::by_status(&mut conn, Status::Queued)
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        1001
    );
    assert!(conn.take() <= 2, "a 1000-member set index");
    Task::by_slug(&mut conn, "slug-5").await.unwrap().unwrap();
    assert!(conn.take() <= 2, "unique lookup");
    Task::count_by_owner(&mut conn, "ann").await.unwrap();
    assert_eq!(conn.take(), 1, "count");
    // Moving an index entry needs the old key: one more round trip.
    Task::save(&mut conn, &task("0", "bob", 0)).await.unwrap();
    assert_eq!(conn.take(), trips(2, 4), "save that moves an entry");
    Task::delete(&mut conn, "0").await.unwrap();
    assert_eq!(conn.take(), trips(2, 3), "delete");
}

async fn corrupt_hash_gives_a_decode_error_naming_key_and_field(mut conn: Store) {
    Task::create(&mut conn, &task("1", "ann", 1)).await.unwrap();
    let _: () = conn.hset("task:1", "created_at", "yesterday").await.unwrap();
    let err = Task::get(&mut conn, "1").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Decode { field: "created_at", ref key, .. } if key == "task:1"),
        "{msg}"
    );
    assert!(
        msg.contains("task:1") && msg.contains("created_at") && msg.contains("yesterday"),
        "{msg}"
    );
    // A page reports the bad record, naming its key, and fails no other.
    let page = Task::by_owner(&mut conn, "ann", Page::newest(5)).await.unwrap();
    assert!(page.items.is_empty());
    assert!(
        matches!(&page.errors[..], [Error::Decode { key, .. }] if key == "task:1"),
        "{:?}",
        page.errors
    );
    // The data is still there for a human to fix.
    assert_eq!(hgetall(&mut conn, "task:1").await["created_at"], "yesterday");
}

async fn a_key_of_the_wrong_type_fails_the_write_and_writes_nothing(mut conn: Store) {
    let _: () = conn.set("tasks:owner:ann", "not a zset").await.unwrap();
    let err = Task::create(&mut conn, &task("1", "ann", 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::WrongType { ref key, .. } if key == "tasks:owner:ann"),
        "{err}"
    );
    assert!(!Task::exists(&mut conn, "1").await.unwrap());
    assert!(!conn.exists::<_, bool>("task:slug:slug-1").await.unwrap());
    let _: () = conn.set("task:2", "a string").await.unwrap();
    assert!(Task::get(&mut conn, "2").await.is_err());
}

async fn fields_of_other_clients_survive_a_save(mut conn: Store) {
    Task::create(&mut conn, &task("1", "ann", 1)).await.unwrap();
    let _: () = conn.hset("task:1", "added_by_ts", "keep me").await.unwrap();
    Task::save(&mut conn, &task("1", "ann", 2)).await.unwrap();
    assert_eq!(hgetall(&mut conn, "task:1").await["added_by_ts"], "keep me");
}

async fn read_repair_drops_ghosts_and_fills_the_page(mut conn: Store) {
    for i in 1..=6 {
        Task::create(&mut conn, &task(&i.to_string(), "ann", i)).await.unwrap();
    }
    // Another client deletes hashes without touching the indexes.
    let _: () = conn.del(&["task:6", "task:5"]).await.unwrap();
    let page = Task::by_owner(&mut conn, "ann", Page::newest(3))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["4", "3", "2"], "no None, no ghost, a full page");
    let card: u64 = conn.zcard("tasks:owner:ann").await.unwrap();
    assert_eq!(card, 4, "the ghosts were removed");
    assert_eq!(
        Task::by_status(&mut conn, Status::Queued)
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        4
    );
    let members: u64 = conn.scard("tasks:status:queued").await.unwrap();
    assert_eq!(members, 4);
    let _: () = conn.del("task:1").await.unwrap();
    assert_eq!(Task::by_slug(&mut conn, "slug-1").await.unwrap(), None);
    assert!(
        !conn.exists::<_, bool>("task:slug:slug-1").await.unwrap(),
        "a dangling unique key is removed"
    );
}

async fn wire_format_is_plain_fields(mut conn: Store) {
    let t = Task {
        note: None,
        ..task("7", "ann", 1_700_000_000_000)
    };
    Task::create(&mut conn, &t).await.unwrap();
    let raw = hgetall(&mut conn, "task:7").await;
    let want: HashMap<String, String> = [
        ("id", "7"),
        ("owner", "ann"),
        ("slug", "slug-7"),
        ("status", "queued"),
        ("created_at", "1700000000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(raw, want);
    let members: Vec<String> = conn.zrange("tasks:owner:ann", 0, -1).await.unwrap();
    assert_eq!(members, vec!["7"]);
    let owner: String = conn.get("task:slug:slug-7").await.unwrap();
    assert_eq!(owner, "7");
}

/// Many tasks update, move, create and delete the same few entities at once;
/// afterwards every index agrees with the hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_indexes_consistent() {
    let server = RedisServer::start();
    let base = server.connection().await;
    let mut handles = Vec::new();
    for worker in 0..16u64 {
        let mut conn = base.clone();
        handles.push(tokio::spawn(async move {
            let mut gave_up = 0u32;
            let mut seed = worker * 7919 + 1;
            let mut next = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for _ in 0..150 {
                let id = next(6).to_string();
                let owner = ["ann", "bob", "cy"][next(3) as usize];
                let slug = format!("s{}", next(4));
                let whole = Task {
                    slug: slug.clone(),
                    ..task(&id, owner, next(1000) as i64)
                };
                let result = match next(5) {
                    0 => Task::create(&mut conn, &whole).await,
                    1 => Task::save(&mut conn, &whole).await,
                    2 => {
                        Task::update(
                            &mut conn,
                            &*id,
                            &TaskPatch {
                                owner: Some(owner.into()),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    3 => {
                        Task::update(
                            &mut conn,
                            &*id,
                            &TaskPatch {
                                slug: Some(slug),
                                status: Some(Status::Running),
                                ..Default::default()
                            },
                        )
                        .await
                    }
                    _ => Task::delete(&mut conn, &*id).await.map(drop),
                };
                match result {
                    Ok(())
                    | Err(Error::AlreadyExists { .. } | Error::NotFound { .. } | Error::UniqueViolation { .. }) => {}
                    // A writer that keeps losing the race gives up, having written nothing.
                    Err(Error::Contention { .. }) => gave_up += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            gave_up
        }));
    }
    let mut gave_up = 0;
    for h in handles {
        gave_up += h.await.unwrap();
    }
    assert!(
        gave_up <= 24,
        "{gave_up} of 2400 writes gave up: the retries do not converge"
    );

    let mut conn = base.clone();
    let mut live: HashMap<String, Task> = HashMap::new();
    for i in 0..6 {
        if let Some(t) = Task::get(&mut conn, i.to_string()).await.unwrap() {
            live.insert(t.id.clone(), t);
        }
    }
    for owner in ["ann", "bob", "cy"] {
        let members: Vec<String> = conn.zrange(format!("tasks:owner:{owner}"), 0, -1).await.unwrap();
        let want: HashSet<&String> = live.values().filter(|t| t.owner == owner).map(|t| &t.id).collect();
        assert_eq!(members.iter().collect::<HashSet<_>>(), want, "owner index of {owner}");
        for m in &members {
            let score: f64 = conn.zscore(format!("tasks:owner:{owner}"), m).await.unwrap();
            assert_eq!(score, live[m].created_at as f64);
        }
    }
    for status in [Status::Queued, Status::Running] {
        let members: HashSet<String> = conn
            .smembers(format!("tasks:status:{}", status.as_str()))
            .await
            .unwrap();
        let want: HashSet<String> = live
            .values()
            .filter(|t| t.status == status)
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(members, want);
    }
    let slug_keys: Vec<String> = conn.keys("task:slug:*").await.unwrap();
    assert_eq!(slug_keys.len(), live.len(), "one unique key per live entity");
    for t in live.values() {
        let owner: String = conn.get(format!("task:slug:{}", t.slug)).await.unwrap();
        assert_eq!(owner, t.id, "unique value maps to the entity that holds it");
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("blink:<id>")]
#[ttl(millis = 300)]
#[index(set = "blinks:group:<group>")]
#[index(sorted = "blinks:by-time:<group>", score = at, name = "by_time")]
struct Blink {
    id: String,
    group: String,
    at: i64,
}

async fn pttl(conn: &mut Store, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

async fn ttl_entities_expire_with_their_index_entries(mut conn: Store) {
    let b = Blink {
        id: "1".into(),
        group: "g".into(),
        at: 1,
    };
    Blink::create(&mut conn, &b).await.unwrap();
    let ttl = Blink::ttl(&mut conn, "1").await.unwrap().unwrap();
    assert!(ttl <= Duration::from_millis(300) && ttl > Duration::ZERO);
    assert!(pttl(&mut conn, "blinks:group:g").await >= pttl(&mut conn, "blink:1").await - 5);
    assert!(pttl(&mut conn, "blinks:by-time:g").await > 0);

    // A longer-lived member keeps the index key alive.
    Blink::create(
        &mut conn,
        &Blink {
            id: "2".into(),
            ..b.clone()
        },
    )
    .await
    .unwrap();
    Blink::expire_in(&mut conn, "2", Duration::from_secs(60)).await.unwrap();
    assert!(pttl(&mut conn, "blinks:group:g").await > 30_000);
    assert!(pttl(&mut conn, "blinks:by-time:g").await > 30_000);

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(Blink::get(&mut conn, "1").await.unwrap(), None);
    assert_eq!(Blink::count_by_group(&mut conn, "g").await.unwrap(), 1);
    assert_eq!(Blink::count_by_time(&mut conn, "g").await.unwrap(), 1);
    let page = Blink::by_time(&mut conn, "g", Page::newest(10))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(page.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(), vec!["2"]);
    assert_eq!(
        Blink::by_group(&mut conn, "g")
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .len(),
        1
    );

    Blink::delete(&mut conn, "2").await.unwrap();
    Blink::create(
        &mut conn,
        &Blink {
            id: "3".into(),
            group: "h".into(),
            at: 1,
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(Blink::count_by_group(&mut conn, "h").await.unwrap(), 0);
    assert!(
        Blink::by_time(&mut conn, "h", Page::newest(10))
            .await
            .unwrap()
            .into_result()
            .unwrap()
            .is_empty()
    );
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.is_empty(), "index keys expire with their last member: {keys:?}");
}

async fn update_keeps_the_remaining_ttl_and_save_resets_it(mut conn: Store) {
    let b = Blink {
        id: "1".into(),
        group: "g".into(),
        at: 1,
    };
    Blink::create(&mut conn, &b).await.unwrap();
    Blink::expire_in(&mut conn, "1", Duration::from_secs(100))
        .await
        .unwrap();
    Blink::update(
        &mut conn,
        "1",
        &BlinkPatch {
            at: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pttl(&mut conn, "blink:1").await > 90_000, "update keeps what is left");
    // Moving to another group: the new index key outlives the member.
    Blink::update(
        &mut conn,
        "1",
        &BlinkPatch {
            group: Some("k".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pttl(&mut conn, "blinks:group:k").await > 90_000);
    assert!(pttl(&mut conn, "blinks:by-time:k").await > 90_000);
    Blink::save(&mut conn, &Blink { group: "k".into(), ..b }).await.unwrap();
    let left = pttl(&mut conn, "blink:1").await;
    assert!(left <= 300 && left > 0, "save sets the full TTL: {left}");
    assert!(matches!(
        Blink::expire_in(&mut conn, "nope", Duration::from_secs(1)).await,
        Err(Error::NotFound { .. })
    ));
}

async fn sweep_removes_ghost_entries_of_every_index_key(mut conn: Store) {
    for i in 0..30 {
        let mut t = task(&i.to_string(), ["ann", "bob", "cy"][i % 3], i as i64);
        t.status = if i % 2 == 0 { Status::Queued } else { Status::Running };
        Task::create(&mut conn, &t).await.unwrap();
    }
    let _: () = conn.zadd("unrelated:owner:x", "1", 1).await.unwrap();
    let ghosts: Vec<String> = (0..30).filter(|i| i % 4 == 0).map(|i| format!("task:{i}")).collect();
    let _: () = conn.del(&ghosts).await.unwrap();
    let checked = repobox_orm::check_indexes::<Task, _>(&mut conn).await.unwrap();
    assert_eq!(checked.iter().map(|r| r.gone).collect::<Vec<_>>(), [8, 8, 8]);
    let reports = repobox_orm::repair_indexes::<Task, _>(&mut conn).await.unwrap();
    let [by_owner, by_status, by_slug] = &reports[..] else {
        panic!("one report per index: {reports:?}");
    };
    assert_eq!(by_owner.index, "by_owner");
    assert_eq!((by_owner.keys, by_owner.members, by_owner.gone), (3, 30, 8));
    assert_eq!(by_owner.skipped, 0, "unrelated:owner:x does not match tasks:owner:*");
    assert_eq!((by_status.keys, by_status.gone), (2, 8));
    assert_eq!((by_slug.keys, by_slug.gone), (30, 8));
    let again = repobox_orm::check_indexes::<Task, _>(&mut conn).await.unwrap();
    assert!(
        again.iter().all(|r| r.gone + r.mismatched + r.rescored + r.bad == 0),
        "{again:?}"
    );
    let total: u64 = conn.zcard("tasks:owner:ann").await.unwrap();
    assert_eq!(total, 10 - 3);
}

async fn bulk_calls_pipeline_in_chunks_and_report_per_entity(conn: Store) {
    // On a cluster Task's writes are routed ordered before anything is sent:
    // each step of the ordered writes goes as one pipeline per chunk.
    let cluster = conn.is_cluster();
    let trips = |standalone: usize, on_cluster: usize| if cluster { on_cluster } else { standalone };
    let mut conn = CountingConnection::new(conn);
    Task::create(&mut conn, &task("warm", "x", 0)).await.unwrap();
    assert!(!Task::delete(&mut conn, "absent").await.unwrap());
    let absent = Task::delete_many(&mut conn, &["absent-1", "absent-2"])
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<bool>, _>>()
        .unwrap();
    assert_eq!(absent, [false, false]);
    let warm = [task("warm-1", "x", 0), task("warm-2", "x", 0)];
    assert!(
        Task::save_many(&mut conn, &warm)
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    conn.take();

    let tasks: Vec<Task> = (0..1200).map(|i| task(&i.to_string(), "ann", i)).collect();
    if !cluster {
        reset_stats(conn.inner_mut()).await;
    }
    let results = Task::create_many(&mut conn, &tasks).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    // On a cluster, Task's keys are in several slots: each chunk of 500 goes
    // as three ordered steps (claims, hashes, last steps), each one pipeline.
    assert_eq!(conn.take(), trips(3, 9), "one round trip per 500 entities");
    if !cluster {
        assert_eq!(
            script_calls(conn.inner_mut()).await,
            12,
            "100 writes per script call (500, 500 and 200)"
        );
    }
    assert_eq!(Task::count_by_owner(&mut conn, "ann").await.unwrap(), 1200);

    // Per entity outcomes: an existing key, a taken unique value, a bad key part.
    let mut dup_slug = task("new-1", "bob", 1);
    dup_slug.slug = "slug-7".into();
    let batch = vec![
        task("5", "bob", 1),
        dup_slug,
        task("new-2", "bob", 2),
        task("bad key", "bob", 3),
    ];
    let results = Task::create_many(&mut conn, &batch).await.unwrap();
    assert!(matches!(results[0], Err(Error::AlreadyExists { .. })));
    assert!(matches!(results[1], Err(Error::UniqueViolation { .. })));
    assert!(results[2].is_ok());
    assert!(matches!(results[3], Err(Error::InvalidKeyPart { .. })));
    assert_eq!(Task::count_by_owner(&mut conn, "bob").await.unwrap(), 1);
    conn.take();

    // Saving moves index entries; those that moved need one more round trip.
    let moved: Vec<Task> = (0..1000)
        .map(|i| task(&i.to_string(), if i % 2 == 0 { "cy" } else { "ann" }, i))
        .collect();
    let results = Task::save_many(&mut conn, &moved).await.unwrap();
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        conn.take(),
        trips(3, 8),
        "two chunks, then one more for the 500 entries that moved (a cluster reads them first: \
         one lookup per chunk, then three ordered steps per chunk)"
    );
    assert_eq!(Task::count_by_owner(&mut conn, "cy").await.unwrap(), 500);
    assert_eq!(Task::count_by_owner(&mut conn, "ann").await.unwrap(), 700);

    let ids: Vec<String> = (0..1000).map(|i| i.to_string()).chain(["nope".to_owned()]).collect();
    conn.take();
    if !cluster {
        reset_stats(conn.inner_mut()).await;
    }
    let deleted = Task::delete_many(&mut conn, &ids)
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<Vec<bool>, _>>()
        .unwrap();
    // On a cluster, their keys are in several slots: a lookup per chunk,
    // then per chunk the hashes and the last steps (the absent one has none).
    assert_eq!(conn.take(), trips(6, 8), "a lookup and a delete per 500 entities");
    if !cluster {
        assert_eq!(
            script_calls(conn.inner_mut()).await,
            11,
            "100 deletes per script call (500, 500 and one alone)"
        );
    }
    assert_eq!(deleted.iter().filter(|d| **d).count(), 1000);
    assert!(!deleted[1000]);
    assert_eq!(Task::count_by_owner(&mut conn, "cy").await.unwrap(), 0);
    assert_eq!(Task::count_by_owner(&mut conn, "ann").await.unwrap(), 200);
    assert_eq!(Task::by_slug(&mut conn, "slug-5").await.unwrap(), None);
    assert!(matches!(
        Task::delete_many(&mut conn, &["a:b"]).await,
        Err(Error::InvalidKeyPart { .. })
    ));
}

/// A store made with `repair_on_read(false)` (a viewer's, a replica's)
/// skips what it finds wrong and never writes while it reads.
#[tokio::test]
async fn a_store_that_does_not_repair_on_read_never_writes_when_it_reads() {
    let server = RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    for i in 1..=6 {
        Task::create(&mut conn, &task(&i.to_string(), "ann", i)).await.unwrap();
    }
    let _: () = conn.del(&["task:6", "task:5", "task:1"]).await.unwrap();
    let config = repobox_orm::StoreConfig::default().repair_on_read(false);
    let mut viewer = Store::with_config(server.url(), config).unwrap();
    let page = Task::by_owner(&mut viewer, "ann", Page::newest(3))
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["4"], "the ghosts skipped, not removed, not read past");
    let card: u64 = conn.zcard("tasks:owner:ann").await.unwrap();
    assert_eq!(card, 6, "nothing removed");
    let queued = Task::by_status(&mut viewer, Status::Queued).await.unwrap();
    assert_eq!(queued.into_result().unwrap().len(), 3);
    let members: u64 = conn.scard("tasks:status:queued").await.unwrap();
    assert_eq!(members, 6);
    assert_eq!(Task::by_slug(&mut viewer, "slug-1").await.unwrap(), None);
    assert!(
        conn.exists::<_, bool>("task:slug:slug-1").await.unwrap(),
        "left in place"
    );
}
