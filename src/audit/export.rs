//! Export and import: the log as JSON lines, one CloudEvent per event (the mapping the relay
//! publishes, see `envelope::cloudevents`), each carrying its position, recorded_at, prev_hash and
//! hash, plus `ledgercommandhash` (the causing command's content hash, which an import needs
//! to keep command ids idempotent forever). The `source` is the same for every backend, so
//! exports of the same log are byte-identical whichever store they come from.
//!
//! An export verifies on its own (`verify_export`): the chain inside it, and, given a digest
//! whose position falls inside it, that it is the log the digest was taken from. `import`
//! rebuilds a store from an export, verifying the chain before anything is written.

use super::{SignedDigest, VerifyError};
use crate::envelope::cloudevents::CommandHash;
use crate::envelope::cloudevents::{decode_export, encode_export};
use crate::store::ChainCheck;
use crate::store::{EventStore, Head, ImportedEvent, StoreError};
use serde::Serialize;
use std::io::{BufRead, Write};
use uuid::Uuid;

/// Which part of the log to export (all bounds inclusive; the default is everything).
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// First position.
    pub from: Option<u64>,
    /// Last position.
    pub to: Option<u64>,
    /// Only events recorded at or after this commit time (RFC 3339 UTC with microseconds,
    /// as the store records it; see `store::format_recorded_at`).
    pub since: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exported {
    /// Events written.
    pub events: u64,
    /// First position written.
    pub first: Option<u64>,
    /// Last position written.
    pub last: Option<u64>,
}

/// Writes the events `options` selects, one CloudEvent per line, to `out`.
pub fn export(
    store: &dyn EventStore,
    options: &ExportOptions,
    out: &mut dyn Write,
) -> Result<Exported, StoreError> {
    let from = options.from.unwrap_or(1).max(1);
    let to = options.to.unwrap_or(u64::MAX);
    let mut written = Exported {
        events: 0,
        first: None,
        last: None,
    };
    if to < from {
        return Ok(written);
    }
    let mut command: Option<(Uuid, CommandHash)> = None;
    let mut failed: Option<StoreError> = None;
    let mut line = Vec::with_capacity(1024);
    store.scan(from - 1, to, &mut |e| {
        if let Some(since) = &options.since {
            if e.recorded_at < since.as_str() {
                return true;
            }
        }
        let hash = match command {
            Some((id, h)) if id == e.command_id => h,
            _ => match store.command(e.command_id) {
                Ok(Some(rec)) => {
                    let h = CommandHash {
                        hash: rec.content_hash,
                        version: rec.hash_version,
                    };
                    command = Some((e.command_id, h));
                    h
                }
                Ok(None) => {
                    failed = Some(StoreError::Corrupt(format!(
                        "the event at position {} names command {}, which the store does not know; run `campaign-ledger audit verify`",
                        e.position, e.command_id
                    ).into()));
                    return false;
                }
                Err(err) => {
                    failed = Some(err);
                    return false;
                }
            },
        };
        line.clear();
        line.extend_from_slice(&encode_export(&e, &hash));
        line.push(b'\n');
        if let Err(err) = out.write_all(&line) {
            failed = Some(StoreError::Unavailable(format!(
                "cannot write the export: {err}"
            ).into()));
            return false;
        }
        written.events += 1;
        written.first.get_or_insert(e.position);
        written.last = Some(e.position);
        true
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush()
        .map_err(|e| StoreError::Unavailable(format!("cannot write the export: {e}").into()))?;
    Ok(written)
}

/// A verified export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedExport {
    /// Events in it.
    pub events: u64,
    /// Its first position.
    pub first: u64,
    /// Its last position.
    pub last: u64,
    /// The hash its first event follows (zeros when it starts at position 1).
    pub anchor: String,
    /// The hash of its last event.
    pub hash: String,
    /// Whether it starts at position 1 (a whole log up to `last`).
    pub from_start: bool,
}

/// Reads an export line by line, calling `f` with each event once its chain link checks.
fn read_export(
    input: &mut dyn BufRead,
    chain: &mut ChainCheck,
    f: &mut dyn FnMut(
        crate::store::RecordedEvent,
        Option<crate::envelope::cloudevents::CommandHash>,
    ) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let mut line = Vec::with_capacity(1024);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError::Input(format!("cannot read the export: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (event, command_hash) = decode_export(text).map_err(|e| match chain.next() {
            Some(p) => VerifyError::Broken {
                position: p,
                reason: format!("line {number} of the export is not a ledger event ({e}): the file is damaged or truncated"),
            },
            None => VerifyError::Input(format!(
                "line {number} is not a ledger event ({e}); give a file written by `campaign-ledger export`"
            )),
        })?;
        chain.check(&event.as_ref())?;
        // The command's content hash is what makes an imported command id idempotent: an
        // export line without it is refused by verify as by import.
        if command_hash.is_none() {
            return Err(VerifyError::Broken {
                position: event.position,
                reason: format!(
                    "line {number} has no ledgercommandhash: the file was not written by `campaign-ledger export`, or was changed"
                ),
            });
        }
        f(event, command_hash)?;
    }
}

