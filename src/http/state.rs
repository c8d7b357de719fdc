//! The state the handlers share.

use super::metrics::Metrics;
use crate::access::{Auth, LiveTokens};
use crate::app::Ledger;
use crate::audit::AccessLog;
use crate::projection::Engine;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Command handling (and, through it, the store).
    pub ledger: Arc<Ledger>,
    /// The projection engine.
    pub engine: Arc<Engine>,
    /// Set to `true` when the server stops: live streams end so that the graceful shutdown
    /// does not wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The tokens, kept in step with the token file; `None`: no authentication (loopback
    /// only).
    pub auth: Option<Arc<LiveTokens>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The relay's progress, when `serve` runs one.
    pub relay: Option<crate::support::progress::Progress>,
    /// The ledger's signing key: `/v1/audit/digest` is signed with it.
    pub signing: Option<Arc<crate::audit::LedgerKey>>,
    /// The newest checkpoint the server's checkpointer signed and had cosigned.
    pub checkpoints: Option<Arc<crate::audit::LatestCheckpoint>>,
    /// The log of person-level reads. Without it (and without the ledger's key store) reads
    /// show person refs only as stored (sealed).
    pub access_log: Option<Arc<AccessLog>>,
    /// The live clients (SSE): their head notification and their limit.
    pub live: Arc<super::live_hub::LiveHub>,
    /// What the server's background parts (relay, digests, projection follower) say of
    /// themselves: `/readyz` is not ready while one is not running.
    pub health: crate::support::health::Health,
}

impl AppState {
    /// State for a server without tokens that is never asked to stop (tests, embedding).
    pub fn new(ledger: Arc<Ledger>, engine: Arc<Engine>) -> AppState {
        // The sender is dropped at once: the receiver keeps reading `false`.
        let (_never, stopping) = tokio::sync::watch::channel(false);
        // The ledger's access log (where its refusals about known people go) records the
        // reads too: one log of every disclosure.
        let access_log = ledger.access_log().cloned();
        AppState {
            ledger,
            engine,
            stopping,
            auth: None,
            metrics: Arc::new(Metrics::default()),
            relay: None,
            signing: None,
            checkpoints: None,
            access_log,
            live: Arc::new(super::live_hub::LiveHub::new(
                super::live_hub::DEFAULT_MAX_LIVE,
            )),
            health: Default::default(),
        }
    }

    /// Reads the background parts' health (`/readyz`, `/metrics`).
    pub fn with_health(mut self, health: crate::support::health::Health) -> AppState {
        self.health = health;
        self
    }

    /// Admits at most `limit` live (SSE) clients at once; one more is answered 503 with
    /// `Retry-After`.
    pub fn with_live_limit(mut self, limit: usize) -> AppState {
        self.live = Arc::new(super::live_hub::LiveHub::new(limit));
        self
    }

    /// Reveals person refs to the roles that read events, recording each such read here (a
    /// ledger with an access log of its own gives it at `new`).
    pub fn with_access_log(mut self, log: AccessLog) -> AppState {
        self.access_log = Some(Arc::new(log));
        self
    }

    /// Signs `/v1/audit/digest` with the ledger's key.
    pub fn with_signing_key(mut self, key: crate::audit::LedgerKey) -> AppState {
        self.signing = Some(Arc::new(key));
        self
    }

    /// Requires a token on every API request.
    pub fn with_auth(self, auth: Auth) -> AppState {
        self.with_live_tokens(Arc::new(LiveTokens::fixed(auth)))
    }

    /// Requires a token on every API request, checked against the token file as it is now
    /// (the caller reloads it: `serve` on change and on SIGHUP).
    pub fn with_live_tokens(mut self, tokens: Arc<LiveTokens>) -> AppState {
        self.auth = Some(tokens);
        self
    }

    /// Live streams end when `stopping` turns `true`.
    pub fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> AppState {
        self.stopping = stopping;
        self
    }

    /// Reports the relay's lag in `/metrics`.
    pub fn with_relay(mut self, progress: crate::support::progress::Progress) -> AppState {
        self.relay = Some(progress);
        self
    }

    /// The ledger's read side (its log and projections).
    pub(super) fn reader(&self) -> crate::app::Reader {
        crate::app::Reader::new(&self.ledger, self.engine.clone())
    }
}
