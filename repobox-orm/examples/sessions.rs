//! Sessions: a TTL entity keyed by a random id, listed per user through a set
//! index whose entries expire with them, and ended one by one or all at once.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p repobox-orm --example sessions
//! ```
//!
//! (repobox-models' `Session` goes further: the cookie holds a token and Redis
//! only its SHA-256 digest, so a reader of Redis cannot log in.)

use std::time::Duration;

use repobox_orm::prelude::*;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("example:session:<id>", secret)]
#[ttl(days = 7)]
#[index(set = "example:sessions:user:<user_id>")]
struct Session {
    id: String,
    user_id: String,
    user_agent: Option<String>,
    created_at: i64,
}

#[tokio::main]
async fn main() -> repobox_orm::Result<()> {
    let mut store = Store::from_env()?;
    let user = repobox_orm::random_id("user id")?;
    let mut ids = Vec::new();
    for agent in ["firefox", "curl"] {
        let session = Session {
            id: repobox_orm::random_id("session id")?,
            user_id: user.clone(),
            user_agent: Some(agent.into()),
            created_at: 1_700_000_000_000,
        };
        Session::create(&mut store, &session).await?; // hash, set entry and TTL, atomically
        ids.push(session.id);
    }
    let left = Session::ttl(&mut store, &ids[0]).await?.expect("just created");
    println!("a session lives {} more hours", left.as_secs() / 3600);

    // "Remember me" off: this one ends in a minute (its index key follows).
    Session::expire_in(&mut store, &ids[1], Duration::from_secs(60)).await?;

    let sessions = Session::by_user_id(&mut store, &user).await?;
    println!("{} sessions for the user", sessions.items.len());

    // Log out everywhere.
    let ended = Session::delete_many(&mut store, &ids).await?;
    println!("ended {}", ended.iter().filter(|d| matches!(d, Ok(true))).count());
    assert!(Session::by_user_id(&mut store, &user).await?.items.is_empty());
    store.close().await;
    Ok(())
}
