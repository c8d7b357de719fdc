//! The relay's acknowledgements: one checkpoint in `ACK_EVERY` waits for the server's answer,
//! which settles every message before it (the stream's expected last sequence makes them
//! all-or-nothing).

use super::*;

/// How often the relay asks for an acknowledgement: one event in `ACK_EVERY`, the last of
/// every batch and the first of every session. The others are published without a reply
/// subject. Safe because every
/// message carries `Nats-Expected-Last-Sequence`: the server stores position N only right
/// after N − 1, so the stream is always a prefix of the log, and an acknowledgement of
/// position N proves that every position up to N is stored. A message the server refused or
/// that was lost makes every later one fail the same check, up to the next checkpoint, whose
/// error makes the relay resync from the stream's end. One acknowledgement per event would
/// cost the server and the client about a third of their work per event.
pub(super) const ACK_EVERY: u64 = 256;

/// The checkpoints published and not yet acknowledged. Where the stream is known to be is
/// `RelayReport::position` (set to the stream's end when the session starts).
pub(super) struct Acks {
    pub(super) subscription: async_nats::Subscriber,
    pub(super) pending: VecDeque<u64>,
}

impl Acks {
    pub(super) async fn settle_all(
        &mut self,
        report: &mut RelayReport,
        outage: &Outage,
        generation: u64,
    ) -> Result<Option<SessionEnd>, BusError> {
        while !self.pending.is_empty() {
            if let Some(end) = self.settle_one(report, outage, generation).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Waits for the next acknowledgement (giving up after `PUBLISH_STALL`, or at once when
    /// the connection was re-established meanwhile: what was in flight may be lost).
    pub(super) async fn settle_one(
        &mut self,
        report: &mut RelayReport,
        outage: &Outage,
        generation: u64,
    ) -> Result<Option<SessionEnd>, BusError> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + PUBLISH_STALL;
        let message = loop {
            if outage.generation.load(Ordering::SeqCst) != generation {
                return Ok(Some(SessionEnd::Resync));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BusError::nats_because(format!(
                    "no acknowledgement within {PUBLISH_STALL:?}; reconnecting"
                )));
            }
            match tokio::time::timeout(Duration::from_millis(250), self.subscription.next()).await {
                Ok(Some(m)) => break m,
                Ok(None) => {
                    return Err(BusError::nats_because(
                        "the acknowledgement subscription ended".into(),
                    ))
                }
                Err(_) => continue,
            }
        };
        let position: u64 = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if let Some(status) = message.status {
            // 503: nothing stores the subject (the stream was deleted under the relay).
            return Err(BusError::nats_because(format!(
                "publish of position {position} answered {status}: is stream {STREAM} there?"
            )));
        }
        let unreadable = || {
            BusError::nats_because(format!(
                "unreadable acknowledgement of position {position}: {}",
                String::from_utf8_lossy(&message.payload)
            ))
        };
        let ack: PubAck = serde_json::from_slice(&message.payload).map_err(|_| unreadable())?;
        if ack.error.is_none() && ack.stream.is_none() {
            return Err(unreadable());
        }
        if let Some(error) = ack.error {
            if error.err_code == WRONG_LAST_SEQUENCE || error.err_code == DUPLICATE_IN_PROCESS {
                // The stream is not where this session thinks (someone else stored these
                // positions, or a message before this one was lost): resync from its end
                // rather than publish anything twice.
                tracing::debug!(position, "stream not at the expected sequence; resyncing");
                return Ok(Some(SessionEnd::Resync));
            }
            return Err(BusError::Refused(format!(
                "stream {STREAM} refused position {position}: {} (code {})",
                error.description, error.err_code
            )));
        }
        if ack.seq != position {
            tracing::debug!(
                position,
                sequence = ack.seq,
                "acknowledged at another sequence; resyncing"
            );
            return Ok(Some(SessionEnd::Resync));
        }
        // Positions up to this one are stored (the stream is a prefix of the log).
        if position > report.position {
            if !ack.duplicate {
                report.published += position - report.position;
            }
            report.position = position;
            report.progress.set(position);
        }
        while self.pending.front().is_some_and(|p| *p <= position) {
            self.pending.pop_front();
        }
        Ok(None)
    }
}

/// JetStream's error code for `Nats-Expected-Last-Sequence` not matching.
pub(super) const WRONG_LAST_SEQUENCE: u64 = 10071;

/// JetStream's error code for a message id another publish with the same id is storing
/// (racing relays on a replicated stream).
pub(super) const DUPLICATE_IN_PROCESS: u64 = 10158;

#[derive(serde::Deserialize)]
pub(super) struct PubAck {
    /// Present in every acknowledgement (and in JetStream's error replies).
    pub(super) stream: Option<String>,
    #[serde(default)]
    pub(super) seq: u64,
    #[serde(default)]
    pub(super) duplicate: bool,
    pub(super) error: Option<PubAckError>,
}

#[derive(serde::Deserialize)]
pub(super) struct PubAckError {
    #[serde(default)]
    pub(super) err_code: u64,
    #[serde(default)]
    pub(super) description: String,
}
