//! Re-keying (`#[key("...", previous = "...")]` and `Step::rekey`, with
//! `#[index(..., previous = "...")]` and `Step::rekey_index`): jobs
//! written under `rk:<id>` move to `rk:{<user_id>}:<id>`, and their index
//! entries from `rk:user:<user_id>` to `rk:user:{<user_id>}` and from
//! `rk:jobs:<status>` to `rk:status:<status>`, while 8 tasks
//! create, read, update and delete jobs through the library the whole time,
//! and the migration runs in a child process that is killed (`kill -9`) at
//! random points and resumed, several times, before a last run finishes it.
//! Afterwards every job the writers believe exists is under its new key
//! exactly once with the writers' last fields and its TTL, no old key (of
//! the entity or of an index) is left, the indexes hold exactly the live
//! jobs, pages and set reads never list a job twice, and what the writers
//! deleted stays deleted. On one server (every move one script) and on a
//! cluster (the old and new keys in different slots: ordered moves).

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use repobox_orm::Walk;
use repobox_orm::migrate::{MigrateOptions, Migration, RunEnd, Step, migrate};
use repobox_orm::prelude::*;
use repobox_orm::testing::{RedisCluster, RedisServer};

const STATUSES: [&str; 3] = ["queued", "running", "done"];
const USERS: u64 = 50;
const WRITERS: u64 = 8;
/// Ids of jobs the writers create, besides the old ones.
const FRESH: u64 = 4_000;

mod v1 {
    use super::*;

    /// The jobs as the app wrote them before: keys without a hash tag.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("rk:<id>")]
    #[ttl(days = 7)]
    #[index(sorted = "rk:user:<user_id>", score = created_at)]
    #[index(set = "rk:jobs:<status>")]
    pub struct Job {
        pub id: String,
        pub user_id: String,
        pub status: String,
        pub created_at: i64,
    }
}

/// The same jobs, re-keyed next to their user's index, which moves too
/// (as does the status index, to another prefix).
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("rk:{<user_id>}:<id>", previous = "rk:<id>")]
#[ttl(days = 7)]
#[index(sorted = "rk:user:{<user_id>}", score = created_at, previous = "rk:user:<user_id>")]
#[index(set = "rk:status:<status>", previous = "rk:jobs:<status>")]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// A migration of `Step::rekey::<E>()`, then `Step::rekey_index` of each
/// index with a previous template.
struct Rekey<E>(&'static str, PhantomData<fn() -> E>);

impl<E: RedisEntity> Migration for Rekey<E> {
    fn name(&self) -> &'static str {
        self.0
    }
    fn description(&self) -> &'static str {
        "a test's re-key"
    }
    fn steps(&self) -> repobox_orm::Result<Vec<Step>> {
        let mut steps = vec![Step::rekey::<E>()?];
        for index in E::META.indexes.iter().filter(|ix| ix.previous.is_some()) {
            steps.push(Step::rekey_index::<E>(index.name)?);
        }
        Ok(steps)
    }
}

const REKEY_JOBS: Rekey<Job> = Rekey("rekey-jobs", PhantomData);

/// A small deterministic generator, so that a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn user_of(id: &str) -> String {
    let n: u64 = id.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap();
    format!("u{}", n % USERS)
}

fn old_job(i: u64) -> Job {
    let id = format!("o{i}");
    Job {
        user_id: user_of(&id),
        id,
        status: STATUSES[(i % 3) as usize].into(),
        created_at: i as i64,
    }
}

/// The child process: runs the migration at a bounded rate until killed
/// (or done). Only when the test below starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the kill -9 tests"]
async fn rekey_child() {
    let Ok(url) = std::env::var("REKEY_CHILD_URL") else {
        return;
    };
    let rate: u32 = std::env::var("REKEY_CHILD_RATE").unwrap().parse().unwrap();
    let mut store = Store::open(url).unwrap();
    let walk = Walk::new().per_second(NonZeroU32::new(rate));
    let options = MigrateOptions::default().walk(walk).skip_verify(true);
    migrate(&mut store, &REKEY_JOBS, &options).await.unwrap();
}

