//! Re-keying an index's template (`#[index(..., previous = "...")]` and
//! `Step::rekey_index`) while the entity's key stays: reads merge the
//! index key and its previous key (pages in score order across both, after
//! the offset; each entity once; counts of both), what left an entry in a
//! previous key (an update, a delete) is never listed, a key of the index's
//! own template is never read as a previous key whatever a query is asked
//! for, and the migration moves every entry so that no previous key is
//! left and `index check` finds nothing. On one server and on a cluster
//! (the two keys in different slots).

use std::collections::HashSet;

use repobox_orm::migrate::{MigrateOptions, Migration, RunEnd, Step, migrate};
use repobox_orm::prelude::*;
use repobox_orm::testing::{RedisCluster, RedisServer};

mod v1 {
    use super::*;

    /// Tasks before: index keys without a hash tag.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("ri:<id>")]
    #[index(sorted = "ri:user:<user_id>", score = at)]
    #[index(set = "ri:tag:<tag>")]
    pub struct Task {
        pub id: String,
        pub user_id: String,
        pub tag: String,
        pub at: i64,
    }
}

/// The same tasks, their index keys moved.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("ri:<id>")]
#[index(sorted = "ri:user:{<user_id>}", score = at, previous = "ri:user:<user_id>")]
#[index(set = "ri:tagged:<tag>", previous = "ri:tag:<tag>")]
struct Task {
    id: String,
    user_id: String,
    tag: String,
    at: i64,
}

/// An index whose template's keys are keys of its previous template too:
/// `ro:owner:x1` is owner `1`'s key and owner `x1`'s previous key.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("ro:<id>")]
#[index(set = "ro:owner:x<owner>", previous = "ro:owner:<owner>")]
struct Doc {
    id: String,
    owner: String,
}

struct MoveDocs;

impl Migration for MoveDocs {
    fn name(&self) -> &'static str {
        "rekey-doc-owners"
    }
    fn description(&self) -> &'static str {
        "a test's index re-key over overlapping templates"
    }
    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        Ok(vec![Step::rekey_index::<Doc>("by_owner")?])
    }
}

struct MoveEntries;

impl Migration for MoveEntries {
    fn name(&self) -> &'static str {
        "rekey-task-indexes"
    }
    fn description(&self) -> &'static str {
        "a test's index re-key"
    }
    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        Ok(vec![
            Step::rekey_index::<Task>("by_user_id")?,
            Step::rekey_index::<Task>("by_tag")?,
        ])
    }
}

fn task(i: i64, user: &str) -> Task {
    Task {
        id: format!("t{i}"),
        user_id: user.into(),
        tag: ["red", "blue"][(i % 2) as usize].into(),
        at: i,
    }
}

fn old(t: &Task) -> v1::Task {
    v1::Task {
        id: t.id.clone(),
        user_id: t.user_id.clone(),
        tag: t.tag.clone(),
        at: t.at,
    }
}

async fn ids_of(conn: &mut Store, user: &str, page: Page) -> Vec<String> {
    let listing = Task::by_user_id(conn, user, page).await.unwrap();
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    listing.items.into_iter().map(|t| t.id).collect()
}

