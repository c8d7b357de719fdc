//! campaign-ledger: an event-sourced, hash-chained ledger for a vaccination campaign.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod audit;
pub mod cli;
pub mod domain;
pub mod projection;
pub mod scenario;
pub mod store;

/// Logs to standard error, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// With `LEDGER_REPORT_RSS=1`, writes the process's peak resident memory to standard error
/// (used by the benchmarks).
pub fn report_peak_rss() {
    if std::env::var_os("LEDGER_REPORT_RSS").is_some() {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                tracing::info!("{line}");
                eprintln!("peak RSS {}", line.trim_start_matches("VmHWM:").trim());
            }
        }
    }
}
