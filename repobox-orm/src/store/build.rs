//! The redis-rs clients a [`Store`](super::Store) is built on, from its
//! endpoint and its config (TLS certificates, the connect timeout).

use super::config::StoreConfig;
#[cfg(feature = "cluster")]
use crate::error::Error;
use crate::error::Result;

pub(super) fn single_client(info: redis::ConnectionInfo, config: &StoreConfig) -> Result<redis::Client> {
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let info = info.set_redis_settings(redis);
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return Ok(redis::Client::build_with_tls(info, tls.certificates())?);
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    Ok(redis::Client::open(info)?)
}

#[cfg(feature = "cluster")]
pub(super) fn cluster_client(
    nodes: Vec<redis::ConnectionInfo>,
    config: &StoreConfig,
) -> Result<redis::cluster::ClusterClient> {
    if nodes.is_empty() {
        return Err(Error::InvalidArgument {
            name: "cluster nodes",
            reason: "no node to start from".into(),
        });
    }
    // Redirects are followed by the store, which knows whether a command ran;
    // redis-rs would also re-send a write whose connection dropped.
    let builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .retries(0)
        .connection_timeout(config.connect_timeout);
    #[cfg(feature = "tls")]
    let builder = match &config.tls {
        Some(tls) => builder.certs(tls.certificates()),
        None => builder,
    };
    Ok(builder.build()?)
}