/// Verifies an export on its own: the chain inside it and, with a digest, that the digest's
/// head is in it (the digest's position inside the export, or just before its first event,
/// with the same hash). A digest signature must have been checked by the caller.
pub fn verify_export(
    input: &mut dyn BufRead,
    digest: Option<&SignedDigest>,
    witnessed: Option<u64>,
) -> Result<VerifiedExport, VerifyError> {
    let mut chain = ChainCheck::window();
    let mut first: Option<(u64, [u8; 32])> = None;
    let mut last = 0u64;
    let mut at_digest: Option<[u8; 32]> = None;
    let digest_position = digest.map(|d| d.position);
    let mut first_hash: Option<[u8; 32]> = None;
    read_export(input, &mut chain, &mut |e, _| {
        if e.position == 1 {
            first_hash = Some(e.hash);
        }
        // After a witnessed checkpoint, nothing may say it was recorded before it.
        if let (Some(p), Some(w)) = (digest_position, witnessed) {
            if e.position > p {
                super::signing::check_not_backdated(e.position, &e.recorded_at, p, w)?;
            }
        }
        if first.is_none() {
            first = Some((e.position, e.prev_hash));
            if digest_position == Some(e.position - 1) {
                at_digest = Some(e.prev_hash);
            }
        }
        if digest_position == Some(e.position) {
            at_digest = Some(e.hash);
        }
        last = e.position;
        Ok(())
    })?;
    let Some((first, anchor)) = first else {
        return Err(VerifyError::Input(
            "the export holds no event; export a range that is not empty".into(),
        ));
    };
    if let Some(d) = digest {
        // The ledger's id is its first event's hash: another first event is a rewritten log
        // (or the checkpoint of another ledger), named at position 1.
        if let (1, Some(ledger)) = (first, d.ledger.as_deref()) {
            if hex::encode(first_hash.unwrap_or_default()) != ledger {
                return Err(VerifyError::Broken {
                    position: 1,
                    reason: "the first event's hash is not the one the checkpoint's ledger began with: the log was rewritten from its first event (or the checkpoint is of another ledger)".into(),
                });
            }
        }
        match at_digest {
            Some(h) if hex::encode(h) == d.hash => {}
            Some(h) => {
                return Err(VerifyError::Broken {
                    position: d.position,
                    reason: format!(
                        "the export has hash {} at the digest's position, the digest says {}: this is not the log the digest was taken from",
                        hex::encode(h),
                        d.hash
                    ),
                })
            }
            None if d.position > last => {
                return Err(VerifyError::Input(format!(
                    "the digest was taken at position {}, after this export's last event ({last}); export up to it (--to {}) to check it",
                    d.position, d.position
                )))
            }
            None => {
                return Err(VerifyError::Input(format!(
                    "the digest was taken at position {}, before this export's first event ({first}); export from position {} to check it",
                    d.position,
                    d.position.max(1)
                )))
            }
        }
    }
    Ok(VerifiedExport {
        events: last - first + 1,
        first,
        last,
        anchor: hex::encode(anchor),
        hash: hex::encode(chain.head_hash()),
        from_start: first == 1,
    })
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imported {
    /// Events written to the store.
    pub imported: u64,
    /// Events of the export the store held already (identical, checked by hash).
    pub skipped: u64,
    /// The store's head afterwards.
    pub position: u64,
    /// Its hash (hex).
    pub hash: String,
}

/// Events per write to the store (a write never splits a command).
const IMPORT_BATCH: usize = 4096;

/// Rebuilds a store from an export, verifying the chain as it reads and refusing a broken
/// one; writes in batches of whole commands, each durable before the next. The store may be
/// empty, or hold a prefix of the same log (an interrupted import): events it holds
/// already are skipped once the hash at its head matches.
pub fn import(
    input: &mut dyn BufRead,
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<Imported, VerifyError> {
    let start = store.head()?;
    let mut head = start;
    let mut chain = ChainCheck::window();
    let mut batch: Vec<ImportedEvent> = Vec::with_capacity(IMPORT_BATCH + 16);
    let mut skipped = 0u64;
    let mut imported = 0u64;
    let mut seen_first = false;
    let mismatch = |position: u64, why: &str| {
        VerifyError::Input(format!(
        "the store {} already holds a different log (at position {position} {why}); import into an empty store",
        store.describe()
    ))
    };
    let mut flush = |batch: &mut Vec<ImportedEvent>, head: &mut Head| -> Result<(), VerifyError> {
        if batch.is_empty() {
            return Ok(());
        }
        *head = store.import(batch)?;
        imported += batch.len() as u64;
        progress(imported);
        batch.clear();
        Ok(())
    };
    read_export(input, &mut chain, &mut |event, command_hash| {
        let position = event.position;
        if !seen_first {
            seen_first = true;
            if position > start.position + 1 {
                return Err(VerifyError::Input(format!(
                    "the export starts at position {position} but the store ends at {}; export from --from {}",
                    start.position,
                    start.position + 1
                )));
            }
            if position == start.position + 1 && event.prev_hash != start.hash {
                return Err(mismatch(start.position, "the hash differs"));
            }
        }
        if position <= start.position {
            if position == start.position && event.hash != start.hash {
                return Err(mismatch(position, "the hash differs"));
            }
            skipped += 1;
            return Ok(());
        }
        let Some(content_hash) = command_hash else {
            return Err(VerifyError::Input(format!(
                "the event at position {position} has no ledgercommandhash: the file was not written by `campaign-ledger export`"
            )));
        };
        if batch.len() >= IMPORT_BATCH
            && batch.last().map(|l| l.event.command_id) != Some(event.command_id)
        {
            flush(&mut batch, &mut head)?;
        }
        batch.push(ImportedEvent {
            event,
            content_hash: content_hash.hash,
            hash_version: content_hash.version,
        });
        Ok(())
    })?;
    if !seen_first {
        return Err(VerifyError::Input(
            "the export holds no event; nothing to import".into(),
        ));
    }
    flush(&mut batch, &mut head)?;
    Ok(Imported {
        imported,
        skipped,
        position: head.position,
        hash: hex::encode(head.hash),
    })
}
