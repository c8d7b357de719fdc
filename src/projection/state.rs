//! Projection state: per group, per local day, one cell per column. Keeping days apart is
//! what lets `--as-of` any date be answered from the stored state without replaying the log.

use super::definition::{Agg, Definition, EnvelopeField, Filter, Path_};
use chrono::{DateTime, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// A value of a `last`, `min` or `max` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Val {
    /// A number.
    Int(i64),
    /// Text.
    Text(String),
}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Val {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Text(a), Val::Text(b)) => a.cmp(b),
            (Val::Int(_), Val::Text(_)) => Ordering::Less,
            (Val::Text(_), Val::Int(_)) => Ordering::Greater,
        }
    }
}

/// One column's aggregate over some events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    /// count / sum.
    N(i64),
    /// last: (business time in µs, position, value).
    Last(Option<(i64, u64, Val)>),
    /// min.
    Min(Option<Val>),
    /// max.
    Max(Option<Val>),
}

impl Cell {
    /// The empty cell of an aggregate.
    pub fn empty(agg: Agg) -> Cell {
        match agg {
            Agg::Count | Agg::Sum => Cell::N(0),
            Agg::Last => Cell::Last(None),
            Agg::Min => Cell::Min(None),
            Agg::Max => Cell::Max(None),
        }
    }

    /// Folds `other` (later or parallel events) into `self`.
    pub fn merge(&mut self, other: &Cell) {
        match (self, other) {
            (Cell::N(a), Cell::N(b)) => *a += b,
            (Cell::Last(a), Cell::Last(Some(b)))
                if a.as_ref().is_none_or(|x| (x.0, x.1) < (b.0, b.1)) =>
            {
                *a = Some(b.clone())
            }
            (Cell::Min(a), Cell::Min(Some(b))) if a.as_ref().is_none_or(|x| b < x) => {
                *a = Some(b.clone())
            }
            (Cell::Max(a), Cell::Max(Some(b))) if a.as_ref().is_none_or(|x| b > x) => {
                *a = Some(b.clone())
            }
            _ => {}
        }
    }

    /// The cell's value for output.
    pub fn value(&self) -> Option<Val> {
        match self {
            Cell::N(n) => Some(Val::Int(*n)),
            Cell::Last(v) => v.as_ref().map(|x| x.2.clone()),
            Cell::Min(v) | Cell::Max(v) => v.clone(),
        }
    }
}

/// Day number: days since 1970-01-01 of the local date.
pub type Day = i32;

/// The day number of a date.
pub fn day_number(d: NaiveDate) -> Day {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as Day
}

/// The date of a day number.
pub fn day_date(d: Day) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(d as i64)
}

/// State of one projection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    /// group key → day → cells (one per column).
    pub groups: BTreeMap<Vec<String>, BTreeMap<Day, Vec<Cell>>>,
}

/// An event's data, parsed without allocating: its top-level keys and their raw JSON values.
pub struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'a> Fields<'a> {
    /// Scans a JSON object.
    pub fn parse(data: &'a str) -> Result<Fields<'a>, serde_json::Error> {
        serde_json::from_str(data)
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Fields<'a>, M::Error> {
                let mut v = Vec::with_capacity(16);
                while let Some((k, raw)) = m.next_entry::<&'de str, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An event as projections see it: envelope fields and the scanned data.
pub struct Input<'a> {
    /// Global position.
    pub position: u64,
    /// Type name.
    pub event_type: &'a str,
    /// Stream id (empty when no definition asks for it).
    pub stream_id: &'a str,
    /// Business time as stored.
    pub occurred_at: &'a str,
    /// Commit time (empty when no definition asks for it).
    pub recorded_at: &'a str,
    /// The data.
    pub fields: &'a Fields<'a>,
}

fn raw_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    if let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        if inner.contains('\\') {
            serde_json::from_str::<String>(s).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    } else if s == "null" {
        None
    } else {
        Some(Cow::Borrowed(s))
    }
}

fn raw_val(raw: &RawValue) -> Option<Val> {
    let s = raw.get();
    if s.starts_with('"') {
        raw_text(raw).map(|t| Val::Text(t.into_owned()))
    } else if s == "null" {
        None
    } else {
        Some(
            s.parse::<i64>()
                .map(Val::Int)
                .unwrap_or_else(|_| Val::Text(s.to_string())),
        )
    }
}

/// A nested path: parse the first level's value and walk the rest.
fn nested(raw: &RawValue, rest: &[String]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    for p in rest {
        v = v.get_mut(p)?.take();
    }
    (!v.is_null()).then_some(v)
}

fn lookup_text<'a>(input: &Input<'a>, path: &Path_) -> Option<Cow<'a, str>> {
    match path {
        Path_::Data(parts) => {
            let raw = input.fields.get(&parts[0])?;
            if parts.len() == 1 {
                raw_text(raw)
            } else {
                nested(raw, &parts[1..]).map(|v| {
                    Cow::Owned(match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                })
            }
        }
        Path_::Envelope(f) => Some(match f {
            EnvelopeField::StreamId => Cow::Borrowed(input.stream_id),
            EnvelopeField::EventType => Cow::Borrowed(input.event_type),
            EnvelopeField::OccurredAt => Cow::Borrowed(input.occurred_at),
            EnvelopeField::RecordedAt => Cow::Borrowed(input.recorded_at),
            EnvelopeField::Position => Cow::Owned(input.position.to_string()),
        }),
    }
}

