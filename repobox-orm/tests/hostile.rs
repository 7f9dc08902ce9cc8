//! repobox against other writers of the same Redis: every test plays what a
//! client in another language, an operator with `redis-cli` or corrupt data
//! does, and asserts what is in Redis afterwards. "Writes nothing" is checked
//! by comparing a `DUMP` of every key before and after.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use repobox_orm::prelude::*;
use repobox_orm::testing::RedisServer;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("user:<id>")]
#[index(unique = "user:email:<email>")]
struct User {
    id: String,
    email: String,
    name: String,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("session:<id>")]
#[ttl(days = 7)]
#[index(set = "sessions:user:<user_id>")]
struct Session {
    id: String,
    user_id: String,
    expires_at: i64,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("job:<id>")]
#[index(sorted = "jobs:user:<user_id>", score = created_at)]
struct Job {
    id: String,
    user_id: String,
    created_at: i64,
    started_at: Option<i64>,
}

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        name: format!("user {id}"),
    }
}

async fn setup() -> (RedisServer, MultiplexedConnection) {
    let server = RedisServer::start();
    let conn = server.connection().await;
    (server, conn)
}

/// Every key with its `DUMP` and whether it has a TTL: what "Redis is
/// byte-identical" means here.
async fn snapshot(conn: &mut MultiplexedConnection) -> BTreeMap<String, (Vec<u8>, bool)> {
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    let mut out = BTreeMap::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&key).query_async(conn).await.unwrap();
        let ttl: i64 = conn.pttl(&key).await.unwrap();
        out.insert(key, (dump, ttl >= 0));
    }
    out
}

#[tokio::test]
async fn a_save_onto_a_hash_key_of_another_type_writes_nothing() {
    let (_server, mut conn) = setup().await;
    // Another client keeps a string where the entity's hash would be.
    let _: () = conn.set("user:u1", "not a hash").await.unwrap();
    let before = snapshot(&mut conn).await;
    for result in [
        User::save(&mut conn, &user("u1", "a@x.io")).await,
        User::create(&mut conn, &user("u1", "a@x.io")).await,
        User::update(
            &mut conn,
            "u1",
            &UserPatch {
                email: Some("b@x.io".into()),
                ..Default::default()
            },
        )
        .await,
        User::delete(&mut conn, "u1").await.map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("wrong kind of value"), "{err}");
    }
    assert_eq!(snapshot(&mut conn).await, before, "a refused write wrote something");
}

#[tokio::test]
async fn ttls_redis_would_refuse_are_refused_before_any_io() {
    let (_server, mut conn) = setup().await;
    let s = Session {
        id: "s1".into(),
        user_id: "u1".into(),
        expires_at: 1,
    };
    Session::create(&mut conn, &s).await.unwrap();
    let before = snapshot(&mut conn).await;
    for ttl in [Duration::MAX, Duration::from_secs(u64::MAX / 1000), Duration::ZERO] {
        let err = Session::expire_in(&mut conn, "s1", ttl).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { name: "ttl", .. }),
            "{ttl:?}: {err}"
        );
        let patch = SessionPatch {
            expires_at: Some(i64::MAX),
            ..Default::default()
        };
        let err = Session::update_and_expire(&mut conn, "s1", &patch, ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { name: "ttl", .. }),
            "{ttl:?}: {err}"
        );
    }
    assert_eq!(snapshot(&mut conn).await, before);
}

