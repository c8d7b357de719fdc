//! The JetStream log's index, built from the log at open and kept with it: each command id
//! (idempotency forever), each stream's version, the head; the chain is verified as it is read.

use super::*;
use crate::envelope::cloudevents::CommandHash;
use crate::envelope::merkle::MemoryTree;

/// What the index keeps of a command.
pub(super) struct CommandEntry {
    pub(super) stream: u32,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) content_hash: [u8; 32],
    /// The content hash's version (from the `Ledger-Command-Hash-Version` header; 1 without).
    pub(super) hash_version: u8,
    pub(super) recorded_at: Box<str>,
}

/// The log's index, built from the log: head, stream versions, command ids.
#[derive(Default)]
pub(super) struct Index {
    pub(super) head: u64,
    pub(super) head_hash: [u8; 32],
    pub(super) head_recorded_at: String,
    pub(super) stream_ids: HashMap<String, u32>,
    /// Per stream: its id and the positions of its events, in version order.
    pub(super) streams: Vec<(String, Vec<u64>)>,
    pub(super) commands: HashMap<Uuid, CommandEntry>,
    /// The Merkle tree of the log, in memory (64 bytes per event), rebuilt at open.
    pub(super) tree: MemoryTree,
}

impl Index {
    pub(super) fn positions(&self, stream: &str) -> &[u64] {
        self.stream_ids
            .get(stream)
            .map(|&i| self.streams[i as usize].1.as_slice())
            .unwrap_or(&[])
    }

    pub(super) fn record(&self, id: Uuid) -> Option<CommandRecord> {
        self.commands.get(&id).map(|c| CommandRecord {
            command_id: id,
            content_hash: c.content_hash,
            stream_id: self.streams[c.stream as usize].0.clone(),
            first_position: c.first,
            last_position: c.last,
            recorded_at: c.recorded_at.to_string(),
            hash_version: u32::from(c.hash_version),
        })
    }

    /// The commands whose content hash is of version 1.
    pub(super) fn of_hash_version_1(&self) -> Vec<CommandRecord> {
        let mut old: Vec<CommandRecord> = self
            .commands
            .iter()
            .filter(|(_, c)| c.hash_version < 2)
            .filter_map(|(id, _)| self.record(*id))
            .collect();
        old.sort_by_key(|c| c.first_position);
        old
    }

    /// Takes version-2 hashes in place of version-1 ones (the messages keep theirs: a NATS
    /// log's messages cannot be rewritten).
    pub(super) fn rehash(&mut self, hashes: &[(Uuid, [u8; 32])]) {
        for (id, h) in hashes {
            if let Some(c) = self.commands.get_mut(id) {
                c.content_hash = *h;
                c.hash_version = 2;
            }
        }
    }

    /// Adds the next event of the log, checking that it follows the head and that its hash
    /// is right. Events at or before the head are already known and skipped.
    pub(super) fn apply(
        &mut self,
        e: &EventRef<'_>,
        content_hash: CommandHash,
    ) -> Result<(), StoreError> {
        if e.position <= self.head {
            return Ok(());
        }
        let bad = |what: String| {
            StoreError::Corrupt(
                format!(
                    "{LOG_STREAM} position {}: {what}; run `campaign-ledger audit verify`",
                    e.position
                )
                .into(),
            )
        };
        if e.position != self.head + 1 {
            return Err(bad(format!("expected position {}", self.head + 1)));
        }
        if e.prev_hash != self.head_hash || chain_hash(&self.head_hash, e) != e.hash {
            return Err(bad("the hash chain does not verify".into()));
        }
        let next = self.streams.len() as u32;
        let si = *self
            .stream_ids
            .entry(e.stream_id.to_string())
            .or_insert(next);
        if si == next {
            self.streams.push((e.stream_id.to_string(), Vec::new()));
        }
        let positions = &mut self.streams[si as usize].1;
        if e.stream_version != positions.len() as u64 + 1 {
            return Err(bad(format!(
                "stream {} version {} follows version {}",
                e.stream_id,
                e.stream_version,
                positions.len()
            )));
        }
        positions.push(e.position);
        match self.commands.get_mut(&e.command_id) {
            Some(c) if c.last + 1 == e.position && c.stream == si => c.last = e.position,
            Some(_) => {
                return Err(bad(format!(
                    "command {} appears twice in the log",
                    e.command_id
                )))
            }
            None => {
                self.commands.insert(
                    e.command_id,
                    CommandEntry {
                        stream: si,
                        first: e.position,
                        last: e.position,
                        content_hash: content_hash.hash,
                        hash_version: content_hash.version as u8,
                        recorded_at: e.recorded_at.into(),
                    },
                );
            }
        }
        self.tree.push(&e.hash);
        self.head = e.position;
        self.head_hash = e.hash;
        self.head_recorded_at = e.recorded_at.to_string();
        Ok(())
    }
}

