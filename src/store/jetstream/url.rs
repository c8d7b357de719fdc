//! The NATS log's store URL: its servers and options.

use super::StoreError;

/// What a NATS log's URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LogUrl {
    /// The servers, comma-separated.
    pub servers: String,
    /// The replicas asked for.
    pub replicas: Option<usize>,
    /// A group of single-event commands is one atomic batch (`publish=batch`, the default)
    /// rather than one pipelined publish per event (`publish=each`).
    pub batch: bool,
    /// The JetStream stream that is the log (`stream=NAME`; default `LEDGER_LOG`).
    pub stream: String,
}

/// Parses `nats://HOST:PORT[,nats://HOST:PORT…][?replicas=N][&publish=batch|each][&stream=NAME]`.
pub(super) fn parse_url(url: &str) -> Result<LogUrl, StoreError> {
    let (servers, query) = match url.split_once('?') {
        Some((s, q)) => (s, Some(q)),
        None => (url, None),
    };
    let mut replicas = None;
    let mut batch = true;
    let mut stream = super::LOG_STREAM.to_string();
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
            Some(("stream", name)) => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    return Err(StoreError::Invalid(format!(
                        "The store URL {url:?} names the stream {name:?}; a stream name is 1 to 64 capital letters, digits and '_' (for example LEDGER_LOG_V2)."
                    ).into()));
                }
                stream = name.to_string();
            }
            _ => {
                return Err(StoreError::Invalid(format!(
                    "The store URL {url:?} has the option {pair:?}, which is not understood; the options are replicas=N, publish=batch|each and stream=NAME."
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
    Ok(LogUrl {
        servers: servers.to_string(),
        replicas,
        batch,
        stream,
    })
}