/// Starts the child on `url` and kills it (`SIGKILL`) after `after`; `true`
/// if it was still running then.
fn run_child_and_kill(url: &str, rate: u32, after: Duration) -> bool {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["rekey_child", "--exact", "--ignored", "--test-threads=1", "--quiet"])
        .env("REKEY_CHILD_URL", url)
        .env("REKEY_CHILD_RATE", rate.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_on_one_server_moves_every_job_once_while_others_write_and_survives_kill_9() {
    let server = RedisServer::start();
    rekey_under_writers(&server.url(), 100_000, 15_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekey_on_a_cluster_moves_every_job_once_while_others_write_and_survives_kill_9() {
    let cluster = RedisCluster::start(3, 0);
    rekey_under_writers(&cluster.url(), 20_000, 3_000).await;
}

/// What one writer believes: per id it owns, the job or `None` (deleted).
type Beliefs = HashMap<String, Option<Job>>;

async fn writer(mut conn: Store, w: u64, old: u64, stop: Arc<AtomicBool>) -> (Beliefs, u64) {
    let mut rng = Rng(0x9e37_79b9 + w);
    let mut believed: Beliefs = HashMap::new();
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) || ops < 100 {
        // Each writer owns the ids whose number is `w` modulo WRITERS.
        let id = if rng.below(3) > 0 {
            format!("o{}", rng.below(old / WRITERS) * WRITERS + w)
        } else {
            format!("n{}", rng.below(FRESH / WRITERS) * WRITERS + w)
        };
        let user = user_of(&id);
        let now = believed
            .entry(id.clone())
            .or_insert_with(|| id.strip_prefix('o').map(|n| old_job(n.parse().unwrap())));
        let at = format!("{id} (op {ops} of writer {w})");
        match rng.below(10) {
            0..=1 => {
                let existed = Job::delete(&mut conn, &user, &id).await.unwrap();
                assert_eq!(existed, now.is_some(), "delete of {at}");
                *now = None;
            }
            2..=6 => {
                let status: String = STATUSES[rng.below(3) as usize].into();
                let created_at = 1_000_000 + rng.below(1_000_000) as i64;
                let patch = JobPatch {
                    status: Some(status.clone()),
                    created_at: Some(created_at),
                };
                match (Job::update(&mut conn, &user, &id, &patch).await, now.as_mut()) {
                    (Ok(()), Some(job)) => {
                        job.status = status;
                        job.created_at = created_at;
                    }
                    (Err(repobox_orm::Error::NotFound { .. }), None) => {}
                    (r, believed) => panic!("update of {at}: {r:?}, believed {believed:?}"),
                }
            }
            7 => {
                let job = Job {
                    id: id.clone(),
                    user_id: user.clone(),
                    status: "queued".into(),
                    created_at: rng.below(1_000) as i64,
                };
                match (Job::create(&mut conn, &job).await, now.is_some()) {
                    (Ok(()), false) => *now = Some(job),
                    (Err(repobox_orm::Error::AlreadyExists { .. }), true) => {}
                    (r, existed) => panic!("create of {at}: {r:?}, existed {existed}"),
                }
            }
            8 => {
                // A page of the user's jobs while they move: each job once,
                // each the user's.
                // Under either index key: newest first, after the offset.
                let page = Page::newest(50).offset(rng.below(3) as usize * 25);
                let page = Job::by_user_id(&mut conn, &user, page).await.unwrap();
                assert!(page.errors.is_empty(), "{:?}", page.errors);
                let mut seen = HashSet::new();
                for job in &page.items {
                    assert_eq!(job.user_id, user, "page of {at}");
                    assert!(seen.insert(job.id.clone()), "{} listed twice in a page of {at}", job.id);
                }
                let scores: Vec<i64> = page.items.iter().map(|j| j.created_at).collect();
                assert!(
                    scores.windows(2).all(|w| w[0] >= w[1]),
                    "page of {at} out of order: {scores:?}"
                );
            }
            _ => {
                let got = Job::get(&mut conn, &user, &id).await.unwrap();
                assert_eq!(&got, now, "get of {at}");
            }
        }
        ops += 1;
    }
    (believed, ops)
}

async fn rekey_under_writers(url: &str, old: u64, rate: u32) {
    let mut conn = Store::open(url).unwrap();
    let seeded: Vec<v1::Job> = (0..old)
        .map(|i| {
            let j = old_job(i);
            v1::Job {
                id: j.id,
                user_id: j.user_id,
                status: j.status,
                created_at: j.created_at,
            }
        })
        .collect();
    for chunk in seeded.chunks(5_000) {
        for r in v1::Job::create_many(&mut conn, chunk).await.unwrap() {
            r.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(conn.clone(), w, old, stop.clone())))
        .collect();
    // Killed four times at random points, then run to the end. The rate
    // keeps the four runs (5.2 s at most) from getting through all the
    // jobs however fast the machine.
    let mut rng = Rng(0x5eed);
    let mut killed_running = 0;
    for _ in 0..4 {
        let after = Duration::from_millis(400 + rng.below(900));
        let url = url.to_owned();
        if tokio::task::spawn_blocking(move || run_child_and_kill(&url, rate, after))
            .await
            .unwrap()
        {
            killed_running += 1;
        }
    }
    let report = migrate(&mut conn, &REKEY_JOBS, &MigrateOptions::default())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut believed = Beliefs::new();
    let mut ops = 0;
    for t in tasks {
        let (b, n) = t.await.unwrap();
        believed.extend(b);
        ops += n;
    }
    assert!(
        killed_running >= 3,
        "the child finished before most kills: {killed_running}"
    );
    assert!(ops >= 800, "{ops}");
    assert_eq!(report.end, RunEnd::Finished, "{report:?}");
    assert_eq!(report.problems(), 0, "{report:?}");
    assert!(report.is_verified(), "{report:?}");
    assert!(report.steps[0].looked <= old + 2 * FRESH + 5_000, "{report:?}");

    // What exists: every job the writers did not touch as seeded, the rest
    // as the writers left them.
    let mut expected: HashMap<String, Job> = (0..old).map(old_job).map(|j| (j.id.clone(), j)).collect();
    for (id, job) in &believed {
        match job {
            Some(job) => expected.insert(id.clone(), job.clone()),
            None => expected.remove(id),
        };
    }
    // No hash left under an old key; every new key an expected job.
    let mut new_keys = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("rk:*")
            .arg("COUNT")
            .arg(5_000)
            .arg("TYPE")
            .arg("hash")
            .query_async(&mut conn)
            .await
            .unwrap();
        for key in batch {
            assert!(v1::Job::META.key.parse_key(&key).is_none(), "an old key is left: {key}");
            assert!(Job::META.key.parse_key(&key).is_some(), "{key}");
            assert!(new_keys.insert(key.clone()), "{key} listed twice");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(new_keys.len(), expected.len());
    // Each with the writers' last fields and its TTL.
    let ids: Vec<(&str, &str)> = expected.values().map(|j| (j.user_id.as_str(), j.id.as_str())).collect();
    for chunk in ids.chunks(2_000) {
        let got = Job::get_many(&mut conn, chunk).await.unwrap();
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        for (id, job) in chunk.iter().zip(got.items) {
            let job = job.unwrap_or_else(|| panic!("{id:?} is missing"));
            assert_eq!(Some(&job), expected.get(&job.id), "{id:?}");
        }
        let mut pipe = redis::pipe();
        for (user, id) in chunk {
            pipe.cmd("PTTL").arg(format!("rk:{{{user}}}:{id}"));
        }
        let ttls: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
        assert!(ttls.iter().all(|&t| t > 0), "a job lost its TTL");
    }
    // The indexes hold exactly the live jobs, under their new ids.
    for u in 0..USERS {
        let user = format!("u{u}");
        let held: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(format!("rk:user:{{{user}}}"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        let held: HashMap<String, f64> = held.into_iter().collect();
        let want: HashMap<String, f64> = expected
            .values()
            .filter(|j| j.user_id == user)
            .map(|j| (format!("{user}:{}", j.id), j.created_at as f64))
            .collect();
        assert_eq!(held, want, "rk:user:{{{user}}}");
    }
    for status in STATUSES {
        let held: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(format!("rk:status:{status}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let want: HashSet<String> = expected
            .values()
            .filter(|j| j.status == status)
            .map(|j| format!("{}:{}", j.user_id, j.id))
            .collect();
        assert_eq!(held.len(), want.len(), "rk:status:{status}");
        assert_eq!(held, want, "rk:status:{status}");
    }
    // No key of an index's previous template is left (a key of the user
    // index's template parses as its previous template too: it is the
    // index's own), and the set reads list each job once.
    for kind in ["zset", "set"] {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("rk:*")
                .arg("COUNT")
                .arg(5_000)
                .arg("TYPE")
                .arg(kind)
                .query_async(&mut conn)
                .await
                .unwrap();
            for key in keys {
                let ours = Job::META.indexes.iter().any(|ix| ix.key.parse_key(&key).is_some());
                assert!(ours, "a key of a previous index template is left: {key}");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    for status in STATUSES {
        let listed = Job::by_status(&mut conn, status).await.unwrap();
        assert!(listed.errors.is_empty(), "{:?}", listed.errors);
        let ids: HashSet<&str> = listed.items.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            listed.items.len(),
            "a job listed twice in by_status({status})"
        );
        let want = expected.values().filter(|j| j.status == status).count();
        assert_eq!(ids.len(), want, "by_status({status})");
    }
    // Deleted stays deleted, under either key.
    let deleted: Vec<&String> = believed.iter().filter(|(_, j)| j.is_none()).map(|(id, _)| id).collect();
    for chunk in deleted.chunks(1_000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("EXISTS").arg(format!("rk:{{{}}}:{id}", user_of(id)));
            pipe.cmd("EXISTS").arg(format!("rk:{id}"));
        }
        let found: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
        for (id, pair) in chunk.iter().zip(found.chunks(2)) {
            assert_eq!(pair, [0, 0], "{id} was deleted");
        }
    }
    // Run again: nothing left to do.
    let again = migrate(&mut conn, &REKEY_JOBS, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!(again.end, RunEnd::AlreadyDone, "{again:?}");
}

mod v2 {
    use super::*;

    /// Accounts before the re-key.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("rr:<id>")]
    #[index(sorted = "rr:user:{<user_id>}", score = at)]
    #[index(unique = "rr:email:<email>")]
    pub struct Acct {
        pub id: String,
        pub user_id: String,
        pub email: String,
        pub at: i64,
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("rr:{<user_id>}:<id>", previous = "rr:<id>")]
#[index(sorted = "rr:user:{<user_id>}", score = at)]
#[index(unique = "rr:email:<email>")]
struct Acct {
    id: String,
    user_id: String,
    email: String,
    at: i64,
}

fn acct(user: &str, i: i64) -> Acct {
    Acct {
        id: format!("a{i}"),
        user_id: user.into(),
        email: format!("a{i}@{user}"),
        at: i,
    }
}

const REKEY_ACCTS: Rekey<Acct> = Rekey("rekey-accts", PhantomData);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_find_an_entity_under_either_key_on_one_server() {
    let server = RedisServer::start();
    either_key(Store::open(server.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_find_an_entity_under_either_key_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    either_key(cluster.store()).await;
}

async fn key_exists(conn: &mut Store, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query_async::<i64>(conn).await.unwrap() == 1
}

async fn either_key(mut conn: Store) {
    let old: Vec<v2::Acct> = (0..6)
        .map(|i| acct("u1", i))
        .map(|a| v2::Acct {
            id: a.id,
            user_id: a.user_id,
            email: a.email,
            at: a.at,
        })
        .collect();
    for r in v2::Acct::create_many(&mut conn, &old).await.unwrap() {
        r.unwrap();
    }
    // Reads find it under the previous key, only as the entity asked for.
    assert_eq!(Acct::get(&mut conn, "u1", "a0").await.unwrap(), Some(acct("u1", 0)));
    assert_eq!(Acct::get(&mut conn, "u2", "a0").await.unwrap(), None);
    assert!(Acct::exists(&mut conn, "u1", "a0").await.unwrap());
    assert!(!Acct::exists(&mut conn, "u2", "a0").await.unwrap());
    // A write moves it first: it lands under the key, the previous hash and
    // its index entry go, the index names the new id.
    Acct::update(
        &mut conn,
        "u1",
        "a1",
        &AcctPatch {
            at: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(key_exists(&mut conn, "rr:{u1}:a1").await);
    assert!(!key_exists(&mut conn, "rr:a1").await);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("rr:user:{u1}")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        members.contains(&"u1:a1".to_owned()) && !members.contains(&"a1".to_owned()),
        "{members:?}"
    );
    let unique: String = redis::cmd("GET")
        .arg("rr:email:a1@u1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(unique, "u1:a1");
    // Pages list entities of either form, each once.
    let page = Acct::by_user_id(&mut conn, "u1", Page::newest(10)).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a5", "a4", "a3", "a2", "a0"]);
    // A unique lookup through an old id.
    assert_eq!(Acct::by_email(&mut conn, "a2@u1").await.unwrap(), Some(acct("u1", 2)));
    // A unique value an unmoved entity holds is not taken over.
    let mut thief = acct("u9", 9);
    thief.email = "a2@u1".into();
    assert!(matches!(
        Acct::create(&mut conn, &thief).await,
        Err(repobox_orm::Error::UniqueViolation { .. })
    ));
    // Another user's entity with the same id part is another entity.
    let other = acct("u3", 5);
    Acct::create(&mut conn, &other).await.unwrap();
    assert_eq!(Acct::get(&mut conn, "u1", "a5").await.unwrap(), Some(acct("u1", 5)));
    // A create of an entity still under its previous key finds it there.
    assert!(matches!(
        Acct::create(&mut conn, &acct("u1", 3)).await,
        Err(repobox_orm::Error::AlreadyExists { .. })
    ));
    // A delete of an unmoved entity removes it from both keys and its indexes.
    assert!(Acct::delete(&mut conn, "u1", "a4").await.unwrap());
    assert!(!key_exists(&mut conn, "rr:a4").await && !key_exists(&mut conn, "rr:{u1}:a4").await);
    assert_eq!(Acct::by_email(&mut conn, "a4@u1").await.unwrap(), None);
    let many = Acct::get_many(&mut conn, &[("u1", "a0"), ("u1", "a1"), ("u1", "a4"), ("u1", "a2")])
        .await
        .unwrap();
    assert_eq!(
        many.items,
        [
            Some(acct("u1", 0)),
            Some(Acct {
                at: 100,
                ..acct("u1", 1)
            }),
            None,
            Some(acct("u1", 2))
        ]
    );
    // The migration moves the rest; a dry run first counts them.
    let dry = migrate(&mut conn, &REKEY_ACCTS, &MigrateOptions::default().dry_run(true))
        .await
        .unwrap();
    assert_eq!(dry.steps[0].changed, 3, "{dry:?}");
    let report = migrate(&mut conn, &REKEY_ACCTS, &MigrateOptions::default())
        .await
        .unwrap();
    assert_eq!((report.steps[0].changed, report.problems()), (3, 0), "{report:?}");
    assert!(report.is_verified(), "{report:?}");
    for i in [0, 2, 5] {
        assert!(!key_exists(&mut conn, &format!("rr:a{i}")).await);
        assert!(key_exists(&mut conn, &format!("rr:{{u1}}:a{i}")).await);
    }
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("rr:user:{u1}")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, ["u1:a0", "u1:a2", "u1:a3", "u1:a5", "u1:a1"]);
}

mod v3 {
    use super::*;

    /// Members before a re-key that only renames the prefix: the ids stay.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("pa:<id>")]
    #[ttl(days = 1)]
    #[index(set = "pa:team:<team>")]
    #[index(unique = "pa:email:<email>")]
    pub struct Member {
        pub id: String,
        pub team: String,
        pub email: String,
    }

    /// Another client that already writes the new keys.
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("pb:<id>")]
    #[ttl(days = 1)]
    #[index(set = "pa:team:<team>")]
    #[index(unique = "pa:email:<email>")]
    pub struct Early {
        pub id: String,
        pub team: String,
        pub email: String,
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("pb:<id>", previous = "pa:<id>")]
#[ttl(days = 1)]
#[index(set = "pa:team:<team>")]
#[index(unique = "pa:email:<email>")]
struct Member {
    id: String,
    team: String,
    email: String,
}

const RENAME_PREFIX: Rekey<Member> = Rekey("rename-prefix", PhantomData);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_rename_keeps_unique_values_counts_and_entries_on_one_server() {
    let server = RedisServer::start();
    prefix_rename(Store::open(server.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_rename_keeps_unique_values_counts_and_entries_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    prefix_rename(cluster.store()).await;
}

async fn prefix_rename(mut conn: Store) {
    let member = |i: u32| v3::Member {
        id: format!("m{i}"),
        team: "t".into(),
        email: format!("m{i}@t"),
    };
    for i in 1..=4 {
        v3::Member::create(&mut conn, &member(i)).await.unwrap();
    }
    // A unique value an unmoved member holds (same id under both keys) is
    // not taken over.
    let thief = Member {
        id: "m9".into(),
        team: "t".into(),
        email: "m1@t".into(),
    };
    assert!(matches!(
        Member::create(&mut conn, &thief).await,
        Err(repobox_orm::Error::UniqueViolation { .. })
    ));
    // The TTL of an entity still under its previous key is its own.
    let ttl = Member::ttl(&mut conn, "m2").await.unwrap().expect("m2 has a TTL");
    assert!(
        ttl > Duration::from_secs(23 * 3600) && ttl <= Duration::from_secs(24 * 3600),
        "{ttl:?}"
    );
    assert_eq!(Member::ttl(&mut conn, "m8").await.unwrap(), None);
    // Counting (which checks each member of a TTL entity) keeps them.
    assert_eq!(Member::count_by_team(&mut conn, "t").await.unwrap(), 4);
    let held: HashSet<String> = redis::cmd("SMEMBERS")
        .arg("pa:team:t")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held.len(), 4, "{held:?}");
    assert_eq!(Member::by_team(&mut conn, "t").await.unwrap().items.len(), 4);
    // Another client already wrote m3 under the new key: the move removes
    // the previous hash and keeps the entries, which are the new key's too.
    let early = v3::Early {
        id: "m3".into(),
        team: "t".into(),
        email: "m3@t".into(),
    };
    redis::cmd("HSET")
        .arg("pb:m3")
        .arg("id")
        .arg(&early.id)
        .arg("team")
        .arg(&early.team)
        .arg("email")
        .arg(&early.email)
        .exec_async(&mut conn)
        .await
        .unwrap();
    // And a key of another type took m4's new key: m4 stays where it is.
    redis::cmd("SET")
        .arg("pb:m4")
        .arg("junk")
        .exec_async(&mut conn)
        .await
        .unwrap();
    let report = migrate(&mut conn, &RENAME_PREFIX, &MigrateOptions::default().skip_verify(true))
        .await
        .unwrap();
    assert_eq!((report.steps[0].changed, report.problems()), (3, 1), "{report:?}");
    assert!(key_exists(&mut conn, "pa:m4").await, "m4 was lost");
    for i in 1..=3 {
        assert!(!key_exists(&mut conn, &format!("pa:m{i}")).await);
        assert!(key_exists(&mut conn, &format!("pb:m{i}")).await);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("pb:m{i}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(i == 3 || ttl > 0, "m{i} lost its TTL");
        let owner: String = redis::cmd("GET")
            .arg(format!("pa:email:m{i}@t"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(owner, format!("m{i}"));
    }
    let held: HashSet<String> = redis::cmd("SMEMBERS")
        .arg("pa:team:t")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, ["m1", "m2", "m3", "m4"].map(String::from).into());
}