async fn key_exists(conn: &mut Store, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await.unwrap() == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_rekey_on_one_server_merges_reads_and_moves_every_entry() {
    let server = RedisServer::start();
    index_rekey(Store::open(server.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_rekey_on_a_cluster_merges_reads_and_moves_every_entry() {
    let cluster = RedisCluster::start(3, 0);
    index_rekey(cluster.store()).await;
}

async fn index_rekey(mut conn: Store) {
    // Even scores written before (previous keys), odd ones after (the
    // index's keys): a page of either alone would be every other task.
    for i in 0..40 {
        let t = task(i, "u1");
        if i % 2 == 0 {
            v1::Task::create(&mut conn, &old(&t)).await.unwrap();
        } else {
            Task::create(&mut conn, &t).await.unwrap();
        }
    }
    for i in 40..50 {
        v1::Task::create(&mut conn, &old(&task(i, "u2"))).await.unwrap();
    }
    assert!(key_exists(&mut conn, "ri:user:u1").await && key_exists(&mut conn, "ri:user:{u1}").await);
    let newest: Vec<String> = (0..40).rev().map(|i| format!("t{i}")).collect();
    assert_eq!(ids_of(&mut conn, "u1", Page::newest(10)).await, newest[..10]);
    assert_eq!(
        ids_of(&mut conn, "u1", Page::newest(10).offset(15)).await,
        newest[15..25]
    );
    assert_eq!(
        ids_of(&mut conn, "u1", Page::oldest(5).offset(3)).await,
        ["t3", "t4", "t5", "t6", "t7"]
    );
    assert_eq!(
        ids_of(&mut conn, "u1", Page::oldest(100).scores(10.0, 13.0)).await,
        ["t10", "t11", "t12", "t13"]
    );
    assert_eq!(Task::count_by_user_id(&mut conn, "u1").await.unwrap(), 40);
    let red = Task::by_tag(&mut conn, "red").await.unwrap();
    assert_eq!(red.items.len(), 25, "{:?}", red.errors);

    // An entity named in both keys (the migration adds the new entry
    // before it removes the old) is listed once.
    redis::cmd("ZADD")
        .arg("ri:user:{u1}")
        .arg(0)
        .arg("t0")
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids_of(&mut conn, "u1", Page::oldest(3)).await, ["t0", "t1", "t2"]);
    assert_eq!(Task::count_by_user_id(&mut conn, "u1").await.unwrap(), 40);

    // An entity that moved to another user, or was deleted, while its entry
    // was under a previous key is not listed there (and the entry goes).
    let patch = TaskPatch {
        user_id: Some("u2".into()),
        ..Default::default()
    };
    Task::update(&mut conn, "t2", &patch).await.unwrap();
    Task::delete(&mut conn, "t4").await.unwrap();
    let listed = ids_of(&mut conn, "u1", Page::oldest(100)).await;
    assert!(
        !listed.contains(&"t2".into()) && !listed.contains(&"t4".into()),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 38);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("ri:user:u1")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!members.contains(&"t2".into()) && !members.contains(&"t4".into()));
    assert!(ids_of(&mut conn, "u2", Page::oldest(100)).await.contains(&"t2".into()));

    // A value whose previous key would be a key of the index's own
    // template (`ri:user:{u1}` for `{u1}`) is refused before any read; the
    // walk of the previous template's keys, which matches `ri:user:{u1}`
    // too, leaves it alone (checked after the migration below).
    let hostile = Task::by_user_id(&mut conn, "{u1}", Page::oldest(100)).await;
    assert!(
        matches!(hostile, Err(repobox_orm::Error::InvalidKeyPart { .. })),
        "{hostile:?}"
    );

    // A ghost a write left by hand in a previous key is not listed.
    redis::cmd("ZADD")
        .arg("ri:user:u1")
        .arg(1)
        .arg("t999")
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();

    // The migration: dry run counts, the run moves every entry.
    let dry = migrate(&mut conn, &MoveEntries, &MigrateOptions::default().dry_run(true))
        .await
        .unwrap();
    assert!(dry.steps[0].changed >= 20, "{dry:?}");
    assert!(key_exists(&mut conn, "ri:user:u1").await);
    let report = migrate(&mut conn, &MoveEntries, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(report.end, RunEnd::Finished, "{report:?}");
    assert_eq!(report.problems(), 0, "{report:?}");
    assert!(report.is_verified(), "{report:?}");
    for key in ["ri:user:u1", "ri:user:u2", "ri:tag:red", "ri:tag:blue"] {
        assert!(!key_exists(&mut conn, key).await, "{key} is left");
    }
    let mut want: Vec<String> = (0..40)
        .filter(|i| *i != 2 && *i != 4)
        .map(|i| format!("t{i}"))
        .collect();
    want.sort_by_key(|id| id[1..].parse::<i64>().unwrap());
    let held: Vec<String> = redis::cmd("ZRANGE")
        .arg("ri:user:{u1}")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, want);
    assert_eq!(ids_of(&mut conn, "u1", Page::oldest(100)).await, want);
    let u2: HashSet<String> = ids_of(&mut conn, "u2", Page::oldest(100)).await.into_iter().collect();
    assert_eq!(u2.len(), 11);
    let tagged: i64 = redis::cmd("SCARD")
        .arg("ri:tagged:red")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(tagged, 24);
    for report in repobox_orm::check_indexes::<Task, _>(&mut conn).await.unwrap() {
        assert_eq!(report.needs_repair(), 0, "{report:?}");
    }
    let again = migrate(&mut conn, &MoveEntries, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(again.end, RunEnd::AlreadyDone, "{again:?}");
    overlapping_templates(&mut conn).await;
}

/// A key of the index's own template is never read, walked or repaired as
/// a previous key, though it parses as one.
async fn overlapping_templates(conn: &mut Store) {
    let doc = Doc {
        id: "d1".into(),
        owner: "1".into(),
    };
    Doc::create(conn, &doc).await.unwrap();
    assert!(key_exists(conn, "ro:owner:x1").await);
    // Owner `x1`'s previous key is `ro:owner:x1`: not read as one.
    assert_eq!(Doc::by_owner(conn, "x1").await.unwrap().items, Vec::<Doc>::new());
    assert_eq!(Doc::count_by_owner(conn, "x1").await.unwrap(), 0);
    let report = migrate(conn, &MoveDocs, &MigrateOptions::default()).await.unwrap();
    assert_eq!(report.problems(), 0, "{report:?}");
    for report in repobox_orm::repair_indexes::<Doc, _>(conn).await.unwrap() {
        assert_eq!(report.needs_repair(), 0, "{report:?}");
    }
    assert_eq!(Doc::by_owner(conn, "1").await.unwrap().items, [doc]);
}
