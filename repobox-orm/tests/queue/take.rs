//! `Queue::take`: the end of the last piece of work, the read of the next
//! and its start, in one script call on one server.

use redis::AsyncCommands;
use repobox_orm::queue::{Computed, Finish, StartTemplate};
use repobox_orm::{Delivery, Queue, Store};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Change {
    status: String,
    at: i64,
}

#[derive(Debug, Clone, PartialEq, repobox_orm::RedisEntity)]
#[key("task:<id>")]
#[index(sorted = "tasks:status:<status>", score = created_at)]
struct Task {
    id: String,
    owner: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    lease_until: Option<i64>,
    run_id: Option<String>,
    run_entry: Option<String>,
    note: Option<String>,
    #[redis(json, default)]
    history: Vec<Change>,
}

fn task(id: &str, owner: &str, status: &str, created_at: i64) -> Task {
    Task {
        id: id.into(),
        owner: owner.into(),
        status: status.into(),
        created_at,
        started_at: None,
        lease_until: None,
        run_id: None,
        run_entry: None,
        note: None,
        history: vec![Change {
            status: status.into(),
            at: created_at,
        }],
    }
}

/// The start of a queued, never started task, as a runner makes it.
fn start_patch() -> (TaskPatch, TaskPatch) {
    let patch = TaskPatch {
        status: Some("running".into()),
        started_at: Some(Some(0)),
        lease_until: Some(Some(0)),
        run_id: Some(Some(String::new())),
        run_entry: Some(Some(String::new())),
        // A value that starts with NUL is written as it is.
        note: Some(Some("\0literal".into())),
        history: Some(Vec::new()),
        ..Default::default()
    };
    let expected = TaskPatch {
        status: Some("queued".into()),
        started_at: Some(None),
        ..Default::default()
    };
    (patch, expected)
}

fn template<'a>(patch: &'a TaskPatch, expected: &'a TaskPatch) -> StartTemplate<'a, Task> {
    StartTemplate::new(patch, expected)
        .computed("started_at", Computed::Clock { plus_ms: 0 })
        .computed("lease_until", Computed::Clock { plus_ms: 30_000 })
        .computed("run_id", Computed::RandomId)
        .computed("run_entry", Computed::EntryId)
        .computed(
            "history",
            Computed::AppendToArray {
                before: r#"{"status":"running","at":"#.into(),
                after: "}".into(),
            },
        )
        .entry_names("owner", "owner")
        .append(
            "task-events",
            vec![
                ("task_id", Computed::EntityId),
                ("status", Computed::Text("running".into())),
                ("at", Computed::Clock { plus_ms: 0 }),
            ],
        )
}

async fn clock_ms(conn: &mut Store) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

fn as_read(d: &Delivery, id: &str) -> Task {
    d.entity_as_read::<Task>(&format!("task:{id}"))
        .unwrap()
        .unwrap()
        .1
        .unwrap()
}

