#![recursion_limit = "256"]
//! campaign-ledger: an event-sourced, hash-chained ledger for a vaccination campaign.
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