/// The content hash a message of the log carries (`Ledger-Command-Hash`) and its version
/// (`Ledger-Command-Hash-Version`; messages of older builds have none: version 1).
pub(super) fn content_hash_of(
    headers: Option<&HeaderMap>,
    position: u64,
) -> Result<CommandHash, StoreError> {
    let hash = headers
        .and_then(|h| h.get("Ledger-Command-Hash"))
        .and_then(|v| hex::decode(v.as_str()).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{LOG_STREAM} position {position} has no Ledger-Command-Hash header: it was not written by campaign-ledger"
            ).into())
        })?;
    let version = match headers.and_then(|h| h.get("Ledger-Command-Hash-Version")) {
        None => 1,
        Some(v) => match v.as_str() {
            "2" => 2,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{LOG_STREAM} position {position} has Ledger-Command-Hash-Version {other:?}, which this build does not read"
                ).into()))
            }
        },
    };
    Ok(CommandHash { hash, version })
}

/// Reads what the stream holds beyond the index's head into the index. A long range (opening
/// the log, or after an outage) is received here and indexed on a blocking thread of its own
/// (decoding, the hash check and the index), a chunk at a time: receiving alone costs about
/// as much as the rest, and doing both on one thread halved the rate.
pub(super) async fn catch_up(
    stream: &stream::Stream,
    shared: &Arc<Shared>,
) -> Result<(), StoreError> {
    let _one = shared.catching_up.lock().await;
    let mut s = stream.clone();
    let last = s.info().await.map_err(unavailable)?.state.last_sequence;
    let head = shared.index().head;
    if last <= head {
        return Ok(());
    }
    if last - head <= 64 {
        let messages: Vec<_> = futures_util::stream::iter(head + 1..=last)
            .map(|seq| {
                let s = stream.clone();
                async move { s.direct_get(seq).await.map_err(unavailable) }
            })
            .buffered(64)
            .try_collect()
            .await?;
        let mut index = shared.index();
        for m in &messages {
            let content_hash = content_hash_of(Some(&m.headers), m.sequence)?;
            index_event(&mut index, &m.payload, content_hash, m.sequence)?;
        }
    } else {
        let mut messages = ordered_messages(stream, head + 1).await?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, CommandHash, bytes::Bytes)>>(16);
        let sh = shared.clone();
        let indexer = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            for chunk in rx {
                let mut index = sh.index();
                for (seq, content_hash, payload) in &chunk {
                    index_event(&mut index, payload, *content_hash, *seq)?;
                }
            }
            Ok(())
        });
        let received = async {
            let mut seq = head + 1;
            while seq <= last {
                let (got, failed) =
                    next_chunk(&mut messages, seq, CHUNK.min((last + 1 - seq) as usize)).await;
                let mut failed = failed.map(StoreError::from);
                let mut chunk = Vec::with_capacity(got.len());
                for m in got {
                    match content_hash_of(m.message.headers.as_ref(), seq) {
                        Ok(h) => chunk.push((seq, h, m.message.payload)),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    seq += 1;
                }
                // What was received before a failure is indexed first: an earlier bad message
                // is the one to report.
                if !crate::nats::hand_over(&tx, chunk).await {
                    // The indexer stopped: its error says why.
                    break;
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let indexed = indexer.await.map_err(|e| {
            StoreError::Unavailable(format!("the log's indexer failed: {e}").into())
        })?;
        indexed?;
        received?;
    }
    shared.moved.notify_all();
    Ok(())
}

/// Adds the event a message of the log carries to the index (see `Index::apply`), checking
/// that it is the one at stream sequence `seq`.
pub(super) fn index_event(
    index: &mut Index,
    payload: &[u8],
    content_hash: CommandHash,
    seq: u64,
) -> Result<(), StoreError> {
    with_event(payload, |e| {
        if e.position != seq {
            return Err(StoreError::Corrupt(
                format!("{LOG_STREAM} sequence {seq} holds position {}", e.position).into(),
            ));
        }
        index.apply(&e, content_hash)
    })
    .map_err(|e| {
        StoreError::Corrupt(Cause::with_source(
            format!("{LOG_STREAM} sequence {seq}: {e}"),
            e,
        ))
    })?
}