#[tokio::test]
async fn pages_at_the_limits_of_their_types_are_errors_not_panics() {
    let (_server, mut conn) = setup().await;
    for page in [
        Page::newest(2).offset(usize::MAX),
        Page::oldest(usize::MAX).offset(1),
        Page::newest(1).scores(f64::NAN, 0.0),
    ] {
        let err = Job::by_user_id(&mut conn, "u1", page).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{page:?}: {err}");
    }
    assert!(
        Job::by_user_id(&mut conn, "u1", Page::oldest(usize::MAX))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn invisible_characters_and_huge_key_parts_are_refused_with_a_short_message() {
    let (_server, mut conn) = setup().await;
    User::create(&mut conn, &user("admin", "admin@corp.io")).await.unwrap();
    let before = snapshot(&mut conn).await;
    for lookalike in [
        "admin@corp.io\u{200B}",
        "admin@corp.io\u{FEFF}",
        "\u{202E}oi.proc@nimda",
        "ad\u{200D}min@corp.io",
    ] {
        let err = User::create(&mut conn, &user("admin2", lookalike)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKeyPart { .. }), "{lookalike:?}: {err}");
        let err = User::by_email(&mut conn, lookalike).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKeyPart { .. }), "{lookalike:?}: {err}");
    }
    let huge = "x".repeat(1 << 20);
    let err = User::get(&mut conn, huge.as_str()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.len() < 300, "the message echoes the value: {} bytes", text.len());
    assert!(text.contains("1048576 bytes"), "{text}");
    assert_eq!(snapshot(&mut conn).await, before);
}

#[tokio::test]
async fn blank_looking_characters_and_leading_combining_marks_are_refused_and_write_nothing() {
    let (_server, mut conn) = setup().await;
    User::create(&mut conn, &user("admin", "admin@corp.io")).await.unwrap();
    let before = snapshot(&mut conn).await;
    // Hangul fillers and a variation selector render as nothing; a combining
    // mark at the start of a part joins the `:` before it.
    for lookalike in [
        "\u{115F}",
        "\u{3164}",
        "admin@corp.io\u{3164}",
        "admin@corp.io\u{FE0F}",
        "\u{0301}admin@corp.io",
    ] {
        let err = User::create(&mut conn, &user(lookalike, "x@corp.io"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKeyPart { .. }), "{lookalike:?}: {err}");
        let err = User::create(&mut conn, &user("admin2", lookalike)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKeyPart { .. }), "{lookalike:?}: {err}");
        let err = User::by_email(&mut conn, lookalike).await.unwrap_err();
        assert!(matches!(err, Error::InvalidKeyPart { .. }), "{lookalike:?}: {err}");
    }
    // The message shows 64 characters of the part and its length, not all of it.
    let fillers = "\u{3164}".repeat(150);
    let err = User::get(&mut conn, fillers.as_str()).await.unwrap_err().to_string();
    assert!(err.contains("(450 bytes)"), "{err}");
    assert_eq!(err.matches('\u{3164}').count(), 64, "{err}");
    assert_eq!(snapshot(&mut conn).await, before);
    // Letters with marks after them, Hangul and emoji are ids like any other.
    for id in ["jose\u{0301}", "\u{D55C}\u{AD6D}", "\u{1F383}"] {
        User::create(&mut conn, &user(id, &format!("{id}@corp.io")))
            .await
            .unwrap();
        assert_eq!(User::get(&mut conn, id).await.unwrap().unwrap().id, id);
    }
}

#[tokio::test]
async fn a_unique_value_of_a_vanished_owner_is_taken_over() {
    let (_server, mut conn) = setup().await;
    User::create(&mut conn, &user("a", "dup@x.io")).await.unwrap();
    // A client that does not know the index deletes the owner's hash.
    let _: () = conn.del("user:a").await.unwrap();
    User::create(&mut conn, &user("b", "dup@x.io")).await.unwrap();
    let owner: String = conn.get("user:email:dup@x.io").await.unwrap();
    assert_eq!(owner, "b");
    assert_eq!(User::by_email(&mut conn, "dup@x.io").await.unwrap().unwrap().id, "b");
}

