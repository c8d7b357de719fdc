//! The JetStream stream `LEDGER_EVENTS` read as a log: what NATS-fed projection workers fold.
//! Read-only: it implements the reading half of `EventStore` (appends are refused), so the
//! projection engine runs unchanged on it, with its checkpoint (the stream sequence, which is
//! the ledger position) saved with its state in one transaction in its own SQLite file.
//!
//! Why an ordered consumer from the saved checkpoint rather than a durable consumer's
//! server-side cursor: the state and its position must be saved in one atomic write; a second
//! cursor on the server could drift from it after a crash. Every catch-up starts where the
//! saved state ends, and the hash of that position is checked against the stream. A worker
//! that follows the stream (`wait_beyond`) also keeps one ordered consumer on its tail and
//! folds from what it delivered (see `Tail`).

use super::BusError;
use super::STREAM;
use crate::store::{
    chain_hash, AppendRequest, AppendResult, CommandRecord, DataRef, EventRef, EventStore, Head,
    RecordedEvent, StoreError, GENESIS_HASH,
};
use crate::support::cause::Cause;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `LEDGER_EVENTS` on a NATS server, as a read-only log.
pub struct JetStreamSource {
    url: String,
    runtime: tokio::runtime::Runtime,
    stream: stream::Stream,
    /// What a follower (`wait_beyond`) has seen the stream store, kept for the next read.
    tail: Arc<Tail>,
    /// The last sequence the stream was last seen to hold (it never shrinks).
    known_last: AtomicU64,
    /// The last events handed on by recent reads (position, hash), at most `HANDED_KEEP`: a
    /// read that starts right after one of them checks that its first event links to it
    /// (`head()` and a load's checkpoint checks read single events elsewhere in between).
    handed: Mutex<VecDeque<(u64, [u8; 32])>>,
    /// Events read from the stream itself rather than from the tail (`read_from_stream`).
    read_from_stream: AtomicU64,
}

/// The live end of the stream, for a worker that follows it: an ordered consumer, started by
/// the first `wait_beyond`, receives every message the stream stores from then on and keeps
/// it here until a read has passed it. A JetStream consumer delivers only what the stream has
/// stored, so what is here is what the stream holds; the worker folds it without asking the
/// server again (one round trip for the stream's end and one per event otherwise), and what
/// is not here (a read that starts elsewhere, the part of a range that a follower more than
/// `TAIL_KEEP` events behind lacks, an outage) is read from the stream as before.
#[derive(Default)]
struct Tail {
    state: Mutex<TailState>,
    changed: Condvar,
}

#[derive(Default)]
struct TailState {
    /// The first position followed (None: not following).
    from: Option<u64>,
    /// Messages received, by position, consecutive.
    kept: VecDeque<(u64, bytes::Bytes)>,
    /// The highest position received (the stream holds at least this much; 0: none yet).
    received: u64,
    /// A gap in the stream was reported (once).
    gap_reported: bool,
}

impl TailState {
    /// The position the tail's consumer wants next.
    fn next(&self) -> u64 {
        (self.received + 1).max(self.from.unwrap_or(1))
    }
}

/// Messages the tail keeps at most (each payload copied out of the client's read buffer, about
/// 700 bytes): beyond, the oldest are dropped and read from the stream again if wanted.
const TAIL_KEEP: usize = 16_384;

/// Recent reads' last events kept for the link check (a load checks one checkpoint per
/// projection, `head()` one more).
const HANDED_KEEP: usize = 32;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Cause::with_source(format!("NATS: {e}"), e))
}

