//! The stream queue against a real redis-server.

use std::time::Duration;

use redis::AsyncCommands;
use repobox_orm::{Queue, Store};

#[path = "queue/take.rs"]
mod take;

fn queue() -> Queue {
    Queue::new("q", "workers").max_deliveries(3)
}

// Every test runs on a single server and on a 3-primary cluster, where a
// stream and its dead letters are in different slots (dead letters and
// requeues are ordered steps there).
repobox_orm::on_both_backends!(
    group_creation_is_idempotent,
    a_missing_stream_or_group_is_told_apart_from_other_errors,
    enqueue_read_ack,
    claim_stalled_takes_over_counts_deliveries_and_reports_deleted_entries,
    touch_keeps_a_live_delivery_from_being_claimed,
    dead_letter_copies_and_acknowledges_atomically,
    trim_never_drops_pending_or_unread_entries,
    trim_by_age_keeps_pending_and_undelivered_entries_however_old,
    idle_consumers_with_nothing_pending_are_removed_and_dead_letters_requeued,
    read_first_takes_the_first_levels_in_one_call_and_survives_a_broken_one
);

async fn group_creation_is_idempotent(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    q.ensure_group(&mut conn).await.unwrap();
    assert_eq!(q.len(&mut conn).await.unwrap(), 0, "MKSTREAM made the stream");
}

async fn a_missing_stream_or_group_is_told_apart_from_other_errors(mut conn: Store) {
    let q = queue();
    let no_stream = q.pending_entries(&mut conn, 10).await.unwrap_err();
    assert!(no_stream.is_missing_group(), "{no_stream}");
    let no_stream = q.consumers(&mut conn).await.unwrap_err();
    assert!(no_stream.is_missing_group(), "{no_stream}");
    let _: () = conn.xadd("q", "*", &[("k", "v")]).await.unwrap();
    let no_group = q.pending_entries(&mut conn, 10).await.unwrap_err();
    assert!(no_group.is_missing_group(), "{no_group}");
    assert!(!no_group.is_auth_failure(), "{no_group}");
    let _: () = conn.set("plain", "x").await.unwrap();
    let wrong_type = Queue::new("plain", "workers").consumers(&mut conn).await.unwrap_err();
    assert!(!wrong_type.is_missing_group(), "{wrong_type}");
    q.ensure_group(&mut conn).await.unwrap();
    assert!(q.pending_entries(&mut conn, 10).await.unwrap().is_empty());
}

async fn enqueue_read_ack(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    let id = q
        .enqueue(&mut conn, &[("job_id", "j1"), ("user_id", "u")])
        .await
        .unwrap();
    q.enqueue(&mut conn, &[("job_id", "j2")]).await.unwrap();
    let got = q.read(&mut conn, "a", 1, None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), got[0].field("job_id"), got[0].deliveries),
        (id.as_str(), Some("j1"), 1)
    );
    let pending = q.pending(&mut conn).await.unwrap();
    assert_eq!(pending.count, 1);
    assert_eq!(pending.per_consumer, vec![("a".to_owned(), 1)]);
    assert!(pending.oldest_idle.is_some());
    assert_eq!(q.ack(&mut conn, &[&id]).await.unwrap(), 1);
    assert_eq!(q.pending(&mut conn).await.unwrap().count, 0);
    // Another consumer gets the next entry, not the acknowledged one.
    let got = q
        .read(&mut conn, "b", 10, Some(Duration::from_millis(10)))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|d| d.field("job_id").unwrap()).collect::<Vec<_>>(),
        vec!["j2"]
    );
    assert!(
        q.read(&mut conn, "b", 10, Some(Duration::from_millis(10)))
            .await
            .unwrap()
            .is_empty()
    );
    let consumers = q.consumers(&mut conn).await.unwrap();
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(consumers[1].pending, 1);
    let entries = q.entries(&mut conn, "-", 10).await.unwrap();
    assert_eq!(entries.len(), 2);
}

