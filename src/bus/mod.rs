//! The bus: publishing the log to NATS JetStream (the relay) and the CloudEvents mapping.
//! It decides nothing: it carries committed events, in order, exactly once.

pub mod cloudevents;
mod relay;
mod source;

pub use relay::{relay, RelayOptions, RelayReport, STREAM};
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
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl BusError {
    pub(crate) fn nats(e: impl std::fmt::Display) -> BusError {
        BusError::Nats(e.to_string())
    }
}
