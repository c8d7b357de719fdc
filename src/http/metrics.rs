//! `/metrics`, through the `prometheus-client` crate: HTTP requests and their latency by
//! matched route and status class, refused authentications by reason, commands by outcome, the
//! append latency; and, read at each scrape, the log's head, projection lag, relay lag, the
//! background parts' state and errors, and the age of the last signed digest.
//!
//! The crate writes the OpenMetrics text format; a scraper that does not ask for it (by
//! `Accept: application/openmetrics-text`) gets the Prometheus text format 0.0.4, the same
//! samples under the family names that format uses (see [`to_prometheus_text`]).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Upper bounds of the latency histograms, in seconds.
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    projection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The counters and histograms the handlers feed.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: Family<OutcomeLabel, Counter>,
    append: Histogram,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    refusals: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let commands = Family::<OutcomeLabel, Counter>::default();
        let append = latency_histogram();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let refusals = Family::<ReasonLabel, Counter>::default();
        // Every outcome and refusal reason is shown from the start, at 0: an alert on a rate
        // needs the series before the first event.
        for outcome in OUTCOMES {
            let _ = commands.get_or_create(&OutcomeLabel { outcome });
        }
        for reason in REFUSAL_REASONS {
            let _ = refusals.get_or_create(&ReasonLabel { reason });
        }
        let mut registry = Registry::default();
        registry.register(
            "ledger_commands",
            "Commands handled through the HTTP API, by outcome",
            commands.clone(),
        );
        registry.register(
            "ledger_append_duration_seconds",
            "Time from receiving an accepted command to its durable acknowledgement",
            append.clone(),
        );
        registry.register(
            "ledger_http_requests",
            "HTTP requests answered, by method, matched route (unmatched: any path no route takes) and status class",
            requests.clone(),
        );
        registry.register(
            "ledger_http_request_duration_seconds",
            "Time to answer an HTTP request (to its headers; a live stream counts until it starts), by method, matched route and status class",
            latency.clone(),
        );
        registry.register(
            "ledger_auth_refusals",
            "Requests refused before any work because of their token (HTTP 401), by reason",
            refusals.clone(),
        );
        Metrics {
            registry,
            commands,
            append,
            requests,
            latency,
            refusals,
        }
    }
}

/// Why a token can be refused: the `code` of the 401 answer.
pub const REFUSAL_REASONS: [&str; 6] = [
    "missing_token",
    "malformed_token",
    "unknown_token",
    "expired_token",
    "revoked_token",
    "rotated_token",
];

/// What a scrape reads at its time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The last position in the log.
    pub head: u64,
    /// Each projection's name and the last position folded into it.
    pub projections: Vec<(String, u64)>,
    /// The last position the NATS stream holds, when the relay runs.
    pub relay: Option<u64>,
    /// The background parts.
    pub parts: std::collections::BTreeMap<&'static str, crate::support::health::Part>,
}

impl Metrics {
    /// Counts one command's outcome (one of [`OUTCOMES`]).
    pub fn outcome(&self, outcome: &str) {
        if let Some(o) = OUTCOMES.iter().find(|o| **o == outcome) {
            self.commands
                .get_or_create(&OutcomeLabel { outcome: o })
                .inc();
        }
    }

    /// Records how long an accepted command took from decision to durable append.
    pub fn append_latency(&self, d: Duration) {
        self.append.observe(d.as_secs_f64());
    }