async fn claim_stalled_takes_over_counts_deliveries_and_reports_deleted_entries(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(q.enqueue(&mut conn, &[("job_id", &format!("j{i}"))]).await.unwrap());
    }
    let got = q.read(&mut conn, "dead-runner", 25, None).await.unwrap();
    assert_eq!(got.len(), 25);
    // Two entries vanish while pending.
    let _: () = conn.xdel("q", &[&ids[3], &ids[17]]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    // A small batch forces several XAUTOCLAIM rounds.
    let claimed = q
        .claim_stalled(&mut conn, "rescuer", Duration::from_millis(50), 4)
        .await
        .unwrap();
    assert_eq!(claimed.deliveries.len(), 23);
    assert!(
        claimed.deliveries.iter().all(|d| d.deliveries == 2),
        "{:?}",
        claimed.deliveries
    );
    let mut deleted = claimed.deleted.clone();
    deleted.sort();
    let mut want = vec![ids[3].clone(), ids[17].clone()];
    want.sort();
    assert_eq!(deleted, want);
    let pending = q.pending(&mut conn).await.unwrap();
    assert_eq!(pending.per_consumer, vec![("rescuer".to_owned(), 23)]);
    // Nothing is idle long enough now.
    let again = q
        .claim_stalled(&mut conn, "other", Duration::from_secs(60), 4)
        .await
        .unwrap();
    assert!(again.deliveries.is_empty() && again.deleted.is_empty());
}

