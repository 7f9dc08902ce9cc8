//! One file per command; this one dispatches and holds what they share.

mod demo;
pub mod index;
mod jobs;
pub mod migrate;
mod queue;
mod runner;
pub mod schema;

use anyhow::Context;
use repobox_orm::{Backoff, Store, StoreConfig, TlsConfig};

use crate::cli::{Cli, Command};
use crate::redact;

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema(args) = &cli.command {
        return schema::schema(args, cli.json);
    }
    let tls = tls_of(&cli)?;
    let json = cli.json;
    if let Command::Demo(args) = &cli.command {
        return demo::demo(cli.redis_url.as_deref(), tls, args, json).await;
    }
    let url = cli
        .redis_url
        .clone()
        .unwrap_or_else(|| repobox_orm::DEFAULT_URL.to_owned());
    // The web UI's pages never write (a GET has no side effect, and
    // `--read-only` means it): its reads leave index repairs to writers.
    let repair_on_read = !matches!(cli.command, Command::Web(_));
    let store = store_for(&url, tls, repair_on_read)?;
    let result = match cli.command {
        Command::Demo(_) | Command::Schema(_) => Ok(()),
        Command::Runner(args) => runner::runner(&store, *args, json).await,
        Command::Jobs(cmd) => jobs::jobs(&store, cmd, json).await,
        Command::Queue(cmd) => queue::queue(&store, cmd, json).await,
        Command::Index(args) => index::index(&store, args, json).await,
        Command::Migrate(cmd) => migrate::migrate(&store, cmd, json).await,
        Command::Web(args) => crate::web::web(&store, args, &url).await,
    };
    store.close().await;
    result.map_err(|e| with_reach(e, &url))
}

/// The certificates that `--ca-file`, `--client-cert` and `--client-key` (or
/// their environment variables) name, if any.
fn tls_of(cli: &Cli) -> anyhow::Result<Option<TlsConfig>> {
    if cli.ca_file.is_none() && cli.client_cert.is_none() {
        return Ok(None);
    }
    let mut tls = TlsConfig::default();
    if let Some(ca) = &cli.ca_file {
        tls = tls.ca_file(ca)?;
    }
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        tls = tls.client_files(cert, key)?;
    }
    Ok(Some(tls))
}

/// The store the commands use: a few connection attempts, then the error.
fn store_for(url: &str, tls: Option<TlsConfig>, repair_on_read: bool) -> anyhow::Result<Store> {
    let mut config = StoreConfig::default()
        .backoff(Backoff::default().max_attempts(Some(3)))
        .repair_on_read(repair_on_read);
    if let Some(tls) = tls {
        config = config.tls(tls);
    }
    Store::with_config(url, config).with_context(|| format!("invalid Redis URL {}", redact::url(url)))
}

/// Says which Redis could not be reached, when that is what went wrong.
fn with_reach(e: anyhow::Error, url: &str) -> anyhow::Error {
    if is_unreachable(&e) {
        e.context(format!("cannot reach Redis at {}", redact::url(url)))
    } else {
        e
    }
}

/// Whether what went wrong is that Redis could not be reached (refused,
/// reset, timed out).
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<repobox_orm::Error>()
            .is_some_and(repobox_orm::Error::is_unreachable)
            || c.downcast_ref::<repobox_models::Error>()
                .and_then(repobox_models::Error::orm)
                .is_some_and(repobox_orm::Error::is_unreachable)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
