//! Encrypted fields at rest, on the `GitCredential` model against a real
//! server. One test: the key ring is the process's, so the steps that change
//! it run in order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redis::AsyncCommands;
use repobox_models::{GitCredential, GitProvider};
use repobox_orm::crypto::KeyRing;
use repobox_orm::prelude::Error;
use repobox_orm::testing::RedisServer;

fn ring(keys: &[(&str, u8)]) -> KeyRing {
    let spec: Vec<String> = keys
        .iter()
        .map(|(id, byte)| format!("{id}:{}", STANDARD.encode([*byte; 32])))
        .collect();
    KeyRing::parse(&spec.join(",")).unwrap()
}

fn credential(user: &str, token: &str) -> GitCredential {
    GitCredential {
        user_id: user.into(),
        provider: GitProvider::GitHub,
        access_token: token.into(),
        refresh_token: Some(format!("{token}-refresh")),
        expires_at: Some(1_700_000_000_000),
    }
}

#[tokio::test]
async fn tokens_are_sealed_bound_to_their_entity_and_field_and_rotate() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    ring(&[("k1", 1)]).install();

    let c = credential("u1", "ghp_TopSecretToken");
    GitCredential::save(&mut conn, &c).await.unwrap();
    assert_eq!(
        GitCredential::get(&mut conn, "u1", GitProvider::GitHub).await.unwrap(),
        Some(c.clone())
    );
    let stored: std::collections::HashMap<String, String> = conn.hgetall("git_credential:u1:github").await.unwrap();
    for field in ["access_token", "refresh_token"] {
        assert!(stored[field].starts_with("v1:k1:"), "{field}: {}", stored[field]);
        assert!(!stored[field].contains("TopSecret"), "{field} is stored in the clear");
    }
    assert_eq!(stored["expires_at"], "1700000000000", "other fields stay plain");
    assert!(!format!("{c:?}").contains("TopSecret"));

    // Copied to another user's credential, or to another field, it does not open.
    GitCredential::save(&mut conn, &credential("u2", "ghp_other"))
        .await
        .unwrap();
    let _: () = conn
        .hset("git_credential:u2:github", "access_token", &stored["access_token"])
        .await
        .unwrap();
    let err = GitCredential::get(&mut conn, "u2", GitProvider::GitHub)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decrypt {
                field: "access_token",
                ..
            }
        ),
        "{err}"
    );
    let _: () = conn
        .hset("git_credential:u2:github", "access_token", &stored["refresh_token"])
        .await
        .unwrap();
    assert!(GitCredential::get(&mut conn, "u2", GitProvider::GitHub).await.is_err());

    // A key the ring does not hold: a clear error, never a panic or garbage.
    ring(&[("k9", 9)]).install();
    let err = GitCredential::get(&mut conn, "u1", GitProvider::GitHub)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"k1\"") && text.contains("_token"), "{text}");
    assert!(
        !text.contains("TopSecret") && !text.contains(&stored["access_token"]),
        "{text}"
    );

    // Rotation: a new key first seals, the old one still opens.
    ring(&[("k2", 2), ("k1", 1)]).install();
    assert_eq!(
        GitCredential::get(&mut conn, "u1", GitProvider::GitHub).await.unwrap(),
        Some(c.clone())
    );
    GitCredential::save(&mut conn, &c).await.unwrap();
    let token: String = conn.hget("git_credential:u1:github", "access_token").await.unwrap();
    assert!(token.starts_with("v1:k2:"), "{token}");
    ring(&[("k2", 2)]).install();
    assert_eq!(
        GitCredential::get(&mut conn, "u1", GitProvider::GitHub).await.unwrap(),
        Some(c.clone())
    );
    // A patch seals what it writes too.
    let patch = repobox_models::GitCredentialPatch {
        access_token: Some("ghp_rotated".into()),
        ..Default::default()
    };
    GitCredential::update(&mut conn, "u1", GitProvider::GitHub, &patch)
        .await
        .unwrap();
    let token: String = conn.hget("git_credential:u1:github", "access_token").await.unwrap();
    assert!(token.starts_with("v1:k2:") && !token.contains("rotated"));
    assert_eq!(
        GitCredential::get(&mut conn, "u1", GitProvider::GitHub)
            .await
            .unwrap()
            .unwrap()
            .access_token,
        "ghp_rotated"
    );

    // A value written by another client with a 100,000-character key id: the
    // error shows 64 characters of it and its length.
    let huge_id = "k".repeat(100_000);
    let forged = format!("v1:{huge_id}:AgICAgICAgICAgIC:YL65Fjkyoo+2uDAmiBrU/VR7+i4Cn4j2tDM=");
    let _: () = conn
        .hset("git_credential:u1:github", "access_token", &forged)
        .await
        .unwrap();
    let err = GitCredential::get(&mut conn, "u1", GitProvider::GitHub)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decrypt { .. }), "{err}");
    let text = err.to_string();
    assert!(text.len() < 300, "the message echoes the key id: {} bytes", text.len());
    assert!(
        text.contains(&format!("\"{}\"… (100000 bytes)", "k".repeat(64))),
        "{text}"
    );
}

#[test]
fn a_key_ring_with_one_id_twice_is_refused() {
    let spec = format!(
        "k2:{},k1:{},k2:{}",
        STANDARD.encode([2; 32]),
        STANDARD.encode([1; 32]),
        STANDARD.encode([3; 32])
    );
    let err = KeyRing::parse(&spec).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("\"k2\" appears twice"), "{err}");
    assert!(!err.to_string().contains(&STANDARD.encode([3; 32])), "{err}");
}
