//! Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port...]`
//! URLs (`rediss+cluster://` over TLS) and the `redis` crate's cluster client
//! they give. Each command goes to the node of its keys' slot; a token's keys
//! share one (a hash tag), so the protocol's scripts run there.

use std::time::Duration;
use tokenwarden::{Error, Result};

/// The nodes of a cluster URL, as `redis://` (or `rediss://`) URLs with the
/// URL's credentials: some of them, the rest are discovered.
pub(crate) struct ClusterUrl {
    pub(crate) nodes: Vec<String>,
    pub(crate) tls: bool,
}

/// Reads a `redis+cluster://` URL, or says what is wrong with it (never
/// quoting its password).
pub(crate) fn parse(url: &str) -> std::result::Result<ClusterUrl, String> {
    let (tls, rest) = crate::scheme::split(url, "cluster", "Cluster")?;
    let rest = rest.trim_end_matches('/');
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    if hosts.is_empty() || hosts.contains('/') {
        return Err("give redis+cluster://[user:password@]host:port,host:port (a cluster has no database number)".into());
    }
    let scheme = if tls { "rediss" } else { "redis" };
    let nodes = hosts
        .split(',')
        .map(|host| match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(format!("{scheme}://{credentials}{host}"))
            }
            _ => Err(format!("`{host}` is not host:port")),
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(ClusterUrl { nodes, tls })
}

/// A connection to the cluster of `url`, answering within `timeout`; its
/// connections wait `answers` for an answer. Also the client of its first node
/// (for pub/sub, which reaches every node of a cluster), and a second
/// connection (for the writes that wait for replicas).
pub(crate) async fn connect(
    url: &ClusterUrl,
    certificates: Option<redis::TlsCertificates>,
    name: &str,
    timeout: Duration,
    answers: Duration,
) -> Result<(
    redis::Client,
    redis::cluster_async::ClusterConnection,
    redis::cluster_async::ClusterConnection,
)> {
    let invalid = |why: String| Error::config(format!("the Redis Cluster URL is not valid: {why}"));
    let mut builder = redis::cluster::ClusterClientBuilder::new(url.nodes.clone())
        .connection_timeout(timeout)
        .response_timeout(answers);
    let first = match certificates {
        Some(certificates) => {
            builder = builder.certs(certificates.clone());
            redis::Client::build_with_tls(url.nodes[0].as_str(), certificates)
        }
        None => redis::Client::open(url.nodes[0].as_str()),
    }
    .map_err(|e| invalid(e.to_string()))?;
    let client = builder.build().map_err(|e| invalid(e.to_string()))?;
    let hint = if url.tls {
        "; over TLS, check that the nodes' certificates are issued by a CA this client trusts (the platform's, or tls_ca) and valid for the names the cluster gives its nodes"
    } else {
        ""
    };
    let connect = || async {
        tokio::time::timeout(timeout, client.get_async_connection())
            .await
            .map_err(|_| {
                Error::store(
                    name,
                    format!("no connection to the cluster within {timeout:?}"),
                )
            })?
            .map_err(|e| Error::store(name, format!("could not connect to the cluster: {e}{hint}")))
    };
    Ok((first, connect().await?, connect().await?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn cluster_urls_name_nodes_with_their_credentials() {
        let url = parse("rediss+cluster://tw:p%40ss@10.0.0.1:7000,10.0.0.2:7001/").unwrap();
        assert!(url.tls);
        assert_eq!(
            url.nodes,
            [
                "rediss://tw:p%40ss@10.0.0.1:7000",
                "rediss://tw:p%40ss@10.0.0.2:7001"
            ]
        );
        assert!(!parse("redis+cluster://h:1").unwrap().tls);
        for bad in [
            "redis+cluster://",
            "redis+cluster://h:1/0",
            "redis+cluster://tw:SECRET@h",
        ] {
            let error = parse(bad).err().unwrap();
            assert!(!error.contains("SECRET"), "{error}");
        }
    }
}
