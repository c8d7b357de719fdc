//! The JetStream stream `LEDGER_EVENTS` read as a log: what NATS-fed projection workers fold.
//! Read-only: it implements the reading half of `EventStore` (appends are refused), so the
//! projection engine runs unchanged on it, with its checkpoint (the stream sequence, which is
//! the ledger position) saved with its state in one transaction in its own SQLite file.
//!
//! Why an ordered consumer from the saved checkpoint rather than a durable consumer's
//! server-side cursor: the state and its position must be saved in one atomic write; a second
//! cursor on the server could drift from it after a crash. Every read starts where the saved
//! state ends, and the hash of that position is checked against the stream.

use super::BusError;
use super::STREAM;
use crate::store::{
    AppendRequest, AppendResult, CommandRecord, DataRef, EventRef, EventStore, Head, RecordedEvent,
    StoreError, GENESIS_HASH,
};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `LEDGER_EVENTS` on a NATS server, as a read-only log.
pub struct JetStreamSource {
    url: String,
    runtime: tokio::runtime::Runtime,
    stream: stream::Stream,
    /// The highest `Ledger-Position` seen go by on the event subjects (a wake-up signal: the
    /// stream itself is read for the events).
    announced: Arc<Announced>,
    /// The last sequence the stream was last seen to hold (it never shrinks).
    known_last: AtomicU64,
}

#[derive(Default)]
struct Announced {
    position: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS: {e}"))
}

impl JetStreamSource {
    /// Connects to `url` (the stream must exist: run the relay first).
    pub fn connect(url: &str) -> Result<JetStreamSource, BusError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(BusError::nats)?;
        let addrs = super::server_addrs(url)?;
        let announced = Arc::new(Announced::default());
        let a = announced.clone();
        let stream = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(3))
                .connect(addrs)
                .await
                .map_err(BusError::nats)?;
            let js = jetstream::new(client.clone());
            let stream = js.get_stream(STREAM).await.map_err(|e| {
                BusError::Nats(format!("stream {STREAM} is not there ({e}); run `campaign-ledger relay --nats {url}` first"))
            })?;
            // Live events wake readers at once instead of at the next poll.
            let mut sub = client
                .subscribe(format!("{}.>", super::cloudevents::SUBJECT_PREFIX))
                .await
                .map_err(BusError::nats)?;
            tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    let p = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Ledger-Position"))
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    if let Some(p) = p {
                        a.position.fetch_max(p, Ordering::SeqCst);
                        drop(a.lock.lock());
                        a.changed.notify_all();
                    }
                }
            });
            Ok::<_, BusError>(stream)
        })?;
        Ok(JetStreamSource {
            url: url.to_string(),
            runtime,
            stream,
            announced,
            known_last: AtomicU64::new(0),
        })
    }

    fn last_sequence(&self) -> Result<u64, StoreError> {
        let mut s = self.stream.clone();
        let last = self.runtime.block_on(async {
            Ok::<_, StoreError>(s.info().await.map_err(unavailable)?.state.last_sequence)
        })?;
        self.known_last.fetch_max(last, Ordering::SeqCst);
        Ok(last)
    }

    /// Calls `f` with every event of positions (after, to], in order, borrowed from the message.
    fn each(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        // The stream never shrinks: asking it for its end is needed only beyond what it
        // was last seen to hold.
        let known = self.known_last.load(Ordering::SeqCst);
        let to = if to <= known {
            to
        } else {
            to.min(self.last_sequence()?)
        };
        crate::store::read_events(&self.runtime, &self.stream, after, to, f)
    }
}

impl EventStore for JetStreamSource {
    fn append(&self, _: AppendRequest) -> Result<AppendResult, StoreError> {
        Err(StoreError::Invalid(format!(
            "{} is a read-only copy of the log; send commands to the ledger itself",
            self.describe()
        )))
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

    fn head_position(&self) -> Result<u64, StoreError> {
        self.last_sequence()
    }

    /// Returns as soon as an event beyond `position` is seen go by live (it is readable a
    /// moment later: a reader that finds nothing yet simply asks again), or when the stream
    /// is found beyond it by polling every 50 ms, or at the timeout.
    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = Instant::now() + timeout;
        let a = &self.announced;
        loop {
            let announced = a.position.load(Ordering::SeqCst);
            if announced > position {
                return Ok(announced);
            }
            let last = self.last_sequence()?;
            let now = Instant::now();
            if last > position || now >= deadline {
                return Ok(last);
            }
            let guard = a.lock.lock().unwrap_or_else(|p| p.into_inner());
            let wait = (deadline - now).min(Duration::from_millis(50));
            let _ = a
                .changed
                .wait_timeout_while(guard, wait, |_| {
                    a.position.load(Ordering::SeqCst) <= position
                })
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn describe(&self) -> String {
        format!("{}/{STREAM}", self.url)
    }
}
