//! What the ledger and HTTP benchmarks share: the directorates, an authorised store, and
//! the dose commands they send.
#![allow(dead_code)]

pub mod load;

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::*;
use campaign_ledger::store::{self, Actor, EventStore, SystemClock};
use chrono::{DateTime, Duration, FixedOffset, NaiveDate};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

pub const DTS: [&str; 19] = [
    "limoges",
    "paris",
    "montrouge",
    "creteil",
    "rennes",
    "lyon",
    "marseille",
    "bordeaux",
    "lille",
    "toulouse",
    "nantes",
    "strasbourg",
    "montpellier",
    "nice",
    "grenoble",
    "rouen",
    "dijon",
    "orleans",
    "poitiers",
];

pub fn at(day: i64, minute: i64) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2021-09-01T09:00:00+02:00").unwrap()
        + Duration::days(day)
        + Duration::minutes(minute)
}

/// The one percentile definition of every benchmark: nearest rank (the smallest sample with
/// at least `p` of the samples at or below it), over samples sorted ascending.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "no samples");
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Alternating rounds, each `(ratio, what the round measured)`: the median round by ratio, and
/// every round's ratio (ascending, two decimals) for the table.
pub fn median_round<T: Copy>(mut rounds: Vec<(f64, T)>) -> (T, String) {
    assert!(!rounds.is_empty(), "no rounds");
    rounds.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let every = rounds
        .iter()
        .map(|r| format!("{:.2}", r.0))
        .collect::<Vec<_>>()
        .join(", ");
    (rounds[rounds.len() / 2].1, every)
}

/// CPU seconds (user, system) used by this process so far.
pub fn cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (f(11), f(12))
}

/// Whether the benchmarks run with person keys: `BENCH_NO_KEYS=1` leaves the key store out
/// (refs in clear, as before crypto-shredding). The ledger benchmark runs both itself.
pub fn keys_wanted() -> bool {
    std::env::var_os("BENCH_NO_KEYS").is_none()
}

pub fn open_ledger(dir: &Path) -> (Arc<dyn EventStore>, Ledger) {
    let store = store::open(
        &format!("sqlite:{}", dir.join("ledger.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let ledger = keyed_ledger(store.clone(), dir, keys_wanted());
    (store, ledger)
}

/// A ledger over `store` as the CLI and the server run it: with `keys`, person refs sealed
/// with per-person keys from a key store in `dir`; without, refs in clear.
pub fn keyed_ledger(store: Arc<dyn EventStore>, dir: &Path, keys: bool) -> Ledger {
    let ledger = Ledger::new(
        store,
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    );
    if !keys {
        return ledger;
    }
    ledger
        .with_keys(Arc::new(
            campaign_ledger::privacy::KeyStore::open(
                &dir.join("ledger.keys.db"),
                &campaign_ledger::privacy::MasterKey::generate().unwrap(),
                true,
            )
            .unwrap(),
        ))
        .unwrap()
}

pub fn authorise_all(ledger: &Ledger) {
    let actor = Actor {
        role: "bench".into(),
        ..Default::default()
    };
    for dt in DTS {
        let c = CommandEnvelope {
            command_id: Uuid::now_v7(),
            correlation_id: None,
            command: Command::AuthoriseSite(AuthoriseSite {
                directorate: dt.into(),
                site: format!("{dt}-dt"),
                site_kind: SiteKind::DtPremises,
                authorised_on: NaiveDate::from_ymd_opt(2021, 8, 1).unwrap(),
            }),
        };
        assert!(matches!(
            ledger.handle(&c, &actor).unwrap(),
            Outcome::Accepted(_)
        ));
    }
}

pub fn dose_command(n: u64) -> CommandEnvelope {
    dose_of(n, DoseKind::First, (n % 40) as i64)
}

/// The second dose of the person of `dose_command(n)`, 60 days later.
pub fn second_command(n: u64) -> CommandEnvelope {
    dose_of(n, DoseKind::Second, (n % 40) as i64 + 60)
}

pub fn dose_of(n: u64, dose: DoseKind, day: i64) -> CommandEnvelope {
    let dt = DTS[(n % 19) as usize];
    CommandEnvelope {
        command_id: Uuid::now_v7(),
        correlation_id: Some("bench".into()),
        command: Command::AdministerDose(AdministerDose {
            person_ref: format!("p-{n:012x}"),
            age_band: AgeBand::A30to39,
            recipient: Recipient::User,
            directorate: dt.into(),
            site: format!("{dt}-dt"),
            product: Product::Comirnaty,
            lot: "FF2832".into(),
            dose,
            administered_at: at(day, (n % 400) as i64),
            session_id: None,
            prior_infection_counted: false,
        }),
    }
}

/// The token file of the HTTP benchmarks: one agent token, `token`, for every directorate.
pub fn bench_auth(token: &str) -> campaign_ledger::http::Auth {
    use campaign_ledger::access::{hash_token, TokenEntry, TokenFile};
    campaign_ledger::http::Auth::from_file(
        TokenFile {
            tokens: vec![TokenEntry {
                id: "bench-agent".into(),
                role: campaign_ledger::http::Role::Agent,
                directorates: DTS.iter().map(|s| s.to_string()).collect(),
                partner_centres: vec![],
                sha256: hash_token(token),
                expires_at: None,
                revoked_at: None,
                previous: vec![],
            }],
        },
        &Reference::builtin(),
    )
    .unwrap()
}

/// The real server (axum, 2 worker threads as `serve` runs it) on a loopback port: its runtime
/// (shut it down to stop the server) and its address.
pub fn spawn_server(state: campaign_ledger::http::AppState) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, campaign_ledger::http::router(state)).await
    });
    (rt, addr)
}
