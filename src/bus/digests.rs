//! Periodic digest publication (inside `serve`): every interval in which the log moved, a
//! digest of its head is signed with the ledger's key, appended to `digests.jsonl` beside
//! the store (fsynced, one JSON document per line) and, with `--nats`, published on the
//! subject `ledger.v1.digests`, kept by the JetStream stream `LEDGER_DIGESTS` (file storage,
//! `Nats-Msg-Id` = `<position>:<hash>`, so a digest published twice is kept once). Auditors
//! keep these as witnesses: `audit verify --digest FILE` proves a later log extends any of
//! them. A digest that NATS could not take is published at the next tick.

use crate::audit::{LedgerKey, SignedDigest};
use crate::store::EventStore;
use async_nats::jetstream::{self, stream};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The subject digests are published on.
pub const DIGEST_SUBJECT: &str = "ledger.v1.digests";
/// The JetStream stream that keeps them.
pub const DIGEST_STREAM: &str = "LEDGER_DIGESTS";

/// Where and how often digests are published.
pub struct DigestOptions {
    /// Time between two digests (a digest is taken only if the log moved).
    pub every: Duration,
    /// The append-only file of published digests.
    pub file: PathBuf,
    /// NATS servers, when configured.
    pub nats_url: Option<String>,
    /// Stream replicas on NATS.
    pub replicas: usize,
    /// The access log of person-level reads, whose head each digest states.
    pub access_log: Option<Arc<crate::audit::AccessLog>>,
    /// Where the publisher says how it stands (part `digests`), as it happens.
    pub health: crate::support::health::Health,
    /// The newest checkpoint the checkpointer had cosigned: a digest of the same head is that
    /// one, with its witnesses' cosignatures.
    pub latest: Option<Arc<crate::audit::LatestCheckpoint>>,
}

/// The most digests kept in memory while NATS cannot take them: beyond it the oldest are let
/// go from memory (each stays in the digest file, and a later digest proves more).
pub const MAX_UNPUBLISHED: usize = 1000;

/// Takes, signs and publishes digests until `shutdown` completes (one at start when the log
/// holds events, then every `options.every`).
pub async fn publish_digests(
    store: Arc<dyn EventStore>,
    key: Arc<LedgerKey>,
    options: DigestOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let health = options.health.clone();
    health.starting("digests");
    let mut last_position: Option<u64> = None;
    let mut unpublished: Vec<SignedDigest> = Vec::new();
    let mut js: Option<jetstream::Context> = None;
    let mut warned = false;
    let mut tick = tokio::time::interval(options.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let st = store.clone();
        let log = options.access_log.clone();
        let take = move || crate::audit::digest(st.as_ref())?.with_access_log(log.as_deref());
        let digest = match tokio::task::spawn_blocking(take).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot take a digest; trying at the next tick");
                health.failing("digests", format!("cannot take a digest: {e}"));
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the digest task failed; trying at the next tick");
                health.failing("digests", format!("the digest task failed: {e}"));
                continue;
            }
        };
        if digest.position == 0 || last_position == Some(digest.position) {
            // Nothing new: the last signed digest still covers the whole log.
            if unpublished.is_empty() {
                health.done("digests");
            }
            continue;
        }
        let cosigned = options
            .latest
            .as_ref()
            .and_then(|l| l.get())
            .filter(|l| l.position == digest.position);
        let signed = cosigned.unwrap_or_else(|| key.sign(digest));
        let line = serde_json::to_string(&signed).expect("digests serialize");
        let file = options.file.clone();
        let written = tokio::task::spawn_blocking(move || append_line(&file, &line)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, file = %options.file.display(), "cannot write the digest file; trying at the next tick");
                health.failing(
                    "digests",
                    format!("cannot write {}: {e}", options.file.display()),
                );
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "the digest file task failed; trying at the next tick");
                health.failing("digests", format!("the digest file task failed: {e}"));
                continue;
            }
        }
        last_position = Some(signed.position);
        let Some(url) = &options.nats_url else {
            health.done("digests");
            continue;
        };
        unpublished.push(signed);
        if unpublished.len() > MAX_UNPUBLISHED {
            let dropped = unpublished.len() - MAX_UNPUBLISHED;
            unpublished.drain(..dropped);
            tracing::warn!(
                kept = MAX_UNPUBLISHED,
                "NATS has not taken digests for long: the oldest are let go from memory (they stay in the digest file)"
            );
        }
        if js.is_none() {
            match connect(url, options.replicas).await {
                Ok(c) => js = Some(c),
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "NATS is unreachable: digests will be published when it is back");
                        warned = true;
                    }
                    health.failing("digests", format!("NATS unreachable: {e}"));
                    continue;
                }
            }
        }
        let Some(context) = &js else { continue };
        match publish(context, &unpublished).await {
            Ok(()) => {
                unpublished.clear();
                if std::mem::replace(&mut warned, false) {
                    tracing::warn!(
                        "NATS reachable again: the digests kept meanwhile are published"
                    );
                }
                health.done("digests");
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "cannot publish digests; they will be published when NATS is back");
                    warned = true;
                }
                health.failing("digests", format!("cannot publish: {e}"));
                js = None;
            }
        }
    }
}

fn append_line(path: &PathBuf, line: &str) -> std::io::Result<()> {
    let mut f = crate::support::files::private_options()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

async fn connect(url: &str, replicas: usize) -> Result<jetstream::Context, String> {
    let addrs = crate::nats::server_addrs(url).map_err(|e| e.to_string())?;
    let client = crate::nats::security::connect_options()
        .map_err(|e| e.to_string())?
        .connection_timeout(Duration::from_secs(2))
        .connect(addrs)
        .await
        .map_err(|e| e.to_string())?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client);
    let config = stream::Config {
        name: DIGEST_STREAM.to_string(),
        subjects: vec![DIGEST_SUBJECT.to_string()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(js)
}

async fn publish(js: &jetstream::Context, digests: &[SignedDigest]) -> Result<(), String> {
    for d in digests {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{}:{}", d.position, d.hash).as_str());
        let payload = serde_json::to_vec(d).expect("digests serialize");
        js.publish_with_headers(DIGEST_SUBJECT, h, payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