fn lookup_val(input: &Input<'_>, path: &Path_) -> Option<Val> {
    match path {
        Path_::Data(parts) if parts.len() == 1 => raw_val(input.fields.get(&parts[0])?),
        Path_::Data(parts) => nested(input.fields.get(&parts[0])?, &parts[1..]).map(|v| match v {
            serde_json::Value::Number(n) if n.is_i64() => Val::Int(n.as_i64().unwrap_or(0)),
            serde_json::Value::String(s) => Val::Text(s),
            other => Val::Text(other.to_string()),
        }),
        Path_::Envelope(EnvelopeField::Position) => Some(Val::Int(input.position as i64)),
        other => lookup_text(input, other).map(|t| Val::Text(t.into_owned())),
    }
}

fn matches(input: &Input<'_>, filters: &[Filter]) -> bool {
    filters.iter().all(|f| match lookup_text(input, &f.path) {
        None => false,
        Some(t) => f.values.iter().any(|want| want == "*" || *want == *t),
    })
}

/// Per-thread scratch space for applying events: a time-zone offset cache and a reusable
/// group-key buffer, so the hot path does not allocate.
pub struct Scratch {
    tz: Tz,
    hour: i64,
    offset: i64,
    key: Vec<String>,
}

impl Scratch {
    /// Scratch space for the campaign time zone `tz`.
    pub fn new(tz: Tz) -> Scratch {
        Scratch {
            tz,
            hour: i64::MIN,
            offset: 0,
            key: Vec::new(),
        }
    }

    fn local_offset(&mut self, utc_secs: i64) -> i64 {
        let hour = utc_secs.div_euclid(3600);
        if hour != self.hour {
            let t = DateTime::from_timestamp(utc_secs, 0)
                .unwrap_or_default()
                .naive_utc();
            self.offset = self.tz.offset_from_utc_datetime(&t).fix().local_minus_utc() as i64;
            self.hour = hour;
        }
        self.offset
    }

