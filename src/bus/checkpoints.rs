//! Checkpoints while the head moves (inside `serve`): at most one a second, each signed with the
//! ledger's key (`audit::LedgerKey::sign`), submitted to every configured witness with the
//! consistency proof from the last tree it cosigned (`witnesses`), the cosignatures added, then
//! kept as the newest (`GET /v1/audit/checkpoint`), written to `checkpoint.txt` beside the store
//! (the last one this ledger signed) and, with `--nats`, published on `ledger.v1.checkpoints`
//! (stream `LEDGER_CHECKPOINTS`, one message per checkpoint). A witness that is down or refuses
//! is said in the log (once per outage) and retried with the next checkpoint; the checkpoint is
//! kept with the cosignatures it got.

use super::witnesses::{cosign, WitnessTarget};
use crate::audit::{LatestCheckpoint, LedgerKey};
use crate::envelope::note::Note;
use crate::store::EventStore;
use async_nats::jetstream::{self, stream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The subject checkpoints are published on.
pub const CHECKPOINT_SUBJECT: &str = "ledger.v1.checkpoints";
/// The JetStream stream that keeps them.
pub const CHECKPOINT_STREAM: &str = "LEDGER_CHECKPOINTS";
/// The least time between two checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Where checkpoints go.
pub struct CheckpointOptions {
    /// The witnesses to submit each checkpoint to.
    pub witnesses: Vec<WitnessTarget>,
    /// The access log, whose head each checkpoint states.
    pub access_log: Option<Arc<crate::audit::AccessLog>>,
    /// The file holding the last checkpoint signed (`checkpoint.txt` beside the store).
    pub file: PathBuf,
    /// NATS servers, when configured.
    pub nats_url: Option<String>,
    /// Where the part `checkpoints` says how it stands.
    pub health: crate::support::health::Health,
}

/// Signs, has cosigned and publishes checkpoints until `shutdown` completes.
pub async fn publish_checkpoints(
    store: Arc<dyn EventStore>,
    key: Arc<LedgerKey>,
    mut options: CheckpointOptions,
    latest: Arc<LatestCheckpoint>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    options.health.starting("checkpoints");
    let mut last: Option<(u64, Option<u64>)> = None;
    let mut since = Instant::now() - CHECKPOINT_EVERY;
    let mut js: Option<jetstream::Context> = None;
    let mut witness_down = vec![false; options.witnesses.len()];
    loop {
        // Wait for the head to move (or a second, for the access log), at most one a second.
        let seen = last.map_or(0, |(p, _)| p);
        let st = store.clone();
        let moved = tokio::task::spawn_blocking(move || st.wait_beyond(seen, CHECKPOINT_EVERY));
        tokio::select! {
            _ = &mut shutdown => return,
            _ = moved => {}
        }
        let wait = CHECKPOINT_EVERY.saturating_sub(since.elapsed());
        if !wait.is_zero() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let st = store.clone();
        let log = options.access_log.clone();
        let take = move || crate::audit::digest(st.as_ref())?.with_access_log(log.as_deref());
        let digest = match tokio::task::spawn_blocking(take).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                options
                    .health
                    .failing("checkpoints", format!("cannot take a checkpoint: {e}"));
                continue;
            }
            Err(e) => {
                options
                    .health
                    .failing("checkpoints", format!("the checkpoint task failed: {e}"));
                continue;
            }
        };
        let now = (digest.position, digest.access_log.as_ref().map(|a| a.size));
        if digest.position == 0 || last == Some(now) {
            options.health.running("checkpoints");
            continue;
        }
        since = Instant::now();
        let mut signed = key.sign(digest);
        let Some(text) = signed.checkpoint.clone() else {
            continue;
        };
        let Ok(mut note) = Note::parse(&text) else {
            continue;
        };
        let size = signed.position;
        cosign_all(
            &store,
            &mut options.witnesses,
            &mut witness_down,
            &mut note,
            size,
        )
        .await;
        signed.checkpoint = Some(note.to_text());
        latest.set(signed.clone());
        last = Some(now);
        let file = options.file.clone();
        let text = note.to_text();
        let _ =
            tokio::task::spawn_blocking(move || crate::support::files::write_private(&file, &text))
                .await;
        options.health.running("checkpoints");
        if let Some(url) = &options.nats_url {
            if js.is_none() {
                js = connect(url).await.ok();
            }
            if let Some(c) = &js {
                if publish(c, size, &note).await.is_err() {
                    js = None;
                }
            }
        }
    }
}

/// Submits `note` (of a tree of `size`) to every witness at once, with the consistency proofs
/// from the store, and adds the cosignatures they give; a witness that fails is said in the
/// log once per outage (`down`).
async fn cosign_all(
    store: &Arc<dyn EventStore>,
    witnesses: &mut [WitnessTarget],
    down: &mut [bool],
    note: &mut Note,
    size: u64,
) {
    let st = store.clone();
    let proof = move |old: u64| {
        crate::audit::tree::consistency_path(st.as_ref(), old, size).map_err(|e| e.to_string())
    };
    let snapshot = note.clone();
    let results = futures_util::future::join_all(
        witnesses
            .iter_mut()
            .map(|w| cosign(w, &snapshot, size, &proof)),
    )
    .await;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(sigs) => {
                note.add(sigs);
                if std::mem::replace(&mut down[i], false) {
                    tracing::warn!(witness = %witnesses[i].url, "the witness cosigns again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut down[i], true) {
                    tracing::warn!(error = %e, "a witness did not cosign the checkpoint; tried again with the next one");
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<jetstream::Context, String> {
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
    js.get_or_create_stream(stream::Config {
        name: CHECKPOINT_STREAM.to_string(),
        subjects: vec![CHECKPOINT_SUBJECT.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(js)
}

async fn publish(js: &jetstream::Context, size: u64, note: &Note) -> Result<(), String> {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        "Nats-Msg-Id",
        format!("{size}:{}", note.signatures.len()).as_str(),
    );
    h.insert("Content-Type", "text/plain; charset=utf-8");
    js.publish_with_headers(CHECKPOINT_SUBJECT, h, note.to_text().into_bytes().into())
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
