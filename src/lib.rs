//! campaign-ledger: an event-sourced, hash-chained ledger for a vaccination campaign.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod domain;
pub mod store;
pub mod app;
pub mod projection;
