//! The bus: publishing the log to NATS JetStream (the relay) and the CloudEvents mapping.
//! It decides nothing: it carries committed events, in order, exactly once.

pub mod cloudevents;
mod digests;
mod relay;
mod source;

pub use digests::{publish_digests, DigestOptions, DIGEST_STREAM, DIGEST_SUBJECT};
pub use relay::{ledger_source, relay, Progress, RelayOptions, RelayReport, STREAM};
pub use source::JetStreamSource;

/// Errors of the bus. Each says how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS could not be reached or refused a request. The relay retries these by itself,
    /// with backoff; a caller that gave up can run it again: it resumes where the stream ends.
    #[error("NATS: {0}")]
    Nats(String),
    /// The stream holds something the relay did not publish for this ledger (another ledger's
    /// events, or messages from another publisher). Stop: point --nats at the right server or
    /// give this ledger its own stream.
    #[error("the JetStream stream does not match this ledger: {0}")]
    Mismatch(String),
    /// The server refused one of the relay's messages for a reason of its own (a limit of the
    /// stream: messages, bytes, message size; storage full). The relay retries with backoff
    /// and says so once per reason; fix the stream (`nats stream edit LEDGER_EVENTS`) or the
    /// server's storage.
    #[error("NATS refused a message: {0}")]
    Refused(String),
    /// The `--nats` value is not a server URL. Fix the flag; retrying cannot help.
    #[error("--nats {0}")]
    BadUrl(String),
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Parses a `--nats` value: one URL or several separated by commas (`nats://a:4222,nats://b:4222`),
/// as a client of a cluster gives the nodes it may reach first.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            // `nats:/host:port` (one slash) parses as a URL without a host, which the client
            // would quietly take for localhost:4222.
            if let Some((scheme, rest)) = u.split_once(':') {
                if scheme.chars().all(|c| c.is_ascii_alphabetic())
                    && rest.starts_with('/')
                    && !rest.starts_with("//")
                {
                    return Err(BusError::BadUrl(format!(
                        "{u:?} is not a NATS server URL (a scheme takes two slashes): give nats://HOST:PORT, several separated by commas"
                    )));
                }
            }
            u.parse::<async_nats::ServerAddr>().map_err(|e| {
                BusError::BadUrl(format!(
                    "{u:?} is not a NATS server URL ({e}): give nats://HOST:PORT, several separated by commas"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(BusError::BadUrl(
            "is empty: give nats://HOST:PORT, several separated by commas".into(),
        ));
    }
    Ok(addrs)
}

impl BusError {
    pub(crate) fn nats(e: impl std::fmt::Display) -> BusError {
        BusError::Nats(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_before_any_connection() {
        for good in [
            "nats://127.0.0.1:4222",
            "127.0.0.1:4222",
            "nats://a:1, nats://b:2",
            "tls://h:4222",
        ] {
            assert!(server_addrs(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("nats:/127.0.0.1:4222", "a scheme takes two slashes"),
            ("", "is empty"),
            (" , ", "is empty"),
            ("nats://a:b:c", "is not a NATS server URL"),
        ] {
            let err = server_addrs(bad).unwrap_err().to_string();
            assert!(
                err.contains(says) && err.contains("nats://HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }
}