/// Each delivered task whose conditions hold is started by the read, with
/// the values computed there (clock, ids, the history appended in place,
/// the index entry moved with its score, the event appended); one whose
/// conditions fail, whose entry names another owner or whose id is more
/// than plain ASCII is delivered as it is, unstarted.
#[tokio::test]
async fn take_starts_each_delivered_entity_from_its_template() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    let q = Queue::new("tq", "workers");
    q.ensure_group(&mut conn).await.unwrap();
    let mut running = task("b", "u1", "running", 2);
    running.started_at = Some(5);
    for t in [
        task("a", "u1", "queued", 1),
        running,
        task("c", "u1", "queued", 3),
        task("é", "u1", "queued", 4),
    ] {
        Task::create(&mut conn, &t).await.unwrap();
    }
    let mut entries = Vec::new();
    for (id, owner) in [("a", "u1"), ("b", "u1"), ("c", "u2"), ("é", "u1")] {
        entries.push(q.enqueue(&mut conn, &[("task", id), ("owner", owner)]).await.unwrap());
    }
    let (patch, expected) = start_patch();
    let start = template(&patch, &expected).prepare().unwrap();
    let before = clock_ms(&mut conn).await;
    let taken = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 10, "task", Some(&start), None)
        .await
        .unwrap();
    let after = clock_ms(&mut conn).await;
    assert!(taken.finished.is_none());
    let d: Vec<&Delivery> = taken.deliveries.iter().map(|(_, d)| d).collect();
    assert_eq!(d.len(), 4);
    assert_eq!(
        d.iter().map(|d| d.started()).collect::<Vec<_>>(),
        [true, false, false, false]
    );

    let a = Task::get(&mut conn, "a").await.unwrap().unwrap();
    assert_eq!(as_read(d[0], "a"), a, "the delivery hands the task as started");
    assert_eq!(a.status, "running");
    let at = a.started_at.unwrap();
    assert!((before..=after).contains(&at), "{before} <= {at} <= {after}");
    assert_eq!(a.lease_until, Some(at + 30_000));
    assert_eq!(a.run_entry.as_deref(), Some(entries[0].as_str()));
    let run = a.run_id.clone().unwrap();
    assert!(run.len() == 32 && run.bytes().all(|b| b.is_ascii_hexdigit()), "{run}");
    assert_eq!(a.note.as_deref(), Some("\0literal"));
    assert_eq!(
        a.history,
        [
            Change {
                status: "queued".into(),
                at: 1
            },
            Change {
                status: "running".into(),
                at
            }
        ]
    );
    let queued: Vec<(String, f64)> = conn.zrange_withscores("tasks:status:queued", 0, -1).await.unwrap();
    let running: Vec<(String, f64)> = conn.zrange_withscores("tasks:status:running", 0, -1).await.unwrap();
    assert_eq!(queued, [("c".to_owned(), 3.0), ("é".to_owned(), 4.0)]);
    assert_eq!(
        running,
        [("a".to_owned(), 1.0), ("b".to_owned(), 2.0)],
        "moved with its own score"
    );
    let events: Vec<redis::Value> = conn.xrange_all("task-events").await.unwrap();
    assert_eq!(events.len(), 1, "one start, one event: {events:?}");
    let event: redis::streams::StreamRangeReply = conn.xrange_all("task-events").await.unwrap();
    let fields = &event.ids[0].map;
    let text = |k: &str| redis::from_redis_value::<String>(fields[k].clone()).unwrap();
    assert_eq!(
        (text("task_id"), text("status"), text("at")),
        ("a".into(), "running".into(), at.to_string())
    );

    // The others are untouched, and handed as they are.
    assert_eq!(as_read(d[1], "b").status, "running");
    assert_eq!(
        as_read(d[2], "c"),
        task("c", "u1", "queued", 3),
        "another owner's entry"
    );
    assert_eq!(Task::get(&mut conn, "c").await.unwrap().unwrap().status, "queued");
    assert_eq!(
        Task::get(&mut conn, "é").await.unwrap().unwrap().status,
        "queued",
        "not plain ASCII"
    );
    // Each start has an id of its own.
    let e = q.enqueue(&mut conn, &[("task", "c"), ("owner", "u1")]).await.unwrap();
    let taken = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 10, "task", Some(&start), None)
        .await
        .unwrap();
    assert!(taken.deliveries[0].1.started());
    let c = Task::get(&mut conn, "c").await.unwrap().unwrap();
    assert_eq!(c.run_entry, Some(e));
    assert_ne!(c.run_id.unwrap(), run);
}

/// The finishing write goes first, with its acknowledgement and its event,
/// in the same call as the read; a finish whose conditions fail answers
/// `Conflict` and loses neither the deliveries nor anything else.
#[tokio::test]
async fn take_writes_the_finish_before_it_reads() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    let q = Queue::new("tq", "workers");
    q.ensure_group(&mut conn).await.unwrap();
    for id in ["a", "b", "c"] {
        Task::create(&mut conn, &task(id, "u1", "queued", 1)).await.unwrap();
        q.enqueue(&mut conn, &[("task", id), ("owner", "u1")]).await.unwrap();
    }
    let (patch, expected) = start_patch();
    let start = template(&patch, &expected).prepare().unwrap();
    let first = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 1, "task", Some(&start), None)
        .await
        .unwrap();
    let a_entry = first.deliveries[0].1.id.clone();
    let run = Task::get(&mut conn, "a").await.unwrap().unwrap().run_id;
    let done = TaskPatch {
        status: Some("done".into()),
        ..Default::default()
    };
    let held = TaskPatch {
        status: Some("running".into()),
        run_id: Some(run),
        created_at: Some(1),
        ..Default::default()
    };
    let event = [("task_id", "a"), ("status", "done")];
    let finish = Finish {
        id: "a",
        patch: &done,
        expected: &held,
        append: Some(("task-events", &event)),
        ack: Some((&q, &a_entry)),
    };
    let taken = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 1, "task", Some(&start), Some(finish))
        .await
        .unwrap();
    assert!(taken.finished.unwrap().unwrap().is_some(), "the event's id");
    assert_eq!(Task::get(&mut conn, "a").await.unwrap().unwrap().status, "done");
    assert_eq!(taken.deliveries.len(), 1);
    assert!(taken.deliveries[0].1.started());
    let pending = q.pending_entries(&mut conn, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "a's delivery acknowledged, b's pending: {pending:?}");
    let done_in: Vec<String> = conn.zrange("tasks:status:done", 0, -1).await.unwrap();
    assert_eq!(done_in, ["a"]);

    // Again: a's run no longer holds it.
    let finish = Finish {
        id: "a",
        patch: &done,
        expected: &held,
        append: None,
        ack: None,
    };
    let taken = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 1, "task", Some(&start), Some(finish))
        .await
        .unwrap();
    let err = taken.finished.unwrap().unwrap_err();
    assert!(matches!(err, repobox_orm::Error::Conflict { .. }), "{err}");
    assert_eq!(taken.deliveries.len(), 1, "c delivered all the same");
    assert!(taken.deliveries[0].1.started());
}

