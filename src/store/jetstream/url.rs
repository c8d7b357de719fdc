//! The NATS log's store URL: its servers and options.

use super::StoreError;

/// Parses `nats://HOST:PORT[,nats://HOST:PORT…][?replicas=N][&publish=batch|each]`: the
/// servers, the replicas asked for, and whether a group of single-event commands is one
/// atomic batch (`batch`, the default) or one pipelined publish per event (`each`).
pub(super) fn parse_url(url: &str) -> Result<(String, Option<usize>, bool), StoreError> {
    let (servers, query) = match url.split_once('?') {
        Some((s, q)) => (s, Some(q)),
        None => (url, None),
    };
    let mut replicas = None;
    let mut batch = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("publish", "batch")) => batch = true,
            Some(("publish", "each")) => batch = false,
            Some(("publish", other)) => {
                return Err(StoreError::Invalid(format!(
                    "The store URL {url:?} asks for publish={other:?}; give publish=batch (each group commit is one atomic batch: one write, one fsync; the default) or publish=each (one publish per event, pipelined: faster on a server that does not fsync every write)."
                ).into()))
            }
            Some(("replicas", n)) => match n.parse::<usize>() {
                Ok(n @ 1..=5) => replicas = Some(n),
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "The store URL {url:?} asks for {n:?} replicas; give a number from 1 to 5 (3 for a 3-node cluster)."
                    ).into()))
                }
            },
            _ => {
                return Err(StoreError::Invalid(format!(
                    "The store URL {url:?} has the option {pair:?}, which is not understood; the options are replicas=N and publish=batch|each."
                ).into()))
            }
        }
    }
    if servers
        .split(',')
        .any(|u| u.trim().trim_start_matches("nats://").is_empty())
    {
        return Err(StoreError::Invalid(format!(
            "The store URL {url:?} names no server; use nats://HOST:PORT, several separated by commas."
        ).into()));
    }
    crate::nats::server_addrs(servers).map_err(|e| {
        StoreError::Invalid(format!("The store URL {url:?} is not understood: {e}").into())
    })?;
    Ok((servers.to_string(), replicas, batch))
}
