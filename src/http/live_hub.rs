//! What the live clients share: the head notification (started with the first client), the
//! limit on clients, and the bounds that keep a slow client from costing the others.

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Live clients served at once unless `serve --max-live-clients` says otherwise.
pub const DEFAULT_MAX_LIVE: usize = 2000;
/// How long an event may wait for a client to take it before that client's stream ends.
pub const SLOW_CLIENT: Duration = Duration::from_secs(30);
/// What `Retry-After` tells a client refused for the limit, in seconds.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// The live clients' shared parts: the head notification (started with the first client) and
/// the limit.
pub struct LiveHub {
    pub(super) head: OnceLock<watch::Receiver<u64>>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) limit: usize,
}

impl LiveHub {
    /// A hub admitting at most `limit` live clients at once.
    pub fn new(limit: usize) -> LiveHub {
        LiveHub {
            head: OnceLock::new(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Live clients connected now.
    pub fn connected(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The most live clients admitted at once.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