async fn touch_keeps_a_live_delivery_from_being_claimed(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    let id = q.enqueue(&mut conn, &[("job_id", "j")]).await.unwrap();
    q.read(&mut conn, "busy", 1, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    q.touch(&mut conn, "busy", &[&id]).await.unwrap();
    let claimed = q
        .claim_stalled(&mut conn, "thief", Duration::from_millis(60), 10)
        .await
        .unwrap();
    assert!(claimed.deliveries.is_empty());
}

async fn dead_letter_copies_and_acknowledges_atomically(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    q.enqueue(&mut conn, &[("job_id", "poison"), ("user_id", "u")])
        .await
        .unwrap();
    let mut d = q.read(&mut conn, "a", 1, None).await.unwrap().remove(0);
    d.deliveries = 4;
    assert!(q.is_exhausted(&d));
    q.dead_letter(&mut conn, &d, "a", "always fails").await.unwrap();
    assert_eq!(q.pending(&mut conn).await.unwrap().count, 0);
    let dead = q.dead_letters(&mut conn, "-", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let f = &dead[0].fields;
    assert_eq!(f["original_id"], d.id);
    assert_eq!(f["reason"], "always fails");
    assert_eq!(f["deliveries"], "4");
    assert_eq!(f["job_id"], "poison");
    assert_eq!(f["consumer"], "a");
    assert!(f["dead_at"].parse::<i64>().unwrap() > 0);
    assert_eq!(q.dead_len(&mut conn).await.unwrap(), 1);
}

async fn trim_never_drops_pending_or_unread_entries(mut conn: Store) {
    let q = queue();
    q.ensure_group(&mut conn).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(q.enqueue(&mut conn, &[("n", &i.to_string())]).await.unwrap());
    }
    // Entries 0..6 delivered; 0..3 acknowledged; 3..6 pending; 6..10 unread.
    q.read(&mut conn, "a", 6, None).await.unwrap();
    q.ack(&mut conn, &ids[..3]).await.unwrap();
    let removed = q.trim(&mut conn, 2).await.unwrap();
    assert_eq!(removed, 3, "only the acknowledged entries go");
    let left: Vec<String> = q
        .entries(&mut conn, "-", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ids[3..].to_vec());
    // Once everything is acknowledged, the trim goes down to the limit.
    let rest = q.read(&mut conn, "a", 10, None).await.unwrap();
    q.ack(&mut conn, &ids[3..6]).await.unwrap();
    q.ack(&mut conn, &rest.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(q.trim(&mut conn, 2).await.unwrap(), 5);
    assert_eq!(q.len(&mut conn).await.unwrap(), 2);
    assert_eq!(q.trim(&mut conn, 5).await.unwrap(), 0);
}

async fn trim_by_age_keeps_pending_and_undelivered_entries_however_old(mut conn: Store) {
    let q = Queue::new("s", "g");
    // Entries from long ago (explicit ids in 1970), so any cutoff would take them all.
    for (i, id) in ["1000-0", "2000-0", "3000-0", "4000-0", "5000-0"]
        .into_iter()
        .enumerate()
    {
        let _: String = redis::cmd("XADD")
            .arg("s")
            .arg(id)
            .arg("n")
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    q.ensure_group(&mut conn).await.unwrap();
    // 1000 and 2000 delivered; 1000 acknowledged, 2000 still pending; the rest never delivered.
    let got = q.read(&mut conn, "c1", 2, None).await.unwrap();
    q.ack(&mut conn, &[&got[0].id]).await.unwrap();
    let removed = q.trim_older_than(&mut conn, Duration::from_millis(1)).await.unwrap();
    assert_eq!(
        removed, 1,
        "only the acknowledged entry before the oldest pending one goes"
    );
    let left: Vec<String> = q
        .entries(&mut conn, "-", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, ["2000-0", "3000-0", "4000-0", "5000-0"]);
    // Once everything is acknowledged, the age cutoff takes it all; a missing stream is fine.
    let rest = q.read(&mut conn, "c1", 10, None).await.unwrap();
    let ids: Vec<&str> = rest.iter().map(|d| d.id.as_str()).chain(["2000-0"]).collect();
    q.ack(&mut conn, &ids).await.unwrap();
    assert_eq!(q.trim_older_than(&mut conn, Duration::from_millis(1)).await.unwrap(), 4);
    assert_eq!(
        Queue::new("missing", "g")
            .trim_older_than(&mut conn, Duration::from_secs(1))
            .await
            .unwrap(),
        0
    );
}

async fn idle_consumers_with_nothing_pending_are_removed_and_dead_letters_requeued(mut conn: Store) {
    let q = Queue::new("s", "g").max_deliveries(1);
    q.ensure_group(&mut conn).await.unwrap();
    q.enqueue(&mut conn, &[("job_id", "j1")]).await.unwrap();
    q.enqueue(&mut conn, &[("job_id", "j2")]).await.unwrap();
    let held = q.read(&mut conn, "busy", 1, None).await.unwrap();
    let done = q.read(&mut conn, "gone", 1, None).await.unwrap();
    q.ack(&mut conn, &[&done[0].id]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let removed = q
        .remove_idle_consumers(&mut conn, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(removed, ["gone"], "a consumer with pending work stays");
    let pending = q.pending_entries(&mut conn, 10).await.unwrap();
    assert_eq!(
        (pending.len(), pending[0].consumer.as_str(), pending[0].deliveries),
        (1, "busy", 1)
    );
    assert!(q.pending_entries(&mut conn, 0).await.unwrap().is_empty());

    q.dead_letter(&mut conn, &held[0], "busy", "gave up").await.unwrap();
    assert!(
        q.dead_letters(&mut conn, "-", 0).await.unwrap().is_empty(),
        "a limit of 0 lists nothing"
    );
    let requeued = q.requeue_dead(&mut conn, &[]).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(q.dead_len(&mut conn).await.unwrap(), 0);
    let again = q.read(&mut conn, "busy", 10, None).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].field("job_id"), Some("j1"));
    assert_eq!(
        again[0].fields.len(),
        1,
        "the dead letter's bookkeeping fields are not carried back"
    );
}

/// Three priority levels sharing a hash tag (one slot: one script call on a
/// cluster too).
async fn read_first_takes_the_first_levels_in_one_call_and_survives_a_broken_one(mut conn: Store) {
    let levels: Vec<Queue> = ["{lv}:high", "{lv}", "{lv}:low"]
        .iter()
        .map(|s| Queue::new(*s, "workers"))
        .collect();
    for q in &levels {
        q.ensure_group(&mut conn).await.unwrap();
    }
    let refs: Vec<&Queue> = levels.iter().collect();
    for (level, n) in [(0usize, 2), (1, 3), (2, 2)] {
        for i in 0..n {
            let id = format!("{level}-{i}");
            levels[level].enqueue(&mut conn, &[("id", id.as_str())]).await.unwrap();
        }
    }
    // High first, then normal, never more than asked.
    let got = Queue::read_first(&mut conn, &refs, "w1", 4).await.unwrap();
    let order: Vec<(usize, &str)> = got.iter().map(|(l, d)| (*l, d.field("id").unwrap())).collect();
    assert_eq!(order, [(0, "0-0"), (0, "0-1"), (1, "1-0"), (1, "1-1")]);
    // The high level's stream is deleted and a string put in the low one's
    // place: the normal level still delivers, and the deleted group is made
    // again.
    let _: () = conn.del("{lv}:high").await.unwrap();
    let _: () = conn.del("{lv}:low").await.unwrap();
    let _: () = conn.set("{lv}:low", "not a stream").await.unwrap();
    let got = Queue::read_first(&mut conn, &refs, "w1", 10).await.unwrap();
    let order: Vec<(usize, &str)> = got.iter().map(|(l, d)| (*l, d.field("id").unwrap())).collect();
    assert_eq!(order, [(1, "1-2")]);
    levels[0].enqueue(&mut conn, &[("id", "0-2")]).await.unwrap();
    let got = Queue::read_first(&mut conn, &refs, "w1", 10).await.unwrap();
    let order: Vec<(usize, &str)> = got.iter().map(|(l, d)| (*l, d.field("id").unwrap())).collect();
    assert_eq!(order, [(0, "0-2")], "the high level's group was made again");
    // Nothing left anywhere but the broken level: its error.
    let err = Queue::read_first(&mut conn, &refs, "w1", 10).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
}

#[derive(Debug, Clone, PartialEq, repobox_orm::RedisEntity)]
#[key("item:<id>")]
struct Item {
    id: String,
    n: u32,
}

/// One server: the read that delivers entries also reads the entity each
/// names, with Redis's clock, in the same script call; an entry naming
/// nothing, a missing hash or a key of another type is told apart, and
/// none of them fails the read.
#[tokio::test]
async fn read_first_with_hands_each_delivery_the_entity_it_names() {
    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url()).unwrap();
    let q = Queue::new("{lv}", "workers");
    q.ensure_group(&mut conn).await.unwrap();
    let item = Item { id: "a".into(), n: 7 };
    Item::create(&mut conn, &item).await.unwrap();
    let _: () = conn.set("item:c", "not a hash").await.unwrap();
    for named in [Some("a"), Some("b"), None, Some("c")] {
        let fields: Vec<(&str, &str)> = named.map(|id| ("item", id)).into_iter().collect();
        let fields = if fields.is_empty() {
            vec![("other", "x")]
        } else {
            fields
        };
        q.enqueue(&mut conn, &fields).await.unwrap();
    }
    let before = clock_ms(&mut conn).await;
    let got = Queue::read_first_with::<Item, _>(&mut conn, &[&q], "w1", 10, "item")
        .await
        .unwrap();
    let after = clock_ms(&mut conn).await;
    let d: Vec<&repobox_orm::Delivery> = got.iter().map(|(_, d)| d).collect();
    assert_eq!(d.len(), 4);
    let (now, found) = d[0].entity_as_read::<Item>("item:a").unwrap().unwrap();
    assert_eq!(found, Some(item));
    assert!((before..=after).contains(&now), "{before} <= {now} <= {after}");
    assert_eq!(d[1].entity_as_read::<Item>("item:b").unwrap().unwrap().1, None);
    assert!(
        d[2].entity_as_read::<Item>("item:a").is_none(),
        "the entry names nothing"
    );
    let wrong = d[3].entity_as_read::<Item>("item:c").unwrap().unwrap_err();
    assert!(wrong.to_string().contains("WRONGTYPE"), "{wrong}");
    // Only the key the read looked at answers.
    assert!(d[0].entity_as_read::<Item>("item:b").is_none());
    // A read that does not look at entities hands none.
    q.enqueue(&mut conn, &[("item", "a")]).await.unwrap();
    let got = Queue::read_first(&mut conn, &[&q], "w1", 10).await.unwrap();
    assert!(got[0].1.entity_as_read::<Item>("item:a").is_none());
}

/// Redis's clock, in Unix milliseconds.
async fn clock_ms(conn: &mut Store) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}