    /// Reads a business time: an RFC 3339 instant or a `YYYY-MM-DD` date.
    /// Returns (local day, µs since epoch).
    pub fn business_time(&mut self, text: &str) -> Option<(Day, i64)> {
        if text.len() == 10 {
            let d: NaiveDate = text.parse().ok()?;
            let micros = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros();
            return Some((day_number(d), micros));
        }
        let (utc_secs, micros) = match fast_rfc3339(text.as_bytes()) {
            Some(x) => x,
            None => {
                let t = DateTime::parse_from_rfc3339(text).ok()?;
                (t.timestamp(), t.timestamp_subsec_micros() as i64)
            }
        };
        let local = utc_secs + self.local_offset(utc_secs);
        Some((
            local.div_euclid(86_400) as Day,
            utc_secs * 1_000_000 + micros,
        ))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → (UTC seconds, µs within the second).
fn fast_rfc3339(b: &[u8]) -> Option<(i64, i64)> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)? as u32, num(8..10)? as u32)?;
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b[i] == b'.' {
        i += 1;
        let mut scale = 100_000;
        while i < b.len() && b[i].is_ascii_digit() {
            micros += (b[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = day_number(date) as i64;
    Some((days * 86_400 + h * 3600 + m * 60 + s - offset, micros))
}

/// A definition compiled for applying events: by source, the columns it feeds and their signs.
pub struct Compiled {
    /// The definition.
    pub def: Definition,
    /// by source index: (column index, sign).
    feeds: Vec<Vec<(usize, i64)>>,
}

impl Compiled {
    /// Compiles a definition.
    pub fn new(def: Definition) -> Compiled {
        let feeds = def
            .sources
            .iter()
            .map(|s| {
                def.columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.events.as_ref().is_none_or(|ev| ev.contains(&s.event)))
                    .map(|(i, c)| (i, c.signs.get(&s.event).copied().unwrap_or(s.sign)))
                    .collect()
            })
            .collect();
        Compiled { def, feeds }
    }

    /// Folds one event of source `src` into `state`.
    pub fn apply(&self, state: &mut State, src: usize, input: &Input<'_>, scratch: &mut Scratch) {
        let source = &self.def.sources[src];
        if !matches(input, &source.filters) {
            return;
        }
        let time = source.time.as_ref().and_then(|p| lookup_text(input, p));
        let Some((day, micros)) = time
            .as_deref()
            .and_then(|t| scratch.business_time(t))
            .or_else(|| scratch.business_time(input.occurred_at))
        else {
            tracing::warn!(
                position = input.position,
                "event without a readable business time; skipped"
            );
            return;
        };
        let n = self.def.group_paths.len();
        scratch.key.resize(n, String::new());
        for (slot, p) in scratch.key.iter_mut().zip(&self.def.group_paths) {
            slot.clear();
            if let Some(t) = lookup_text(input, p) {
                slot.push_str(&t);
            }
        }
        let days = match state.groups.get_mut(&scratch.key) {
            Some(d) => d,
            None => state.groups.entry(scratch.key.clone()).or_default(),
        };
        let cells = days.entry(day).or_insert_with(|| {
            self.def
                .columns
                .iter()
                .map(|c| Cell::empty(c.agg))
                .collect()
        });
        for &(ci, sign) in &self.feeds[src] {
            let col = &self.def.columns[ci];
            if !matches(input, &col.filters) {
                continue;
            }
            let update = match col.agg {
                Agg::Count => Cell::N(sign),
                Agg::Sum => match col.field.as_ref().and_then(|p| lookup_val(input, p)) {
                    Some(Val::Int(n)) => Cell::N(sign * n),
                    _ => continue,
                },
                Agg::Last | Agg::Min | Agg::Max => {
                    let Some(v) = col.field.as_ref().and_then(|p| lookup_val(input, p)) else {
                        continue;
                    };
                    match col.agg {
                        Agg::Last => Cell::Last(Some((micros, input.position, v))),
                        Agg::Min => Cell::Min(Some(v)),
                        _ => Cell::Max(Some(v)),
                    }
                }
            };
            cells[ci].merge(&update);
        }
    }
}

/// Routes events to the projections and sources that take them.
pub struct Router {
    by_type: HashMap<String, usize>,
    routes: Vec<Vec<(usize, usize)>>,
    /// Whether any definition reads `$stream_id`, `$recorded_at` or `$occurred_at`, or relies
    /// on the envelope's business time.
    pub needs_envelope: bool,
}

fn uses_envelope(p: &Path_) -> bool {
    matches!(p, Path_::Envelope(_))
}

impl Router {
    /// Builds the routing table of a set of compiled definitions.
    pub fn new(compiled: &[Compiled]) -> Router {
        let mut by_type: HashMap<String, usize> = HashMap::new();
        let mut routes: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut needs_envelope = false;
        for (pi, c) in compiled.iter().enumerate() {
            needs_envelope |= c.def.group_paths.iter().any(uses_envelope);
            for col in &c.def.columns {
                needs_envelope |= col.field.as_ref().is_some_and(uses_envelope)
                    || col.filters.iter().any(|f| uses_envelope(&f.path));
            }
            for (si, s) in c.def.sources.iter().enumerate() {
                needs_envelope |= s.time.as_ref().is_none_or(uses_envelope)
                    || s.filters.iter().any(|f| uses_envelope(&f.path));
                let id = *by_type.entry(s.event.clone()).or_insert_with(|| {
                    routes.push(Vec::new());
                    routes.len() - 1
                });
                routes[id].push((pi, si));
            }
        }
        Router {
            by_type,
            routes,
            needs_envelope,
        }
    }

    /// The id of an event type that some projection takes.
    pub fn type_id(&self, event_type: &str) -> Option<usize> {
        self.by_type.get(event_type).copied()
    }

    /// (projection, source) pairs that take this event type id.
    pub fn routes(&self, type_id: usize) -> &[(usize, usize)] {
        &self.routes[type_id]
    }
}