#[tokio::test]
async fn a_unique_value_whose_owner_moved_on_is_taken_over_and_a_live_owner_keeps_it() {
    let (_server, mut conn) = setup().await;
    User::create(&mut conn, &user("a", "dup@x.io")).await.unwrap();
    User::create(&mut conn, &user("c", "live@x.io")).await.unwrap();
    // The web app changes a's email with a plain HSET, leaving the claim behind.
    let _: () = conn.hset("user:a", "email", "new@x.io").await.unwrap();
    User::create(&mut conn, &user("b", "dup@x.io")).await.unwrap();
    let owner: String = conn.get("user:email:dup@x.io").await.unwrap();
    assert_eq!(owner, "b");

    // A live owner still holds its value, and the refused write writes nothing.
    let before = snapshot(&mut conn).await;
    let err = User::create(&mut conn, &user("d", "live@x.io")).await.unwrap_err();
    assert!(
        matches!(err, Error::UniqueViolation { ref owner, .. } if owner == "c"),
        "{err}"
    );
    let err = User::save(&mut conn, &user("b", "live@x.io")).await.unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(snapshot(&mut conn).await, before);
}

#[tokio::test]
async fn a_unique_value_of_an_expired_owner_is_taken_over() {
    #[derive(RedisEntity, Debug, Clone, PartialEq)]
    #[key("invite:<id>")]
    #[ttl(minutes = 10)]
    #[index(unique = "invite:code:<code>")]
    struct Invite {
        id: String,
        code: String,
    }
    let (_server, mut conn) = setup().await;
    let invite = |id: &str| Invite {
        id: id.into(),
        code: "XYZ".into(),
    };
    Invite::create(&mut conn, &invite("i1")).await.unwrap();
    // The owner expires; its claim outlives it.
    let _: () = conn.pexpire("invite:i1", 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    Invite::create(&mut conn, &invite("i2")).await.unwrap();
    assert_eq!(Invite::by_code(&mut conn, "XYZ").await.unwrap().unwrap().id, "i2");
}

#[tokio::test]
async fn a_unique_claim_held_by_an_id_no_entity_can_have_is_taken_over() {
    let (_server, mut conn) = setup().await;
    // Written by hand: "a:b" cannot be a user id (ids have no `:`).
    let _: () = conn.set("user:email:dup@x.io", "a:b").await.unwrap();
    User::create(&mut conn, &user("b", "dup@x.io")).await.unwrap();
    let owner: String = conn.get("user:email:dup@x.io").await.unwrap();
    assert_eq!(owner, "b");
}

fn job(id: &str, user_id: &str, created_at: i64) -> Job {
    Job {
        id: id.into(),
        user_id: user_id.into(),
        created_at,
        started_at: None,
    }
}

#[tokio::test]
async fn index_reads_return_only_entities_that_match_the_query() {
    let (_server, mut conn) = setup().await;
    Job::create(&mut conn, &job("j1", "u1", 10)).await.unwrap();
    Job::create(&mut conn, &job("j2", "u2", 20)).await.unwrap();
    // Someone adds u1's job to u2's index by hand, and moves j2 to u3 with a plain HSET.
    let _: () = conn.zadd("jobs:user:u2", "j1", 15).await.unwrap();
    let _: () = conn.hset("job:j2", "user_id", "u3").await.unwrap();
    let page = Job::by_user_id(&mut conn, "u2", Page::newest(10)).await.unwrap();
    assert!(page.items.is_empty() && page.is_complete(), "{page:?}");
    let left: Vec<String> = conn.zrange("jobs:user:u2", 0, -1).await.unwrap();
    assert!(left.is_empty(), "the mismatched members were removed: {left:?}");
    // j1 is still u1's.
    let u1 = Job::by_user_id(&mut conn, "u1", Page::newest(10)).await.unwrap();
    assert_eq!(u1.items, vec![job("j1", "u1", 10)]);

    User::create(&mut conn, &user("a", "a@x.io")).await.unwrap();
    User::create(&mut conn, &user("b", "b@x.io")).await.unwrap();
    let _: () = conn.set("user:email:a@x.io", "b").await.unwrap();
    assert_eq!(User::by_email(&mut conn, "a@x.io").await.unwrap(), None);
    assert!(!conn.exists::<_, bool>("user:email:a@x.io").await.unwrap());
    assert_eq!(User::by_email(&mut conn, "b@x.io").await.unwrap().unwrap().id, "b");

    Session::create(
        &mut conn,
        &Session {
            id: "sA".into(),
            user_id: "uA".into(),
            expires_at: 1,
        },
    )
    .await
    .unwrap();
    Session::create(
        &mut conn,
        &Session {
            id: "sB".into(),
            user_id: "uB".into(),
            expires_at: 1,
        },
    )
    .await
    .unwrap();
    let _: () = conn.sadd("sessions:user:uA", "sB").await.unwrap();
    let sessions = Session::by_user_id(&mut conn, "uA").await.unwrap();
    assert_eq!(sessions.items.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["sA"]);
}

#[tokio::test]
async fn a_member_with_a_wrong_score_is_rescored_and_the_page_is_in_order() {
    let (_server, mut conn) = setup().await;
    for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
        Job::create(&mut conn, &job(id, "u1", at)).await.unwrap();
    }
    let _: () = conn.zadd("jobs:user:u1", "a", 99).await.unwrap();
    let page = Job::by_user_id(&mut conn, "u1", Page::newest(3)).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["c", "b", "a"]);
    let score: f64 = conn.zscore("jobs:user:u1", "a").await.unwrap();
    assert_eq!(score, 1.0);
}