/// A template that the script could not follow is refused when it is
/// prepared, before anything is sent.
#[tokio::test]
async fn a_template_the_script_cannot_follow_is_refused() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    let q = Queue::new("tq", "workers");
    q.ensure_group(&mut conn).await.unwrap();
    q.enqueue(&mut conn, &[("task", "a")]).await.unwrap();
    let (patch, expected) = start_patch();
    // It computes a field its patch does not set.
    let err = StartTemplate::<Task>::new(&patch, &expected)
        .computed("owner", Computed::EntityId)
        .prepare()
        .unwrap_err();
    assert!(err.to_string().contains("owner"), "{err}");
    // It moves an index entry whose key its conditions do not fix.
    let no_status = TaskPatch {
        started_at: Some(None),
        ..Default::default()
    };
    let err = StartTemplate::<Task>::new(&patch, &no_status).prepare().unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
    // Its entry names a field that decides where an index entry it moves is.
    let err = template(&patch, &expected)
        .entry_names("status", "status")
        .prepare()
        .unwrap_err();
    assert!(err.to_string().contains("status"), "{err}");
    assert_eq!(q.pending(&mut conn).await.unwrap().count, 0, "nothing was read");
}

/// What the script cannot be sure of, it does not start, and it writes
/// nothing there: an entry naming its field twice (the last one counts, as
/// for the caller), a score that is not a number (the write would fail at
/// its `ZADD`, half done), a history that is not a JSON array of objects.
#[tokio::test]
async fn what_the_script_cannot_be_sure_of_it_does_not_start() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    let q = Queue::new("tq", "workers");
    q.ensure_group(&mut conn).await.unwrap();
    for id in ["a", "b", "s"] {
        Task::create(&mut conn, &task(id, "u1", "queued", 1)).await.unwrap();
    }
    let _: () = conn.hset("task:s", "created_at", "abc").await.unwrap();
    let histories = [
        "[] []",
        "[{\"status\":\"queued\",\"at\":1}]]",
        "[1,2]",
        "{\"status\":1}",
        "[{\"a\":1},]",
    ];
    for (i, h) in histories.iter().enumerate() {
        let id = format!("h{i}");
        Task::create(&mut conn, &task(&id, "u1", "queued", 1)).await.unwrap();
        let _: () = conn.hset(format!("task:{id}"), "history", *h).await.unwrap();
    }
    // `a` first, then `b`: `b` counts.
    let twice: String = redis::cmd("XADD")
        .arg("tq")
        .arg("*")
        .arg(&["task", "a", "owner", "u1", "task", "b"])
        .query_async(&mut conn)
        .await
        .unwrap();
    q.enqueue(&mut conn, &[("task", "s"), ("owner", "u1")]).await.unwrap();
    for i in 0..histories.len() {
        q.enqueue(&mut conn, &[("task", format!("h{i}").as_str()), ("owner", "u1")])
            .await
            .unwrap();
    }
    let before: Vec<(String, Vec<(String, String)>)> = {
        let mut all = Vec::new();
        for id in ["a", "b", "s", "h0", "h1", "h2", "h3", "h4"] {
            let mut h: Vec<(String, String)> = conn.hgetall(format!("task:{id}")).await.unwrap();
            h.sort();
            all.push((id.to_owned(), h));
        }
        all
    };
    let (patch, expected) = start_patch();
    let start = template(&patch, &expected).prepare().unwrap();
    let taken = Queue::take::<Task, _>(&mut conn, &[&q], "w1", 20, "task", Some(&start), None)
        .await
        .unwrap();
    assert_eq!(taken.deliveries.len(), 2 + histories.len());
    assert!(taken.deliveries.iter().all(|(_, d)| !d.started()), "none started");
    assert_eq!(taken.deliveries[0].1.id, twice);
    assert!(
        taken.deliveries[0].1.entity_as_read::<Task>("task:b").is_some(),
        "the last one is read"
    );
    for (id, h) in before {
        let mut now: Vec<(String, String)> = conn.hgetall(format!("task:{id}")).await.unwrap();
        now.sort();
        assert_eq!(now, h, "task:{id} untouched");
    }
    let running: u64 = conn.zcard("tasks:status:running").await.unwrap();
    let queued: u64 = conn.zcard("tasks:status:queued").await.unwrap();
    assert_eq!((running, queued), (0, 8), "every index entry where it was");
    let events: u64 = conn.xlen("task-events").await.unwrap();
    assert_eq!(events, 0);
}
