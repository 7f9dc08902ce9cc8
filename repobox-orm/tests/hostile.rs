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
            UserPatch {
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
        let err = Session::update_and_expire(&mut conn, "s1", patch, ttl)
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
