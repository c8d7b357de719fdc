//! The NATS client side shared by the JetStream store and the bus: server addresses, the
//! process's identity and TLS settings (`security`), and the positioned reads of a stream
//! whose sequence is the ledger position. Its own error type; callers map it into theirs,
//! keeping it as the cause.

pub mod positioned;
pub mod security;

use crate::support::cause::Cause;

/// Errors of the NATS client side. Each says how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A server URL that is not one. Fix the flag; retrying cannot help.
    #[error("--nats {0}")]
    BadUrl(String),
    /// NATS identity or TLS settings that do not go together or whose files do not read. Fix
    /// the flags; retrying cannot help.
    #[error("{0}")]
    Settings(String),
    /// NATS could not be reached or refused a request. Retry later.
    #[error("{0}")]
    Unavailable(Cause),
    /// A message is not the event its position should hold. Stop and check the stream.
    #[error("{0}")]
    Corrupt(Cause),
}

impl NatsError {
    /// An unavailability caused by the client's error `e`, kept as the cause.
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> NatsError {
        NatsError::Unavailable(Cause::with_source(e.to_string(), e))
    }

    /// An unavailability with no error behind it (a timeout, a consumer that ended).
    pub fn unavailable_because(message: impl Into<String>) -> NatsError {
        NatsError::Unavailable(Cause::from(message.into()))
    }

    /// What caused this error, when the client gave one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use std::error::Error as _;
        match self {
            NatsError::Unavailable(c) | NatsError::Corrupt(c) => c.source(),
            NatsError::BadUrl(_) | NatsError::Settings(_) => None,
        }
    }
}

/// Parses a `--nats` value: one URL or several separated by commas (`nats://a:4222,nats://b:4222`),
/// as a client of a cluster gives the nodes it may reach first.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, NatsError> {
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
                    return Err(NatsError::BadUrl(format!(
                        "{u:?} is not a NATS server URL (a scheme takes two slashes): give nats://HOST:PORT, several separated by commas"
                    )));
                }
            }
            u.parse::<async_nats::ServerAddr>().map_err(|e| {
                NatsError::BadUrl(format!(
                    "{u:?} is not a NATS server URL ({e}): give nats://HOST:PORT, several separated by commas"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(NatsError::BadUrl(
            "is empty: give nats://HOST:PORT, several separated by commas".into(),
        ));
    }
    Ok(addrs)
}

/// Hands `item` to a thread that reads `tx`'s receiver, from a task of a runtime: waits while
/// the channel is full without holding the runtime's thread (a blocking send there would stall
/// every other task of the runtime, the log's writer among them, behind one slow reader).
/// Returns false when the reader is gone.
pub async fn hand_over<T>(tx: &std::sync::mpsc::SyncSender<T>, mut item: T) -> bool {
    use std::sync::mpsc::TrySendError;
    let mut wait = std::time::Duration::from_micros(100);
    loop {
        match tx.try_send(item) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_millis(20));
            }
        }
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
