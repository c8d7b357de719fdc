#![recursion_limit = "256"]
//! campaign-ledger: an event-sourced, hash-chained ledger for a vaccination campaign.
//!
//! Layers, each depending only on those below it (the command line is the binary's, not part
//! of this library):
//!
//! | layer | owns |
//! |---|---|
//! | [`http`], [`bus`] | the HTTP API and the dashboard; the relay to NATS, the stream read as a log, periodic digests |
//! | [`app`], [`projection`], [`audit`], [`access`] | command handling and the read side; projections; tamper evidence, export, the access log; tokens and roles |
//! | [`store`], [`privacy`], [`nats`] | the log (`EventStore`, SQLite and JetStream); person keys and sealing; the NATS client side |
//! | [`envelope`] | the stored envelope, the hash chain, the CloudEvents codec |
//! | [`domain`], [`support`] | the pure rules and facts; small file helpers |
//!
//! The usual entry points are re-exported here. The modules stay public because the binary
//! (the command line) and the integration tests in `tests/` reach them by path; inside a
//! module, what no other module needs is private or `pub(super)`, and what only this crate
//! needs is `pub(crate)`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod app;
pub mod audit;
pub mod bus;
pub mod domain;
pub mod envelope;
pub mod http;
pub mod nats;
pub mod privacy;
pub mod projection;
pub mod scenario;
pub mod store;
pub mod support;
pub mod witness;

pub use app::{AppError, Ledger, Outcome, Reader};
pub use domain::{Command, CommandEnvelope, Event, Policy, Reference, Rejection};
pub use envelope::{Actor, RecordedEvent};
pub use projection::{load_definitions, Engine, Report};
pub use store::{open as open_store, EventStore, StoreError};
