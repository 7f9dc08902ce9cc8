//! Where a [`Store`](super::Store) connects: one server, or a Redis Cluster
//! reached through some of its nodes.

use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::error::{Error, Result};

/// One server, or the seed nodes of a Redis Cluster (any reachable node
/// tells the client the rest of the cluster).
#[derive(Debug, Clone)]
#[cfg_attr(
    feature = "tls",
    expect(clippy::large_enum_variant, reason = "made once per store, never stored in bulk")
)]
pub enum Endpoint {
    /// A single server (`redis://`, `rediss://`, `unix://`).
    Server(ConnectionInfo),
    /// A cluster (`redis+cluster://host:port,host:port`, `rediss+cluster://`).
    Cluster(Vec<ConnectionInfo>),
}

/// What a [`Store`](super::Store) can be opened on: a URL (`&str`, `String`),
/// a redis-rs [`ConnectionInfo`], or an [`Endpoint`].
///
/// A URL whose scheme is `redis+cluster` or `rediss+cluster` names a cluster
/// by a comma-separated list of nodes, all with the same credentials:
/// `redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7000`.
pub trait IntoEndpoint {
    /// The endpoint, or why the address is not one (never echoing a password).
    fn into_endpoint(self) -> Result<Endpoint>;
}

impl IntoEndpoint for Endpoint {
    fn into_endpoint(self) -> Result<Endpoint> {
        Ok(self)
    }
}

impl IntoEndpoint for ConnectionInfo {
    fn into_endpoint(self) -> Result<Endpoint> {
        Ok(Endpoint::Server(self))
    }
}

impl IntoEndpoint for &str {
    fn into_endpoint(self) -> Result<Endpoint> {
        refuse_without_features(self, cfg!(feature = "tls"), cfg!(feature = "cluster"))?;
        match cluster_nodes(self)? {
            Some(nodes) => Ok(Endpoint::Cluster(nodes)),
            None => Ok(Endpoint::Server(self.into_connection_info()?)),
        }
    }
}

impl IntoEndpoint for &String {
    fn into_endpoint(self) -> Result<Endpoint> {
        self.as_str().into_endpoint()
    }
}

impl IntoEndpoint for String {
    fn into_endpoint(self) -> Result<Endpoint> {
        self.as_str().into_endpoint()
    }
}

/// Refuses, by its scheme alone (the URL may hold a password), a URL this
/// build cannot serve: TLS without the `tls` feature, a cluster without the
/// `cluster` feature (`tls` and `cluster`: whether the build has them).
fn refuse_without_features(url: &str, tls: bool, cluster: bool) -> Result<()> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let needs = |feature: &str, what: &str| Error::InvalidArgument {
        name: "Redis URL",
        reason: format!("a `{scheme}://` URL ({what}) needs repobox-orm's `{feature}` feature"),
    };
    if !tls && matches!(scheme, "rediss" | "rediss+cluster" | "valkeys") {
        return Err(needs("tls", "TLS"));
    }
    if !cluster && matches!(scheme, "redis+cluster" | "rediss+cluster") {
        return Err(needs("cluster", "a Redis Cluster"));
    }
    Ok(())
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name: "cluster URL",
        reason: reason.into(),
    }
}

/// The nodes of a `redis+cluster://` or `rediss+cluster://` URL; `None` for
/// any other scheme.
fn cluster_nodes(url: &str) -> Result<Option<Vec<ConnectionInfo>>> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("redis+cluster", rest)) => ("redis", rest),
        Some(("rediss+cluster", rest)) => ("rediss", rest),
        _ => return Ok(None),
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    if !matches!(path, "" | "/" | "/0") {
        return Err(invalid("a cluster has only database 0"));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    let mut nodes = Vec::new();
    for (i, host) in hosts.split(',').enumerate() {
        if host.is_empty() {
            return Err(invalid(format!("node {} is empty", i + 1)));
        }
        let mut node = format!("{scheme}://");
        if let Some(user) = userinfo {
            node.push_str(user);
            node.push('@');
        }
        node.push_str(host);
        node.push('/');
        if !query.is_empty() {
            node.push('?');
            node.push_str(query);
        }
        // The node text may hold the password: the error names the node only.
        let info = node
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid(format!("node {} is not a host:port ({:?})", i + 1, e.kind())))?;
        nodes.push(info);
    }
    Ok(Some(nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_a_build_cannot_serve_are_refused_by_scheme_without_their_password() {
        let refused = |url: &str, tls: bool, cluster: bool| match refuse_without_features(url, tls, cluster) {
            Err(e) => e.to_string(),
            Ok(()) => String::new(),
        };
        let tls = refused("rediss://:hunter2@h:6380", false, true);
        assert!(tls.contains("`tls` feature") && !tls.contains("hunter2"), "{tls}");
        let cluster = refused("redis+cluster://:hunter2@a:1,b:2", true, false);
        assert!(
            cluster.contains("`cluster` feature") && !cluster.contains("hunter2"),
            "{cluster}"
        );
        assert!(refused("rediss+cluster://a:1", true, false).contains("`cluster` feature"));
        assert!(refused("rediss+cluster://a:1", false, true).contains("`tls` feature"));
        assert_eq!(refused("redis://h:6379", false, false), "");
        assert_eq!(refused("rediss://h:6380", true, false), "");
        assert_eq!(refused("redis+cluster://a:1", false, true), "");
    }

    fn nodes(url: &str) -> Vec<String> {
        match url.into_endpoint().unwrap() {
            Endpoint::Cluster(nodes) => nodes.iter().map(|n| n.addr().to_string()).collect(),
            Endpoint::Server(info) => panic!("not a cluster: {info:?}"),
        }
    }

    #[test]
    fn cluster_urls_list_their_nodes() {
        assert_eq!(
            nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
            ["127.0.0.1:7000", "127.0.0.1:7001"]
        );
        assert_eq!(nodes("redis+cluster://h:1/"), ["h:1"]);
        let Endpoint::Cluster(secret) = "rediss+cluster://app:s3cr%40t@a:1,b:2".into_endpoint().unwrap() else {
            panic!()
        };
        assert_eq!(secret.len(), 2);
        for node in &secret {
            assert_eq!(node.redis_settings().password(), Some("s3cr@t"));
            assert_eq!(node.redis_settings().username(), Some("app"));
            assert!(matches!(node.addr(), redis::ConnectionAddr::TcpTls { .. }));
        }
        assert!(matches!(
            "redis://127.0.0.1:6379".into_endpoint().unwrap(),
            Endpoint::Server(_)
        ));
    }

    #[test]
    fn bad_cluster_urls_are_refused_without_their_password() {
        for url in [
            "redis+cluster://:hunter2@a:1,,b:2",
            "redis+cluster://:hunter2@a:1/3",
            "redis+cluster://:hunter2@a:notaport",
        ] {
            let err = url.into_endpoint().unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("cluster URL"), "{err}");
        }
    }
}