#[tokio::test]
async fn one_bad_record_hides_none_of_the_good_ones() {
    let (_server, mut conn) = setup().await;
    for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
        Job::create(&mut conn, &job(id, "u1", at)).await.unwrap();
    }
    let _: () = conn.hset("job:b", "created_at", "yesterday").await.unwrap();
    let _: () = conn.zadd("jobs:user:u1", &b"\xff\xfe"[..], 2.5).await.unwrap();
    let _: () = conn.zadd("jobs:user:u1", "x:y", 2.7).await.unwrap();
    let page = Job::by_user_id(&mut conn, "u1", Page::newest(10)).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["c", "a"]);
    assert_eq!(page.errors.len(), 3, "{:?}", page.errors);
    let text: Vec<String> = page.errors.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|e| e.contains("job:b") && e.contains("created_at")),
        "{text:?}"
    );
    assert!(
        text.iter().filter(|e| e.contains("jobs:user:u1")).count() == 2,
        "bad members name the index key: {text:?}"
    );
    // Bad records are left for a human: nothing was removed.
    let card: u64 = conn.zcard("jobs:user:u1").await.unwrap();
    assert_eq!(card, 5);

    let many = Job::get_many(&mut conn, &["a", "b", "zz"]).await.unwrap();
    assert_eq!(
        many.items.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert!(matches!(&many.errors[..], [Error::Decode { key, .. }] if key == "job:b"));
}

