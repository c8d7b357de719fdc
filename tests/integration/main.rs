//! The integration tests, one binary (one link on a 2-core machine instead of one per file):
//! each module is one area, run against real processes (the binary, nats-server, Chromium).

mod support;

mod backup;
mod checkpoints;
mod cli;
mod consumers;
mod crash;
mod dashboard_e2e;
mod digest;
mod disclosure;
mod disk_full;
mod erasure;
mod export;
mod findings;
mod fuzz_inputs;
mod http;
mod http_audit;
mod http_roles;
mod https;
mod ledger_creation;
mod live;
mod migration;
mod nats_log;
mod nats_projections;
mod nats_relay;
mod nats_secured;
mod persons;
mod probes;
mod proofs;
mod properties;
mod scenario;
mod schema_evolution;
mod schemathesis;
mod serve_faults;
mod serve_process;
mod store_contract;
mod store_contract_nats;
mod strict_inputs;
mod tamper;
mod token_lifecycle;
mod vectors;
mod verifier_cases;
mod witnesses;
