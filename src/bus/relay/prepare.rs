//! The relay's next batch: read from the log and encoded as CloudEvents while the current
//! batch is published.

use super::*;

/// An event ready to publish.
pub(super) struct Prepared {
    pub(super) position: u64,
    pub(super) event_id: String,
    pub(super) subject: String,
    pub(super) payload: Vec<u8>,
}

/// The CloudEvents `source` of a ledger's events: `/campaign-ledger/ledger/<id>`, the id being
/// the first 16 hex digits of the hash of its event at position 1. The same however and
/// wherever the log is opened (a file path or a server list would say where it is, not which
/// ledger, and would show local paths to every consumer); another ledger's differs.
pub fn ledger_source(first_hash: &[u8; 32]) -> String {
    format!("/campaign-ledger/ledger/{}", &hex::encode(first_hash)[..16])
}

/// Reads and encodes the events after `after` on a blocking thread; with `wait`, first waits
/// up to 500 ms for a commit beyond `after` (none: an empty batch).
pub(super) fn prepare(
    store: Arc<dyn EventStore>,
    after: u64,
    source: Arc<std::sync::OnceLock<String>>,
    wait: bool,
) -> tokio::task::JoinHandle<Result<Vec<Prepared>, crate::store::StoreError>> {
    tokio::task::spawn_blocking(move || {
        // Waiting on the same thread that reads: a new commit is read as soon as it wakes
        // the thread, without a hop through the runtime in between.
        if wait && store.wait_beyond(after, Duration::from_millis(500))? <= after {
            return Ok(Vec::new());
        }
        // The source comes from position 1: the event itself when the read starts there (the
        // log may have been empty a moment ago), else read once.
        if after > 0 && source.get().is_none() {
            if let Some(first) = store.read_all(0, 1)?.first() {
                let _ = source.set(ledger_source(&first.hash));
            }
        }
        let mut out = Vec::with_capacity(BATCH as usize);
        store.scan(after, after + BATCH, &mut |e| {
            let source = if e.position == 1 {
                source.get_or_init(|| ledger_source(&e.hash))
            } else {
                source.get_or_init(|| {
                    // Not reached: a read from after 0 starts at position 1, and a read from
                    // further on set it above. Said loudly rather than guessed.
                    tracing::error!(
                        position = e.position,
                        "the ledger's id was not read before its events"
                    );
                    "/campaign-ledger".to_string()
                })
            };
            out.push(Prepared {
                position: e.position,
                event_id: e.event_id.to_string(),
                subject: subject_of(&e),
                payload: encode(&e, source),
            });
            true
        })?;
        Ok(out)
    })
}

pub(super) const BATCH: u64 = 4096;

/// How long a publish may wait to be handed to the client before the session is abandoned.
pub(super) const PUBLISH_STALL: Duration = Duration::from_secs(10);
