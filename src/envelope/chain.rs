//! The hash chain: `hash = SHA-256(prev_hash ‖ canonical bytes of the event)`.
//!
//! Canonical bytes: the envelope fields in a fixed order, each as a 4-byte big-endian length
//! followed by its UTF-8 bytes (numbers in decimal, UUIDs hyphenated lower-case, an absent
//! correlation id as the empty string). The data and actor are the stored canonical JSON text.
//! Any change to any stored byte, any reordering or removal changes a hash.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// A borrowed event envelope.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct EventRef<'a> {
    pub position: u64,
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub occurred_at: &'a str,
    pub recorded_at: &'a str,
    pub command_id: Uuid,
    pub correlation_id: Option<&'a str>,
    pub actor: &'a str,
    pub data: &'a str,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl<'a> EventRef<'a> {
    /// An owned copy.
    pub fn to_recorded(&self) -> super::RecordedEvent {
        super::RecordedEvent {
            position: self.position,
            event_id: self.event_id,
            stream_id: self.stream_id.to_string(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_string(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at.to_string(),
            recorded_at: self.recorded_at.to_string(),
            command_id: self.command_id,
            correlation_id: self.correlation_id.map(str::to_string),
            actor: self.actor.to_string(),
            data: self.data.to_string(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// The part of the event that readers of its data need.
    pub fn data_ref(&self) -> super::DataRef<'a> {
        super::DataRef {
            position: self.position,
            stream_id: self.stream_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            data: self.data,
            hash: self.hash,
        }
    }
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}

/// Computes the hash of an event from its predecessor's hash and its own fields
/// (its stored `prev_hash` and `hash` are ignored).
pub fn chain_hash(prev: &[u8; 32], e: &EventRef<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    let mut num = itoa_buf();
    field(&mut h, fmt_u64(&mut num, e.position));
    let mut ub = Uuid::encode_buffer();
    field(
        &mut h,
        e.event_id.hyphenated().encode_lower(&mut ub).as_bytes(),
    );
    field(&mut h, e.stream_id.as_bytes());
    field(&mut h, fmt_u64(&mut num, e.stream_version));
    field(&mut h, e.event_type.as_bytes());
    field(&mut h, fmt_u64(&mut num, e.schema_version as u64));
    field(&mut h, e.occurred_at.as_bytes());
    field(&mut h, e.recorded_at.as_bytes());
    field(
        &mut h,
        e.command_id.hyphenated().encode_lower(&mut ub).as_bytes(),
    );
    field(&mut h, e.correlation_id.unwrap_or("").as_bytes());
    field(&mut h, e.actor.as_bytes());
    field(&mut h, e.data.as_bytes());
    h.finalize().into()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Where a chain breaks: the first bad position, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first bad position.
    pub position: u64,
    /// What is wrong there.
    pub reason: String,
}

/// Checks events one after another as the chain requires: positions follow one another,
/// each `prev_hash` is the previous `hash`, each `hash` matches the event's bytes, stream
/// versions follow one another and commit times never go backwards. Shared by `verify` (a
/// store, in parallel segments), `verify_export` and `import` (an export), and a store's
/// `import` (events continuing its head).
pub(crate) struct ChainCheck {
    /// The next position expected (`None` before the first event of a window).
    next: Option<u64>,
    /// The hash the next event must name as its `prev_hash` (`None` before the first event
    /// of a window or segment: its predecessor is outside it).
    prev: Option<[u8; 32]>,
    /// The first event's position, `prev_hash` and commit time (a segment's link to the one
    /// before).
    first: Option<(u64, [u8; 32], String)>,
    last_recorded: String,
    /// Per stream: the last version seen.
    versions: HashMap<String, u64>,
    /// Per stream first seen here: its first version and position (segments only; checked
    /// against the segments before when they are joined).
    first_versions: Option<HashMap<String, (u64, u64)>>,
    /// Whether the checked events start at position 1 (every stream starts at version 1).
    from_start: bool,
    events: u64,
}

impl ChainCheck {
    /// For a whole log, from position 1.
    pub(crate) fn from_start() -> ChainCheck {
        ChainCheck {
            next: Some(1),
            prev: Some(GENESIS_HASH),
            first: None,
            last_recorded: String::new(),
            versions: HashMap::new(),
            first_versions: None,
            from_start: true,
            events: 0,
        }
    }

    /// For a window starting anywhere (an export with --from or --since): its first event
    /// is taken as it comes, the rest must follow it.
    pub(crate) fn window() -> ChainCheck {
        ChainCheck {
            next: None,
            prev: None,
            from_start: false,
            ..ChainCheck::from_start()
        }
    }

    /// For the segment of a log starting at `start` (> 1), to be joined to the one before.
    pub(crate) fn segment(start: u64) -> ChainCheck {
        ChainCheck {
            next: Some(start),
            first_versions: Some(HashMap::new()),
            ..ChainCheck::window()
        }
    }

    /// The position the next event must have (`None` before the first of a window).
    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    /// For events that continue a log whose head is at `position` with `hash`, committed at
    /// `recorded_at` (an import): each stream's first event here is taken as it comes
    /// (`first_seen` says which, for a check against the log's own version of it).
    pub(crate) fn after(position: u64, hash: [u8; 32], recorded_at: &str) -> ChainCheck {
        ChainCheck {
            next: Some(position + 1),
            prev: Some(hash),
            last_recorded: recorded_at.to_string(),
            ..if position == 0 {
                ChainCheck::from_start()
            } else {
                ChainCheck::segment(position + 1)
            }
        }
    }

    /// Events checked so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Whether `e`, just checked, is the first event of its stream seen here (windows and
    /// segments; from position 1 every stream starts at version 1 anyway).
    pub(crate) fn first_seen(&self, e: &EventRef<'_>) -> bool {
        self.first_versions
            .as_ref()
            .and_then(|f| f.get(e.stream_id))
            .is_some_and(|(_, p)| *p == e.position)
    }

    /// The hash of the last event checked (the genesis hash before any).
    pub(crate) fn head_hash(&self) -> [u8; 32] {
        self.prev.unwrap_or(GENESIS_HASH)
    }

    /// Checks the next event; the error names what is wrong with it.
    pub(crate) fn check(&mut self, e: &EventRef<'_>) -> Result<(), ChainBreak> {
        let fail = |position: u64, reason: String| ChainBreak { position, reason };
        let expected = match self.next {
            Some(n) => n,
            None if e.position == 1 => {
                self.from_start = true;
                self.prev = Some(GENESIS_HASH);
                1
            }
            None => e.position,
        };
        if e.position != expected {
            return Err(fail(
                expected.min(e.position),
                if e.position > expected {
                    format!(
                        "position {expected} is missing (the next event found is at {})",
                        e.position
                    )
                } else {
                    format!("position {} appears after {}", e.position, expected - 1)
                },
            ));
        }
        let prev = *self.prev.get_or_insert(e.prev_hash);
        if e.prev_hash != prev {
            return Err(fail(expected, "its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into()));
        }
        if chain_hash(&prev, e) != e.hash {
            return Err(fail(
                expected,
                "its contents do not match its hash (the event was altered)".into(),
            ));
        }
        if e.recorded_at < self.last_recorded.as_str() {
            return Err(fail(
                expected,
                format!(
                    "it is recorded at {} before the event before it ({})",
                    e.recorded_at, self.last_recorded
                ),
            ));
        }
        match self.versions.get_mut(e.stream_id) {
            Some(v) if e.stream_version == *v + 1 => *v += 1,
            Some(v) => {
                return Err(fail(
                    expected,
                    format!(
                        "stream {} jumps from version {} to {}",
                        e.stream_id, v, e.stream_version
                    ),
                ))
            }
            None if self.from_start && e.stream_version != 1 => {
                return Err(fail(
                    expected,
                    format!(
                        "stream {} starts at version {}, not 1",
                        e.stream_id, e.stream_version
                    ),
                ))
            }
            None => {
                self.versions
                    .insert(e.stream_id.to_string(), e.stream_version);
                if let Some(f) = &mut self.first_versions {
                    f.insert(e.stream_id.to_string(), (e.stream_version, e.position));
                }
            }
        }
        if self.first.is_none() {
            self.first = Some((e.position, e.prev_hash, e.recorded_at.to_string()));
        }
        self.prev = Some(e.hash);
        if e.recorded_at != self.last_recorded {
            self.last_recorded.clear();
            self.last_recorded.push_str(e.recorded_at);
        }
        self.next = Some(expected + 1);
        self.events += 1;
        Ok(())
    }

    /// Joins the segment that follows this one (checked on its own): its first event must
    /// name this one's last hash, its times must not go back, and each stream it continues
    /// must go on from this one's last version. `error` is the segment's own first break, if
    /// any; the earliest break of the two is returned.
    pub(crate) fn join(
        &mut self,
        next: ChainCheck,
        error: Option<ChainBreak>,
    ) -> Result<(), ChainBreak> {
        let mut breaks: Vec<(u64, String)> = Vec::new();
        if let Some(ChainBreak { position, reason }) = error {
            breaks.push((position, reason));
        }
        let start = self.next.unwrap_or(1);
        if let Some((first_position, first_prev, first_recorded)) = &next.first {
            if *first_position != start {
                breaks.push((
                    start,
                    format!(
                        "position {start} is missing (the next event found is at {first_position})"
                    ),
                ));
            } else if Some(*first_prev) != self.prev {
                breaks.push((start, "its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into()));
            } else if first_recorded.as_str() < self.last_recorded.as_str() {
                breaks.push((
                    start,
                    format!(
                        "it is recorded at {first_recorded} before the event before it ({})",
                        self.last_recorded
                    ),
                ));
            }
        } else if breaks.is_empty() {
            // The segment's range held no event at all.
            breaks.push((start, format!("position {start} is missing")));
        }
        for (stream, (version, position)) in next.first_versions.iter().flatten() {
            let before = self.versions.get(stream).copied().unwrap_or(0);
            if *version != before + 1 {
                breaks.push((
                    *position,
                    if before == 0 {
                        format!("stream {stream} starts at version {version}, not 1")
                    } else {
                        format!("stream {stream} jumps from version {before} to {version}")
                    },
                ));
            }
        }
        if let Some((position, reason)) = breaks.into_iter().min_by_key(|(p, _)| *p) {
            return Err(ChainBreak { position, reason });
        }
        self.versions.extend(next.versions);
        self.prev = next.prev.or(self.prev);
        self.last_recorded = next.last_recorded;
        self.next = next.next;
        self.events += next.events;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal() {
        let mut b = itoa_buf();
        assert_eq!(fmt_u64(&mut b, 0), b"0");
        assert_eq!(fmt_u64(&mut b, 1234567890123), b"1234567890123");
        assert_eq!(fmt_u64(&mut b, u64::MAX), u64::MAX.to_string().as_bytes());
    }
}
