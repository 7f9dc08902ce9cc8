//! Sessions belong to one incarnation of their user, deletes take only what
//! is the user's own, and expiry arithmetic neither overflows nor trusts
//! stored values out of range.

use std::time::Duration;

use redis::AsyncCommands;
use repobox_models::*;
use repobox_orm::Store;
use repobox_orm::prelude::Error as OrmError;

repobox_orm::on_both_backends!(multi_thread:
    a_planted_session_in_a_users_set_is_left_alone,
    old_sessions_are_refused_once_the_user_id_is_created_again,
    a_session_created_while_its_user_is_deleted_is_refused,
    expiry_arithmetic_never_wraps_and_never_trusts_stored_values,
    a_session_without_an_incarnation_is_refused
);

fn user(id: &str, created_at: i64) -> User {
    User {
        id: id.into(),
        email: format!("{id}@x.io"),
        name: format!("User {id}"),
        created_at,
        last_login_at: None,
        is_admin: false,
    }
}

async fn a_planted_session_in_a_users_set_is_left_alone(mut conn: Store) {
    User::create(&mut conn, &user("alice", 1)).await.unwrap();
    User::create(&mut conn, &user("bob", 1)).await.unwrap();
    let (alice, _) = Session::create_user_session(&mut conn, "alice", None, None)
        .await
        .unwrap();
    let (bob, _) = Session::create_user_session(&mut conn, "bob", None, None)
        .await
        .unwrap();
    // Another client plants bob's digest (and a key that is no session) in alice's set.
    let _: () = conn.sadd("sessions:user:alice", bob.digest()).await.unwrap();
    let _: () = conn
        .set(format!("session:{}", "ab".repeat(32)), "not a hash")
        .await
        .unwrap();
    let _: () = conn.sadd("sessions:user:alice", "ab".repeat(32)).await.unwrap();

    let deleted = User::delete_with_sessions(&mut conn, "alice").await.unwrap();
    assert_eq!(
        deleted,
        UserDeleted {
            existed: true,
            sessions_revoked: 1,
            not_its_own: 2
        }
    );
    assert_eq!(Session::get_valid(&mut conn, &alice).await.unwrap(), None);
    assert!(!Session::exists(&mut conn, alice.digest().as_str()).await.unwrap());
    // Bob's session and the foreign key are untouched.
    assert!(Session::get_valid(&mut conn, &bob).await.unwrap().is_some());
    assert!(
        conn.exists::<_, bool>(format!("session:{}", "ab".repeat(32)))
            .await
            .unwrap()
    );
    assert!(!conn.exists::<_, bool>("sessions:user:alice").await.unwrap());
    assert!(
        conn.sismember::<_, _, bool>("sessions:user:bob", bob.digest())
            .await
            .unwrap()
    );
}

async fn old_sessions_are_refused_once_the_user_id_is_created_again(mut conn: Store) {
    // Deleted by the generated delete, and by delete_with_sessions; a delete
    // by another client (`DEL`) too.
    for (round, how) in ["delete", "delete_with_sessions", "DEL"].into_iter().enumerate() {
        let first = 1_000 + round as i64 * 10;
        User::create(&mut conn, &user("u", first)).await.unwrap();
        let (old, _) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
        assert!(Session::get_valid(&mut conn, &old).await.unwrap().is_some());
        match how {
            "delete" => assert!(User::delete(&mut conn, "u").await.unwrap()),
            "delete_with_sessions" => assert!(User::delete_with_sessions(&mut conn, "u").await.unwrap().existed),
            _ => {
                let _: () = conn.del("user:u").await.unwrap();
                let _: () = conn.del("user:email:u@x.io").await.unwrap();
            }
        }
        // The id comes back: re-registration, an OAuth id, a restore.
        User::create(&mut conn, &user("u", first + 1)).await.unwrap();
        assert_eq!(Session::get_valid(&mut conn, &old).await.unwrap(), None, "{how}");
        assert_eq!(
            Session::extend(&mut conn, &old, Duration::from_secs(60)).await.unwrap(),
            None,
            "{how}"
        );
        assert!(
            !Session::exists(&mut conn, old.digest().as_str()).await.unwrap(),
            "{how}: revoked"
        );
        // The new incarnation's sessions work.
        let (new, session) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
        assert_eq!(session.user_created_at, Some(first + 1));
        assert!(Session::get_valid(&mut conn, &new).await.unwrap().is_some());
        User::delete_with_sessions(&mut conn, "u").await.unwrap();
    }
}

async fn a_session_created_while_its_user_is_deleted_is_refused(conn: Store) {
    let mut created = 0;
    for round in 0..40i64 {
        let mut c = conn.clone();
        User::create(&mut c, &user("racer", round * 2)).await.unwrap();
        let (mut a, mut b) = (conn.clone(), conn.clone());
        let login = tokio::spawn(async move { Session::create_user_session(&mut a, "racer", None, None).await });
        let delete = tokio::spawn(async move { User::delete_with_sessions(&mut b, "racer").await });
        let (login, delete) = (login.await.unwrap(), delete.await.unwrap());
        assert!(delete.unwrap().existed);
        // The id is created again at once.
        User::create(&mut c, &user("racer", round * 2 + 1)).await.unwrap();
        if let Ok((token, _)) = login {
            created += 1;
            assert_eq!(Session::get_valid(&mut c, &token).await.unwrap(), None, "round {round}");
        }
        User::delete_with_sessions(&mut c, "racer").await.unwrap();
    }
    assert!(created > 0, "some logins won the race");
}

