//! The bus: publishing the log to NATS JetStream (the relay) and the CloudEvents mapping.
//! It decides nothing: it carries committed events, in order, exactly once.

mod checkpoints;
mod digests;
mod relay;
mod source;
pub mod witnesses;

pub use crate::support::progress::Progress;

use crate::support::cause::Cause;
pub use checkpoints::{
    publish_checkpoints, CheckpointOptions, CHECKPOINT_EVERY, CHECKPOINT_STREAM, CHECKPOINT_SUBJECT,
};
pub use digests::{publish_digests, DigestOptions, DIGEST_STREAM, DIGEST_SUBJECT};
pub use relay::{delete_stream, ledger_source, relay, RelayOptions, RelayReport, STREAM};
pub use source::JetStreamSource;

/// Errors of the bus. Each says how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS could not be reached or refused a request. The relay retries these by itself,
    /// with backoff; a caller that gave up can run it again: it resumes where the stream ends.
    #[error("NATS: {0}")]
    Nats(Cause),
    /// The stream holds something the relay did not publish for this ledger (another ledger's
    /// events, or messages from another publisher). Stop: point --nats at the right server or
    /// give this ledger its own stream.
    #[error("the JetStream stream does not match this ledger: {0}")]
    Mismatch(String),
    /// The server refused one of the relay's messages for a reason of its own (a limit of the
    /// stream: messages, bytes, message size; storage full). The relay retries with backoff
    /// and says so once per reason; raise the stream's limits (with the NATS tools of the server's operator) or
    /// free the server's storage.
    #[error("NATS refused a message: {0}")]
    Refused(String),
    /// NATS identity or TLS settings that do not go together or do not read: fix the flags.
    #[error("{0}")]
    Settings(String),
    /// The `--nats` value is not a server URL. Fix the flag; retrying cannot help.
    #[error("--nats {0}")]
    BadUrl(String),
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<crate::nats::NatsError> for BusError {
    fn from(e: crate::nats::NatsError) -> BusError {
        match e {
            crate::nats::NatsError::BadUrl(m) => BusError::BadUrl(m),
            crate::nats::NatsError::Settings(m) => BusError::Settings(m),
            crate::nats::NatsError::Unavailable(c) | crate::nats::NatsError::Corrupt(c) => {
                BusError::Nats(c)
            }
        }
    }
}

impl BusError {
    /// NATS failed with the client's error `e`, kept as the cause.
    pub(crate) fn nats(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
        BusError::Nats(Cause::with_source(e.to_string(), e))
    }

    /// NATS failed with no client error behind it (a timeout, a subscription that ended).
    pub(crate) fn nats_because(message: String) -> BusError {
        BusError::Nats(message.into())
    }

    /// The error behind this one, when NATS or the store gave one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use std::error::Error as _;
        match self {
            BusError::Nats(c) => c.source(),
            BusError::Store(e) => e.cause(),
            BusError::Mismatch(_)
            | BusError::Refused(_)
            | BusError::BadUrl(_)
            | BusError::Settings(_) => None,
        }
    }
}