impl JetStreamSource {
    /// Connects to `url` (the stream must exist: run the relay first).
    pub fn connect(url: &str) -> Result<JetStreamSource, BusError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(BusError::nats)?;
        let addrs = crate::nats::server_addrs(url)?;
        let stream = runtime.block_on(async {
            let client = crate::nats::security::connect_options()?
                .connection_timeout(Duration::from_secs(3))
                .connect(addrs)
                .await
                .map_err(|e| {
                    let message = crate::nats::security::refusal(&e.to_string()).unwrap_or_else(|| format!(
                        "cannot reach {url} ({e}); start nats-server -js there (and the relay) or fix --nats"
                    ));
                    BusError::Nats(Cause::with_source(message, e))
                })?;
            let js = jetstream::new(client);
            js.get_stream(STREAM).await.map_err(|e| {
                BusError::Nats(Cause::with_source(format!("stream {STREAM} is not there ({e}); run `campaign-ledger relay --nats {url}` first"), e))
            })
        })?;
        Ok(JetStreamSource {
            url: url.to_string(),
            runtime,
            stream,
            tail: Arc::default(),
            known_last: AtomicU64::new(0),
            handed: Mutex::default(),
            read_from_stream: AtomicU64::new(0),
        })
    }

    /// Starts following the stream from `from` (once; it then goes on by itself, resuming
    /// after an outage where it stopped).
    fn follow(&self, from: u64) {
        {
            let mut t = self.tail.state.lock().unwrap_or_else(|p| p.into_inner());
            if t.from.is_some() {
                return;
            }
            t.from = Some(from);
        }
        let (tail, stream) = (self.tail.clone(), self.stream.clone());
        self.runtime.spawn(async move {
            loop {
                let from = tail.state.lock().unwrap_or_else(|p| p.into_inner()).next();
                match crate::nats::positioned::ordered_messages(&stream, from).await {
                    Ok(mut messages) => {
                        let mut pause = Duration::from_millis(250);
                        while let Some(next) = messages.next().await {
                            let m = match next {
                                Ok(m) => m,
                                Err(e) => {
                                    // Said, then followed again from the last position held.
                                    tracing::warn!(error = %e, "following {STREAM}: the consumer failed; following again from where the tail is");
                                    break;
                                }
                            };
                            let Ok(info) = m.info() else { continue };
                            let seq = info.stream_sequence;
                            let mut t = tail.state.lock().unwrap_or_else(|p| p.into_inner());
                            let next = t.next();
                            if seq != next {
                                // Not the next one: start again where we are. A gap (the
                                // stream lacks a position) cannot be filled, and readers fail
                                // on it saying what is missing: the tail says so once and
                                // tries again only every 5 s.
                                if seq > next {
                                    pause = Duration::from_secs(5);
                                    if !std::mem::replace(&mut t.gap_reported, true) {
                                        tracing::warn!(
                                            missing = next,
                                            next = seq,
                                            "{STREAM} lacks a position (the relay never leaves one): was a message deleted?"
                                        );
                                    }
                                }
                                break;
                            }
                            t.received = seq;
                            // Copied: a slice would keep the client's whole read buffer alive.
                            t.kept
                                .push_back((seq, bytes::Bytes::copy_from_slice(&m.message.payload)));
                            if t.kept.len() > TAIL_KEEP {
                                t.kept.pop_front();
                            }
                            drop(t);
                            tail.changed.notify_all();
                        }
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "following {STREAM}: cannot start a consumer; retrying in 250 ms"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// How many events reads have taken from the stream itself (a consumer from the position
    /// asked for) rather than from what the tail kept: a follower keeps it low.
    pub fn read_from_stream(&self) -> u64 {
        self.read_from_stream.load(Ordering::Relaxed)
    }

    /// The last position the follower's tail has received (0 before `wait_beyond` starts it):
    /// how far a follower could read without asking the stream.
    pub fn tail_received(&self) -> u64 {
        self.tail
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received
    }

    fn following(&self) -> bool {
        self.tail
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .from
            .is_some()
    }

    /// The highest position the stream has been seen to hold, by the tail or by asking.
    fn seen_last(&self) -> u64 {
        let tail = self
            .tail
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .received;
        tail.max(self.known_last.load(Ordering::SeqCst))
    }

    /// What the tail holds of positions (after, to]: the first position it keeps there and the
    /// payloads from it on, up to `to` or as far as it has received (it forgets those up to
    /// `after`: a follower does not read back; a read from further back, `head()` for one, is
    /// served by the stream).
    fn kept_in_tail(&self, after: u64, to: u64) -> Option<(u64, Vec<bytes::Bytes>)> {
        let mut t = self.tail.state.lock().unwrap_or_else(|p| p.into_inner());
        while t.kept.front().is_some_and(|(p, _)| *p <= after) {
            t.kept.pop_front();
        }
        let first = t.kept.front()?.0;
        if first > to {
            return None;
        }
        Some((
            first,
            t.kept
                .iter()
                .take_while(|(p, _)| *p <= to)
                .map(|(_, b)| b.clone())
                .collect(),
        ))
    }

    fn last_sequence(&self) -> Result<u64, StoreError> {
        let mut s = self.stream.clone();
        let last = self.runtime.block_on(async {
            Ok::<_, StoreError>(s.info().await.map_err(unavailable)?.state.last_sequence)
        })?;
        let seen = self.seen_last();
        if last < seen {
            // The stream holds less than it was seen to: it was deleted and created again
            // (for another ledger, or to publish this one afresh). Forget what was seen of
            // the old one; the engine, finding the log shorter than what it folded, reloads
            // and rebuilds what does not belong to this stream.
            tracing::warn!(
                was = seen,
                now = last,
                "{STREAM} is shorter than it was: it was replaced; reading it afresh"
            );
            self.known_last.store(last, Ordering::SeqCst);
            let mut t = self.tail.state.lock().unwrap_or_else(|p| p.into_inner());
            t.kept.clear();
            t.received = 0;
            t.gap_reported = false;
            if t.from.is_some() {
                t.from = Some(1);
            }
            drop(t);
            self.handed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        } else {
            self.known_last.fetch_max(last, Ordering::SeqCst);
        }
        Ok(last)
    }

    /// Calls `f` with every event of positions (after, to], in order, borrowed from the message,
    /// each one's hash checked (and its link to the event handed on before it, when that was
    /// its predecessor): a message altered or put into the stream by another publisher stops
    /// the read with an error instead of being folded.
    fn each(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        if to <= after {
            return Ok(0);
        }
        // The hash of the event before the first one, when a recent read handed it on.
        let mut last = if after == 0 {
            Some((0, GENESIS_HASH))
        } else {
            self.handed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|(p, _)| *p == after)
                .copied()
        };
        let mut broken = None;
        let result = self.each_unchecked(after, to, &mut |e| {
            let unlinked = last.is_some_and(|(p, h)| e.position == p + 1 && e.prev_hash != h);
            if unlinked || chain_hash(&e.prev_hash, &e) != e.hash {
                broken = Some(StoreError::Corrupt(format!(
                    "{STREAM} position {}: {}; the stream was altered or holds messages of another publisher: \
                     compare with `campaign-ledger audit verify` on the ledger, and restrict who may publish on ledger.v1.events.>",
                    e.position,
                    if unlinked {
                        "its prev_hash is not the hash of the event before it"
                    } else {
                        "its hash does not match its content"
                    }
                ).into()));
                return false;
            }
            last = Some((e.position, e.hash));
            f(e)
        });
        if let Some(b) = broken {
            return Err(b);
        }
        if let Some(l) = last.filter(|l| l.0 > after) {
            let mut handed = self.handed.lock().unwrap_or_else(|p| p.into_inner());
            if !handed.contains(&l) {
                handed.push_back(l);
                if handed.len() > HANDED_KEEP {
                    handed.pop_front();
                }
            }
        }
        result
    }

    fn each_unchecked(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        // The stream never shrinks: asking it for its end is needed only beyond what it
        // was last seen to hold.
        let known = self.seen_last();
        let to = if to <= known {
            to
        } else {
            to.min(self.last_sequence()?)
        };
        let Some((first, kept)) = self.kept_in_tail(after, to) else {
            return self.read_stream(after, to, f).map(|(read, _)| read);
        };
        // The tail holds [first, last]. What comes before (a follower that fell further behind
        // than the tail keeps, during a burst) and after (what the stream stores but the tail
        // has not yet received) is read from the stream, and only that.
        let last = first + kept.len() as u64 - 1;
        let mut read = 0;
        if first > after + 1 {
            let (before, go_on) = self.read_stream(after, first - 1, f)?;
            read += before;
            if !go_on {
                return Ok(read);
            }
        }
        let (from_tail, go_on) = crate::nats::positioned::check_events(STREAM, first, &kept, f)?;
        read += from_tail;
        if go_on && last < to {
            read += self.read_stream(last, to, f)?.0;
        }
        Ok(read)
    }

    /// Reads (after, to] from the stream itself: how many events `f` was given, and whether it
    /// asked for more.
    fn read_stream(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<(u64, bool), StoreError> {
        let mut stopped = false;
        let read = crate::nats::positioned::read_events(
            &self.runtime,
            &self.stream,
            after,
            to,
            &mut |e| {
                stopped = !f(e);
                !stopped
            },
        )?;
        self.read_from_stream.fetch_add(read, Ordering::Relaxed);
        Ok((read, !stopped))
    }
}

impl EventStore for JetStreamSource {
    fn append(&self, _: AppendRequest) -> Result<AppendResult, StoreError> {
        Err(StoreError::Invalid(
            format!(
                "{} is a read-only copy of the log; send commands to the ledger itself",
                self.describe()
            )
            .into(),
        ))
    }

    fn read_stream(&self, _: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        Err(StoreError::Invalid(
            "reading one stream needs the ledger itself, not its NATS copy".into(),
        ))
    }

    fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        self.each(after, after.saturating_add(limit as u64), &mut |e| {
            out.push(e.to_recorded());
            true
        })?;
        Ok(out)
    }

    fn scan(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.each(after, to, f)
    }

    fn scan_data(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(DataRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.each(after, to, &mut |e| f(e.data_ref()))
    }

    fn command(&self, _: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        Ok(None)
    }

    fn head(&self) -> Result<Head, StoreError> {
        let last = self.last_sequence()?;
        if last == 0 {
            return Ok(Head {
                position: 0,
                hash: GENESIS_HASH,
            });
        }
        let mut hash = GENESIS_HASH;
        self.each(last - 1, last, &mut |e| {
            hash = e.hash;
            false
        })?;
        Ok(Head {
            position: last,
            hash,
        })
    }

    /// The stream's end, asked of the server; for a follower, the most the stream has been
    /// seen to hold, by its tail or by the server when `wait_beyond` asked it (after 50 ms
    /// without news from the tail).
    fn head_position(&self) -> Result<u64, StoreError> {
        if self.following() {
            return Ok(self.seen_last());
        }
        self.last_sequence()
    }

    /// Returns as soon as the stream is seen to store an event beyond `position` (the tail
    /// receives it; the first call starts the tail), or when the stream is found beyond it by
    /// asking the server every 50 ms, or at the timeout.
    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        self.follow(position + 1);
        let deadline = Instant::now() + timeout;
        let tail = &self.tail;
        loop {
            let t = tail.state.lock().unwrap_or_else(|p| p.into_inner());
            if t.received > position {
                return Ok(t.received);
            }
            let now = Instant::now();
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            let (t, _) = tail
                .changed
                .wait_timeout_while(t, wait, |t| t.received <= position)
                .unwrap_or_else(|p| p.into_inner());
            if t.received > position {
                return Ok(t.received);
            }
            drop(t);
            let last = self.last_sequence()?;
            if last > position || Instant::now() >= deadline {
                return Ok(last);
            }
        }
    }

    fn describe(&self) -> String {
        format!("{}/{STREAM}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_server_is_reported_with_the_clients_error_as_cause() {
        // Port 1 on the loopback: nothing listens there, the connection is refused at once.
        let err = JetStreamSource::connect("nats://127.0.0.1:1")
            .err()
            .expect("nothing listens on port 1");
        assert!(matches!(err, BusError::Nats(_)), "{err}");
        assert!(
            err.to_string().contains("cannot reach nats://127.0.0.1:1"),
            "{err}"
        );
        let cause = err.cause().expect("the client's error is kept");
        assert!(
            err.to_string().contains(&cause.to_string()),
            "{err} / {cause}"
        );
    }
}
