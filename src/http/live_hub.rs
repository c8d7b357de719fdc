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
    /// The newest snapshot of each live projection, as sent: one report and one JSON text
    /// per (projection, as_of, reader's scope) and position, shared by every client that
    /// follows it (a thousand dashboards cost one read per move of the head, not a thousand).
    snapshots: std::sync::Mutex<std::collections::HashMap<SnapshotKey, (u64, Arc<str>)>>,
    /// Held while a client reads a new snapshot, so that the others waiting find it kept.
    pub(super) reading: tokio::sync::Mutex<()>,
}

/// What a live projection's snapshot depends on: its name, `as_of`, and the reader's scope.
pub(super) type SnapshotKey = (String, Option<chrono::NaiveDate>, String);

impl LiveHub {
    /// A hub admitting at most `limit` live clients at once.
    pub fn new(limit: usize) -> LiveHub {
        LiveHub {
            head: OnceLock::new(),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            snapshots: std::sync::Mutex::new(std::collections::HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The newest snapshot kept for `key`: its position and JSON.
    pub(super) fn snapshot(&self, key: &SnapshotKey) -> Option<(u64, Arc<str>)> {
        let map = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    /// Keeps a snapshot for `key` unless a newer one is kept already.
    pub(super) fn keep_snapshot(&self, key: &SnapshotKey, position: u64, json: Arc<str>) {
        let mut map = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((p, _)) if *p >= position => {}
            _ => {
                map.insert(key.clone(), (position, json));
            }
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