#[tokio::test]
async fn a_condition_holds_for_every_stored_value_that_decodes_to_it() {
    let (_server, mut conn) = setup().await;
    Job::create(&mut conn, &job("j", "u1", 1)).await.unwrap();
    for stored in ["007", "+7", "7"] {
        let _: () = conn.hset("job:j", "started_at", stored).await.unwrap();
        let expected = JobPatch {
            started_at: Some(Some(7)),
            ..Default::default()
        };
        let patch = JobPatch {
            created_at: Some(2),
            ..Default::default()
        };
        Job::update_if(&mut conn, "j", &patch, &expected).await.unwrap();
    }
    let _: () = conn.hset("job:j", "started_at", "8").await.unwrap();
    let expected = JobPatch {
        started_at: Some(Some(7)),
        ..Default::default()
    };
    let err = Job::update_if(&mut conn, "j", &JobPatch::default(), &expected)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn index_maintenance_touches_only_index_keys() {
    let (_server, mut conn) = setup().await;
    User::create(&mut conn, &user("alice", "alice@x.io")).await.unwrap();
    Job::create(&mut conn, &job("j1", "alice", 1)).await.unwrap();
    Session::create(
        &mut conn,
        &Session {
            id: "s1".into(),
            user_id: "alice".into(),
            expires_at: 1,
        },
    )
    .await
    .unwrap();
    // The app's own keys that look like index keys, of every kind and type.
    let _: () = conn.set("user:email:verify:alice@x.io", "token").await.unwrap();
    let _: () = conn.zadd("jobs:user:alice:archive", "j-old", 1).await.unwrap();
    let _: () = conn.sadd("sessions:user:alice:revoked", "s-old").await.unwrap();
    let _: () = conn.hset("jobs:user:bob", "not", "a zset").await.unwrap();
    let _: () = conn.set("user:email:carol@x.io", "ghost-id").await.unwrap();
    let lookalikes = [
        "user:email:verify:alice@x.io",
        "jobs:user:alice:archive",
        "sessions:user:alice:revoked",
        "jobs:user:bob",
    ];
    let dump = |conn: &mut MultiplexedConnection, key: &'static str| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("DUMP")
                .arg(key)
                .query_async::<Vec<u8>>(&mut conn)
                .await
                .unwrap()
        }
    };
    let mut before = Vec::new();
    for key in lookalikes {
        before.push(dump(&mut conn, key).await);
    }
    let users = repobox_orm::check_indexes::<User, _>(&mut conn).await.unwrap();
    assert_eq!((users[0].keys, users[0].gone, users[0].skipped), (2, 1, 1), "{users:?}");
    let users = repobox_orm::repair_indexes::<User, _>(&mut conn).await.unwrap();
    assert_eq!((users[0].gone, users[0].skipped), (1, 1));
    let jobs = repobox_orm::repair_indexes::<Job, _>(&mut conn).await.unwrap();
    assert_eq!((jobs[0].keys, jobs[0].skipped, jobs[0].gone), (1, 2, 0), "{jobs:?}");
    let sessions = repobox_orm::repair_indexes::<Session, _>(&mut conn).await.unwrap();
    assert_eq!((sessions[0].keys, sessions[0].skipped), (1, 1), "{sessions:?}");
    for (key, dumped) in lookalikes.into_iter().zip(before) {
        assert_eq!(dump(&mut conn, key).await, dumped, "{key} was touched");
    }
    assert!(!conn.exists::<_, bool>("user:email:carol@x.io").await.unwrap());
}

#[tokio::test]
async fn a_sweep_reports_bad_members_and_runs_to_the_end() {
    let (_server, mut conn) = setup().await;
    for u in ["u1", "u2", "u3"] {
        Job::create(&mut conn, &job(&format!("{u}-job"), u, 1)).await.unwrap();
        let _: () = conn.zadd(format!("jobs:user:{u}"), &b"\xff"[..], 0).await.unwrap();
        let _: () = conn
            .zadd(format!("jobs:user:{u}"), format!("{u}-ghost"), 0)
            .await
            .unwrap();
    }
    let reports = repobox_orm::repair_indexes::<Job, _>(&mut conn).await.unwrap();
    let r = &reports[0];
    assert_eq!((r.keys, r.members, r.gone, r.bad), (3, 9, 3, 3), "{r:?}");
    assert_eq!(r.problems.len(), 3);
    assert!(r.problems[0].contains("not UTF-8"), "{:?}", r.problems);
    for u in ["u1", "u2", "u3"] {
        let card: u64 = conn.zcard(format!("jobs:user:{u}")).await.unwrap();
        assert_eq!(card, 2, "the ghost went, the job and the bad member stayed");
    }
}