async fn expiry_arithmetic_never_wraps_and_never_trusts_stored_values(mut conn: Store) {
    User::create(&mut conn, &user("u", 1)).await.unwrap();
    let (token, session) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
    let key = format!("session:{}", token.digest());

    // The largest extensions are capped at the lifetime, never wrapped.
    let longest = Session::extend_within(&mut conn, &token, Duration::MAX, Duration::MAX)
        .await
        .unwrap()
        .expect("still valid");
    assert!(longest.expires_at > session.expires_at);
    assert!(longest.expires_at <= session.created_at + Session::LONGEST.as_millis() as i64);
    let capped = Session::extend(&mut conn, &token, Duration::MAX)
        .await
        .unwrap()
        .expect("valid");
    // An extension under the 30-day cap brings an expiry past that cap
    // back to it.
    assert!(capped.expires_at <= session.created_at + Session::MAX_LIFETIME.as_millis() as i64);
    assert!(
        capped.expires_at >= session.expires_at,
        "never shorter than the session had"
    );
    let stored: i64 = conn.hget(&key, "expires_at").await.unwrap();
    assert_eq!(stored, capped.expires_at);
    let ttl: i64 = conn.pttl(&key).await.unwrap();
    assert!(ttl > 0, "{ttl}");

    // A zero extension is a mistake, not a logout.
    for (by, max) in [
        (Duration::ZERO, Session::MAX_LIFETIME),
        (Duration::from_secs(1), Duration::ZERO),
    ] {
        let err = Session::extend_within(&mut conn, &token, by, max).await.unwrap_err();
        assert!(matches!(err.orm(), Some(OrmError::InvalidArgument { .. })), "{err:?}");
    }
    assert!(Session::get_valid(&mut conn, &token).await.unwrap().is_some());

    // Stored expiries out of range (another client's) are treated as expired.
    for (i, bad) in [
        "9223372036854775807",
        "-9223372036854775808",
        "9007199254740993",
        "9007199254740991",
        "1e18",
        "soon",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        for extend in [false, true] {
            let (t, _) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
            let k = format!("session:{}", t.digest());
            let _: () = conn.hset(&k, "expires_at", bad).await.unwrap();
            let got = if extend {
                Session::extend(&mut conn, &t, Duration::from_secs(3600)).await.unwrap()
            } else {
                Session::get_valid(&mut conn, &t).await.unwrap()
            };
            assert_eq!(got, None, "case {i} {bad:?} extend={extend}");
            assert!(!conn.exists::<_, bool>(&k).await.unwrap(), "{bad:?} revoked");
        }
    }
    // A stored expiry past the lifetime's cap (in range) is brought back to
    // the cap by an extension, never kept.
    let (t, s) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
    let far = s.created_at + 60 * 24 * 3600 * 1000;
    let _: () = conn
        .hset(format!("session:{}", t.digest()), "expires_at", far)
        .await
        .unwrap();
    let extended = Session::extend(&mut conn, &t, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(
        extended.expires_at <= s.created_at + Session::MAX_LIFETIME.as_millis() as i64,
        "{} is past the 30-day cap",
        extended.expires_at
    );
    // So is a created_at out of range, when extending.
    let (t, _) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
    let _: () = conn
        .hset(format!("session:{}", t.digest()), "created_at", "-5")
        .await
        .unwrap();
    assert_eq!(
        Session::extend(&mut conn, &t, Duration::from_secs(60)).await.unwrap(),
        None
    );
}

async fn a_session_without_an_incarnation_is_refused(mut conn: Store) {
    User::create(&mut conn, &user("u", 7)).await.unwrap();
    let (token, _) = Session::create_user_session(&mut conn, "u", None, None).await.unwrap();
    let key = format!("session:{}", token.digest());
    let _: () = conn.hdel(&key, "user_created_at").await.unwrap();
    assert_eq!(Session::get_valid(&mut conn, &token).await.unwrap(), None);
    // And a login for a user that does not exist is refused up front.
    let err = Session::create_user_session(&mut conn, "nobody", None, None)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// `SCRIPT FLUSH` every 2 ms: the session scripts (read, extend, revoke the
/// user's own) are loaded again as often as it takes; no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_calls_ride_out_a_script_flush_storm() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = repobox_orm::testing::RedisServer::start();
    let mut conn = Store::open(server.url().as_str()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let stop = stop.clone();
        let mut admin = server.connection().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for round in 0..60 {
        let id = format!("storm{round}");
        User::create(&mut conn, &user(&id, round)).await.unwrap();
        let (token, _) = Session::create_user_session(&mut conn, &id, None, None).await.unwrap();
        Session::create_user_session(&mut conn, &id, None, None).await.unwrap();
        assert!(
            Session::get_valid(&mut conn, &token).await.unwrap().is_some(),
            "round {round}"
        );
        assert!(
            Session::extend(&mut conn, &token, Duration::from_secs(60))
                .await
                .unwrap()
                .is_some()
        );
        let deleted = User::delete_with_sessions(&mut conn, &id).await.unwrap();
        assert_eq!(deleted.sessions_revoked, 2, "round {round}");
    }
    stop.store(true, Ordering::SeqCst);
    flusher.await.unwrap();
}