    /// Counts one answered HTTP request: its method, matched route, status and latency.
    pub fn request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status: match status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }

    /// Counts one refused authentication (one of [`REFUSAL_REASONS`]).
    pub fn refused(&self, reason: &str) {
        if let Some(r) = REFUSAL_REASONS.iter().find(|r| **r == reason) {
            self.refusals
                .get_or_create(&ReasonLabel { reason: r })
                .inc();
        }
    }

    /// The OpenMetrics text: what was counted, then what `now` reads.
    pub fn render(&self, now: &Snapshot) -> String {
        let mut scrape = Registry::default();
        let head = Gauge::<i64>::default();
        head.set(saturating_i64(now.head));
        scrape.register(
            "ledger_log_head_position",
            "The last position in the log",
            head,
        );
        let lag = Family::<NameLabel, Gauge>::default();
        for (name, at) in &now.projections {
            lag.get_or_create(&NameLabel {
                projection: name.clone(),
            })
            .set(saturating_i64(now.head.saturating_sub(*at)));
        }
        scrape.register(
            "ledger_projection_lag_events",
            "Events in the log not yet folded into the projection",
            lag,
        );
        if let Some(r) = now.relay {
            let relay = Gauge::<i64>::default();
            relay.set(saturating_i64(now.head.saturating_sub(r)));
            scrape.register(
                "ledger_relay_lag_events",
                "Events in the log not yet stored in the NATS stream LEDGER_EVENTS",
                relay,
            );
        }
        if !now.parts.is_empty() {
            let up = Family::<ComponentLabel, Gauge>::default();
            let errors = Family::<ComponentLabel, Counter>::default();
            for (name, p) in &now.parts {
                let label = ComponentLabel { component: name };
                up.get_or_create(&label)
                    .set(i64::from(p.state == crate::support::health::State::Running));
                errors.get_or_create(&label).inc_by(p.errors);
            }
            scrape.register(
                "ledger_component_up",
                "Whether a background part of the server (relay, digests, projections) is running (1) or starting, failing or stopped (0)",
                up,
            );
            scrape.register(
                "ledger_component_errors",
                "Errors a background part of the server met (each retry that failed counts)",
                errors,
            );
        }
        if let Some(done) = now.parts.get("digests").and_then(|p| p.last_done) {
            let age = Gauge::<f64, AtomicU64>::default();
            age.set(done.elapsed().unwrap_or_default().as_secs_f64());
            scrape.register(
                "ledger_digest_age_seconds",
                "Seconds since the server last had a signed digest of its whole log (a tick that finds no new event renews it)",
                age,
            );
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &scrape);
        let _ = encode_eof(&mut text);
        text
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The OpenMetrics text as Prometheus text format 0.0.4: a counter family `x` (samples
/// `x_total`) is declared as `x_total`, `# UNIT` lines and the `# EOF` marker are dropped. The
/// samples are the same.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(r) => out.push_str(&r),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
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
        m.request("GET", "/v1/events", 200, Duration::from_millis(2));
        m.request("GET", "/v1/events", 204, Duration::from_millis(1));
        m.request("POST", "unmatched", 404, Duration::from_micros(1));
        m.refused("revoked_token");
        let health = crate::support::health::Health::default();
        health.running("projections");
        health.failing("relay", "connection refused");
        health.done("digests");
        let text = m.render(&Snapshot {
            head: 10,
            projections: vec![("doses_by_day".into(), 7)],
            relay: Some(10),
            parts: health.parts(),
        });
        for line in [
            "ledger_append_duration_seconds_bucket{le=\"0.0005\"} 1",
            "ledger_append_duration_seconds_bucket{le=\"0.005\"} 2",
            "ledger_append_duration_seconds_bucket{le=\"2.5\"} 2",
            "ledger_append_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ledger_append_duration_seconds_count 3",
            "ledger_commands_total{outcome=\"rejected\"} 2",
            "ledger_commands_total{outcome=\"error\"} 0",
            "ledger_http_requests_total{method=\"GET\",route=\"/v1/events\",status=\"2xx\"} 2",
            "ledger_http_requests_total{method=\"POST\",route=\"unmatched\",status=\"4xx\"} 1",
            "ledger_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/events\",status=\"2xx\"} 2",
            "ledger_auth_refusals_total{reason=\"revoked_token\"} 1",
            "ledger_auth_refusals_total{reason=\"missing_token\"} 0",
            "ledger_projection_lag_events{projection=\"doses_by_day\"} 3",
            "ledger_relay_lag_events 0",
            "ledger_component_up{component=\"projections\"} 1",
            "ledger_component_up{component=\"relay\"} 0",
            "ledger_component_errors_total{component=\"relay\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains("ledger_digest_age_seconds 0."), "{text}");
        let old = to_prometheus_text(&text);
        assert!(
            old.contains("# TYPE ledger_commands_total counter\n"),
            "{old}"
        );
        assert!(
            old.contains("# TYPE ledger_log_head_position gauge\n"),
            "{old}"
        );
        assert!(!old.contains("# EOF"), "{old}");
        assert!(
            old.contains("ledger_commands_total{outcome=\"rejected\"} 2"),
            "{old}"
        );
    }
}
