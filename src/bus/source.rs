//! The JetStream stream `LEDGER_EVENTS` read as a log: what NATS-fed projection workers fold.
//! Read-only: it implements the reading half of `EventStore` (appends are refused), so the
//! projection engine runs unchanged on it, with its checkpoint (the stream sequence, which is
//! the ledger position) saved with its state in one transaction in its own SQLite file.
//!
//! Why an ordered consumer from the saved checkpoint rather than a durable consumer's
//! server-side cursor: the state and its position must be saved in one atomic write; a second
//! cursor on the server could drift from it after a crash. Every read starts where the saved
//! state ends, and the hash of that position is checked against the stream.

use super::cloudevents::with_event;
use super::BusError;
use super::STREAM;
use crate::store::{
    AppendRequest, AppendResult, CommandRecord, DataRef, EventRef, EventStore, Head, RecordedEvent,
    StoreError, GENESIS_HASH,
};
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `LEDGER_EVENTS` on a NATS server, as a read-only log.
pub struct JetStreamSource {
    url: String,
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
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
        let js = runtime.block_on(async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(3))
                .connect(addrs)
                .await
                .map_err(BusError::nats)?;
            let js = jetstream::new(client);
            js.get_stream(STREAM).await.map_err(|e| {
                BusError::Nats(format!("stream {STREAM} is not there ({e}); run `campaign-ledger relay --nats {url}` first"))
            })?;
            Ok::<_, BusError>(js)
        })?;
        Ok(JetStreamSource {
            url: url.to_string(),
            runtime,
            js,
        })
    }

    fn last_sequence(&self) -> Result<u64, StoreError> {
        self.runtime.block_on(async {
            let mut s = self.js.get_stream(STREAM).await.map_err(unavailable)?;
            Ok(s.info().await.map_err(unavailable)?.state.last_sequence)
        })
    }

    /// Calls `f` with every event of positions (after, to], in order, borrowed from the message.
    fn each(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        let last = self.last_sequence()?;
        let to = to.min(last);
        if to <= after {
            return Ok(0);
        }
        self.runtime.block_on(async {
            let stream = self.js.get_stream(STREAM).await.map_err(unavailable)?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: after + 1,
                    },
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            let mut seen = 0u64;
            let mut expected = after + 1;
            while expected <= to {
                let m = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
                    Ok(Some(m)) => m.map_err(unavailable)?,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(unavailable(format!(
                            "no message for position {expected} within 10 s"
                        )))
                    }
                };
                let go_on = with_event(&m.payload, |e| {
                    if e.position != expected {
                        return Err(StoreError::Corrupt(format!(
                            "stream {STREAM} holds position {} where {expected} was expected",
                            e.position
                        )));
                    }
                    Ok(f(e))
                })
                .map_err(StoreError::Corrupt)??;
                expected += 1;
                seen += 1;
                if !go_on {
                    break;
                }
            }
            Ok(seen)
        })
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

    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.last_sequence()?;
            if last > position || Instant::now() >= deadline {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(25).min(deadline - Instant::now()));
        }
    }

    fn describe(&self) -> String {
        format!("{}/{STREAM}", self.url)
    }
}