#[tokio::test]
async fn a_repair_adds_entities_missing_from_their_index() {
    let (_server, mut conn) = setup().await;
    Job::create(&mut conn, &job("j1", "u1", 1)).await.unwrap();
    User::create(&mut conn, &user("a", "a@x.io")).await.unwrap();
    // Changed by clients that do not maintain the indexes.
    let _: () = conn.hset("job:j1", "user_id", "u2").await.unwrap();
    let _: () = conn.hset("user:a", "email", "new@x.io").await.unwrap();
    let _: () = conn
        .hset_multiple("job:j9", &[("id", "j9"), ("user_id", "u9"), ("created_at", "9")])
        .await
        .unwrap();
    let checked = repobox_orm::check_indexes::<Job, _>(&mut conn).await.unwrap();
    assert_eq!((checked[0].mismatched, checked[0].missing), (1, 2), "{checked:?}");
    repobox_orm::repair_indexes::<Job, _>(&mut conn).await.unwrap();
    repobox_orm::repair_indexes::<User, _>(&mut conn).await.unwrap();
    let u1: Vec<String> = conn.zrange("jobs:user:u1", 0, -1).await.unwrap();
    let u2: Vec<(String, f64)> = conn.zrange_withscores("jobs:user:u2", 0, -1).await.unwrap();
    let u9: Vec<String> = conn.zrange("jobs:user:u9", 0, -1).await.unwrap();
    assert!(u1.is_empty());
    assert_eq!(u2, [("j1".to_owned(), 1.0)]);
    assert_eq!(u9, ["j9"]);
    assert_eq!(User::by_email(&mut conn, "new@x.io").await.unwrap().unwrap().id, "a");
    assert!(!conn.exists::<_, bool>("user:email:a@x.io").await.unwrap());
    let again = repobox_orm::check_indexes::<Job, _>(&mut conn).await.unwrap();
    assert_eq!((again[0].gone, again[0].mismatched, again[0].missing), (0, 0, 0));
}

/// What a foreign writer or repobox does in the property test.
#[derive(Debug, Clone)]
enum Step {
    Save(u8, u8, i64),
    Update(u8, u8),
    Delete(u8),
    /// A client that does not know the index deletes the hash.
    ForeignDelete(u8),
    /// A client that does not know the index moves the job with `HSET`.
    ForeignMove(u8, u8),
    /// Someone adds a member by hand.
    ForeignMember(u8, u8, i64),
    /// Corrupt data: a field that does not decode.
    ForeignCorrupt(u8),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0..6u8, 0..3u8, 0..100i64).prop_map(|(j, u, t)| Step::Save(j, u, t)),
        2 => (0..6u8, 0..3u8).prop_map(|(j, u)| Step::Update(j, u)),
        1 => (0..6u8).prop_map(Step::Delete),
        1 => (0..6u8).prop_map(Step::ForeignDelete),
        1 => (0..6u8, 0..3u8).prop_map(|(j, u)| Step::ForeignMove(j, u)),
        1 => (0..8u8, 0..3u8, 0..100i64).prop_map(|(j, u, t)| Step::ForeignMember(j, u, t)),
        1 => (0..6u8).prop_map(Step::ForeignCorrupt),
    ]
}

