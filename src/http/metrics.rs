//! `/metrics`: Prometheus text exposition (format 0.0.4), kept by hand (a few atomics):
//! commands by outcome, the append latency histogram, projection lag and relay lag.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Outcomes counted.
pub const OUTCOMES: [&str; 6] = [
    "accepted",
    "duplicate",
    "rejected",
    "invalid",
    "forbidden",
    "error",
];

/// Counters shared by the handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    outcomes: [AtomicU64; 6],
    buckets: [AtomicU64; 12],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    requests: AtomicU64,
}

impl Metrics {
    /// Counts one command's outcome (one of [`OUTCOMES`]).
    pub fn outcome(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long an accepted command took from decision to durable append.
    pub fn append_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts one HTTP request to the API.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text. `projections` is (name, last position folded in); `relay` the
    /// last position the NATS stream holds, when the relay runs.
    pub fn render(&self, head: u64, projections: &[(String, u64)], relay: Option<u64>) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP ledger_commands_total Commands handled through the HTTP API, by outcome."
        );
        let _ = writeln!(o, "# TYPE ledger_commands_total counter");
        for (i, name) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                o,
                "ledger_commands_total{{outcome=\"{name}\"}} {}",
                self.outcomes[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP ledger_append_duration_seconds Time from receiving an accepted command to its durable acknowledgement.");
        let _ = writeln!(o, "# TYPE ledger_append_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "ledger_append_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "ledger_append_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "ledger_append_duration_seconds_sum {}",
            self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(o, "ledger_append_duration_seconds_count {count}");
        let _ = writeln!(o, "# HELP ledger_http_requests_total HTTP requests served.");
        let _ = writeln!(o, "# TYPE ledger_http_requests_total counter");
        let _ = writeln!(
            o,
            "ledger_http_requests_total {}",
            self.requests.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP ledger_log_head_position The last position in the log."
        );
        let _ = writeln!(o, "# TYPE ledger_log_head_position gauge");
        let _ = writeln!(o, "ledger_log_head_position {head}");
        let _ = writeln!(
            o,
            "# HELP ledger_projection_lag_events Events in the log not yet folded into the projection."
        );
        let _ = writeln!(o, "# TYPE ledger_projection_lag_events gauge");
        for (name, at) in projections {
            let _ = writeln!(
                o,
                "ledger_projection_lag_events{{projection=\"{name}\"}} {}",
                head.saturating_sub(*at)
            );
        }
        if let Some(r) = relay {
            let _ = writeln!(
                o,
                "# HELP ledger_relay_lag_events Events in the log not yet stored in the NATS stream LEDGER_EVENTS."
            );
            let _ = writeln!(o, "# TYPE ledger_relay_lag_events gauge");
            let _ = writeln!(o, "ledger_relay_lag_events {}", head.saturating_sub(r));
        }
        o
    }

    /// The background parts' lines: `ledger_component_up{component}` (1 running, 0 starting,
    /// failing or stopped) and `ledger_component_errors_total{component}`.
    pub fn render_parts(
        parts: &std::collections::BTreeMap<&'static str, crate::support::health::Part>,
    ) -> String {
        use crate::support::health::State;
        let mut o = String::new();
        if parts.is_empty() {
            return o;
        }
        let _ = writeln!(o, "# HELP ledger_component_up Whether a background part of the server (relay, digests, projections) is running (1) or starting, failing or stopped (0).");
        let _ = writeln!(o, "# TYPE ledger_component_up gauge");
        for (name, p) in parts {
            let up = u8::from(p.state == State::Running);
            let _ = writeln!(o, "ledger_component_up{{component=\"{name}\"}} {up}");
        }
        let _ = writeln!(o, "# HELP ledger_component_errors_total Errors a background part of the server met (each retry that failed counts).");
        let _ = writeln!(o, "# TYPE ledger_component_errors_total counter");
        for (name, p) in parts {
            let _ = writeln!(
                o,
                "ledger_component_errors_total{{component=\"{name}\"}} {}",
                p.errors
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        m.append_latency(Duration::from_micros(300));
        m.append_latency(Duration::from_millis(3));
        m.append_latency(Duration::from_secs(10));
        m.outcome("accepted");
        m.outcome("rejected");
        m.outcome("rejected");
        let text = m.render(10, &[("doses_by_day".into(), 7)], Some(10));
        for line in [
            "ledger_append_duration_seconds_bucket{le=\"0.0005\"} 1",
            "ledger_append_duration_seconds_bucket{le=\"0.005\"} 2",
            "ledger_append_duration_seconds_bucket{le=\"2.5\"} 2",
            "ledger_append_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ledger_append_duration_seconds_count 3",
            "ledger_commands_total{outcome=\"rejected\"} 2",
            "ledger_projection_lag_events{projection=\"doses_by_day\"} 3",
            "ledger_relay_lag_events 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let health = crate::support::health::Health::default();
        health.running("projections");
        health.failing("relay", "connection refused");
        let text = Metrics::render_parts(&health.parts());
        for line in [
            "ledger_component_up{component=\"projections\"} 1",
            "ledger_component_up{component=\"relay\"} 0",
            "ledger_component_errors_total{component=\"relay\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
