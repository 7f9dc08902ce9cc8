//! TLS: a `rediss://` URL with the server's CA (and, when the server asks
//! for one, a client certificate for mutual TLS).
//!
//! ```sh
//! REDIS_URL=rediss://127.0.0.1:6380 REDIS_CA=ca.pem \
//!   REDIS_CLIENT_CERT=client.pem REDIS_CLIENT_KEY=client.key \
//!   cargo run -p repobox-orm --example tls
//! ```

use repobox_orm::TlsConfig;
use repobox_orm::prelude::*;

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("example:note:<id>")]
#[ttl(minutes = 5)]
struct Note {
    id: String,
    text: String,
}

#[tokio::main]
async fn main() -> repobox_orm::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "rediss://127.0.0.1:6380".into());
    let mut tls = TlsConfig::default();
    if let Ok(ca) = std::env::var("REDIS_CA") {
        tls = tls.ca_file(ca)?;
    }
    if let (Ok(cert), Ok(key)) = (std::env::var("REDIS_CLIENT_CERT"), std::env::var("REDIS_CLIENT_KEY")) {
        tls = tls.client_files(cert, key)?;
    }
    let mut store = Store::with_config(url.as_str(), StoreConfig::default().tls(tls))?;
    let note = Note {
        id: repobox_orm::random_id("note id")?,
        text: "over TLS".into(),
    };
    Note::save(&mut store, &note).await?;
    let read = Note::get(&mut store, note.id.as_str()).await?;
    println!(
        "read back over TLS: {}",
        read.as_ref().map_or("nothing", |n| n.text.as_str())
    );
    assert_eq!(read, Some(note.clone()));
    Note::delete(&mut store, note.id.as_str()).await?;
    store.close().await;
    Ok(())
}
