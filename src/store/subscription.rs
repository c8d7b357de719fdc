//! Catch-up then live subscription: reads from a position, then waits for new commits.
//! Positions are checked to follow one another, so a subscriber never sees a gap or a duplicate.

use super::{EventStore, RecordedEvent, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A subscription to the log from a position.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: u64,
    buffer: VecDeque<RecordedEvent>,
}

impl Subscription {
    pub(crate) fn new(store: Arc<dyn EventStore>, after: u64) -> Subscription {
        Subscription {
            store,
            after,
            buffer: VecDeque::new(),
        }
    }

    /// The position of the last event handed out.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next event, waiting at most `timeout` for one to be committed.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.buffer.pop_front() {
                if e.position != self.after + 1 {
                    return Err(StoreError::Corrupt(
                        format!(
                            "expected position {} after {}, read {}",
                            self.after + 1,
                            self.after,
                            e.position
                        )
                        .into(),
                    ));
                }
                self.after = e.position;
                return Ok(Some(e));
            }
            let batch = self.store.read_all(self.after, 1024)?;
            if !batch.is_empty() {
                self.buffer.extend(batch);
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.store.wait_beyond(self.after, deadline - now)?;
        }
    }
}
