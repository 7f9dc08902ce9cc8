//! `rediss://` against a real `redis-server` speaking TLS, with certificates
//! made at test time: server authentication, a wrong CA, mutual TLS.

use repobox_orm::prelude::*;
use repobox_orm::testing::{RedisServer, TlsFiles};
use repobox_orm::{Backoff, TlsConfig};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[key("note:<id>")]
struct Note {
    id: String,
    text: String,
}

fn config(tls: TlsConfig) -> StoreConfig {
    StoreConfig::default()
        .tls(tls)
        .backoff(Backoff::default().max_attempts(Some(1)))
}

async fn round_trip(store: &Store) -> repobox_orm::Result<Option<Note>> {
    let mut conn = store.clone();
    let note = Note {
        id: "1".into(),
        text: "over TLS".into(),
    };
    Note::save(&mut conn, &note).await?;
    Note::get(&mut conn, "1").await
}

#[tokio::test]
async fn tls_with_the_servers_ca_works_and_a_wrong_ca_is_refused() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, false);
    let tls = TlsConfig::default().ca_file(&files.ca_cert).unwrap();
    let store = Store::with_config(server.tls_url().as_str(), config(tls)).unwrap();
    let got = round_trip(&store).await.unwrap();
    assert_eq!(got.map(|n| n.text).as_deref(), Some("over TLS"));

    let other = TlsFiles::generate();
    let wrong = TlsConfig::default().ca_file(&other.ca_cert).unwrap();
    let store = Store::with_config(server.tls_url().as_str(), config(wrong)).unwrap();
    let err = round_trip(&store).await.unwrap_err();
    let text = err.to_string().to_lowercase();
    assert!(text.contains("certificate") || text.contains("tls"), "{err}");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let files = TlsFiles::generate();
    let server = RedisServer::start_tls(&files, true);
    let ca_only = TlsConfig::default().ca_file(&files.ca_cert).unwrap();
    let store = Store::with_config(server.tls_url().as_str(), config(ca_only)).unwrap();
    assert!(
        round_trip(&store).await.is_err(),
        "a client without a certificate got in"
    );

    let mutual = TlsConfig::default()
        .ca_file(&files.ca_cert)
        .unwrap()
        .client_files(&files.client_cert, &files.client_key)
        .unwrap();
    assert!(!format!("{mutual:?}").contains("PRIVATE KEY"));
    let store = Store::with_config(server.tls_url().as_str(), config(mutual)).unwrap();
    assert_eq!(round_trip(&store).await.unwrap().unwrap().id, "1");
}

/// `rediss://` pointed at a plain Redis port: the handshake gets no answer
/// (the server reads it as the start of a command). The store says so, as a
/// TLS handshake failure naming plain Redis, after one attempt (the server
/// saw one TLS connection and one plain probe), instead of retrying into
/// "did not answer".
#[tokio::test]
async fn rediss_to_a_plain_server_is_a_tls_handshake_failure_at_once() {
    let server = RedisServer::start();
    let mut admin = server.connection().await;
    let connections = async |admin: &mut redis::aio::MultiplexedConnection| -> u64 {
        let info: String = redis::cmd("INFO").arg("stats").query_async(admin).await.unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    let before = connections(&mut admin).await;
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let config = StoreConfig::default().connect_timeout(std::time::Duration::from_millis(800));
    let store = Store::with_config(url.as_str(), config).unwrap();
    let err = round_trip(&store).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains("plain Redis") && text.contains("redis://"), "{text}");
    // One TLS attempt and one plain probe: no retries.
    assert_eq!(connections(&mut admin).await - before, 2);
}

/// The same for `rediss+cluster://` pointed at plain nodes.
#[tokio::test]
async fn rediss_cluster_to_plain_nodes_is_a_tls_handshake_failure_at_once() {
    let server = RedisServer::start();
    let url = format!("rediss+cluster://127.0.0.1:{}", server.port());
    let config = StoreConfig::default().connect_timeout(std::time::Duration::from_millis(800));
    let store = Store::with_config(url.as_str(), config).unwrap();
    let err = round_trip(&store).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS handshake failed"), "{text}");
    assert!(text.contains("plain Redis"), "{text}");
}