async fn apply(conn: &mut MultiplexedConnection, step: &Step) {
    let id = |j: &u8| format!("j{j}");
    let user = |u: &u8| format!("u{u}");
    match step {
        Step::Save(j, u, t) => {
            // A save onto a corrupt hash is fine; its result is not the point.
            let _ = Job::save(conn, &job(&id(j), &user(u), *t)).await;
        }
        Step::Update(j, u) => {
            let patch = JobPatch {
                user_id: Some(user(u)),
                ..Default::default()
            };
            let _ = Job::update(conn, id(j), &patch).await;
        }
        Step::Delete(j) => {
            let _ = Job::delete(conn, id(j)).await;
        }
        Step::ForeignDelete(j) => {
            let _: () = conn.del(format!("job:{}", id(j))).await.unwrap();
        }
        Step::ForeignMove(j, u) => {
            if conn.exists::<_, bool>(format!("job:{}", id(j))).await.unwrap() {
                let _: () = conn.hset(format!("job:{}", id(j)), "user_id", user(u)).await.unwrap();
            }
        }
        Step::ForeignMember(j, u, t) => {
            let _: () = conn.zadd(format!("jobs:user:{}", user(u)), id(j), *t).await.unwrap();
        }
        Step::ForeignCorrupt(j) => {
            if conn.exists::<_, bool>(format!("job:{}", id(j))).await.unwrap() {
                let _: () = conn.hset(format!("job:{}", id(j)), "created_at", "soon").await.unwrap();
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Interleaves repobox with a foreign writer: no read returns an entity
    /// that does not match its query or fails as a whole, and after a repair
    /// every index is exact.
    #[test]
    fn foreign_writers_never_make_reads_lie_and_a_repair_makes_indexes_exact(
        steps in proptest::collection::vec(step(), 1..30)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let server = RedisServer::start();
        rt.block_on(async {
            let mut conn = server.connection().await;
            for s in &steps {
                apply(&mut conn, s).await;
                for u in ["u0", "u1", "u2"] {
                    let page = Job::by_user_id(&mut conn, u, Page::oldest(20)).await.expect("a read never fails as a whole");
                    for j in &page.items {
                        assert_eq!(j.user_id, u, "{u}'s page returned {j:?} after {steps:?}");
                    }
                }
            }
            repobox_orm::repair_indexes::<Job, _>(&mut conn).await.unwrap();
            // Exact: every decodable job is in its user's index with its score;
            // every member is such a job, or an undecodable one (left for a human).
            for u in ["u0", "u1", "u2"] {
                let members: Vec<(String, f64)> = conn.zrange_withscores(format!("jobs:user:{u}"), 0, -1).await.unwrap();
                for (id, score) in &members {
                    let hash: std::collections::HashMap<String, String> = conn.hgetall(format!("job:{id}")).await.unwrap();
                    assert!(!hash.is_empty(), "ghost {id} in {u} after repair; {steps:?}");
                    // An undecodable job is reported and left alone; a decodable one must belong.
                    if let Some(at) = hash.get("created_at").and_then(|c| c.parse::<i64>().ok()) {
                        assert_eq!(hash.get("user_id").map(String::as_str), Some(u), "{id} in {u}; {steps:?}");
                        assert_eq!(*score, at as f64, "{id}'s score; {steps:?}");
                    }
                }
            }
            let keys: Vec<String> = conn.keys("job:*").await.unwrap();
            for key in keys {
                let hash: std::collections::HashMap<String, String> = conn.hgetall(&key).await.unwrap();
                let (Some(u), Some(Ok(at))) = (hash.get("user_id"), hash.get("created_at").map(|c| c.parse::<i64>())) else {
                    continue;
                };
                let id = key.trim_start_matches("job:");
                let score: Option<f64> = conn.zscore(format!("jobs:user:{u}"), id).await.unwrap();
                assert_eq!(score, Some(at as f64), "{key} is missing from {u}'s index; {steps:?}");
            }
        });
    }
}

/// A hash whose key field disagrees with its key (`job:spoof` holding
/// `id = good`) is not read as the entity it names: what is done to it
/// would be done to another.
#[tokio::test]
async fn a_hash_whose_key_field_names_another_entity_is_an_error() {
    let (_server, mut conn) = setup().await;
    Job::create(&mut conn, &job("good", "u1", 1)).await.unwrap();
    let _: () = conn
        .hset_multiple("job:spoof", &[("id", "good"), ("user_id", "u1"), ("created_at", "2")])
        .await
        .unwrap();
    let _: () = conn.zadd("jobs:user:u1", "spoof", 2).await.unwrap();
    let err = Job::get(&mut conn, "spoof").await.unwrap_err();
    assert!(
        matches!(&err, Error::Decode { key, field: "id", .. } if key == "job:spoof"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("\"good\" is not the value in the entity's key"),
        "{err}"
    );
    let page = Job::by_user_id(&mut conn, "u1", Page::newest(10)).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["good"], "the spoof is not listed as good");
    assert_eq!(page.errors.len(), 1, "{:?}", page.errors);
    assert_eq!(Job::get(&mut conn, "good").await.unwrap(), Some(job("good", "u1", 1)));
}
