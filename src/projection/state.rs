//! Projection state: per group, per local day, one cell per column. Keeping days apart is
//! what lets `--as-of` any date be answered from the stored state without replaying the log.

use super::definition::{Agg, Definition, EnvelopeField, Filter, Path_};
use crate::store::EventRef;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
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

/// An event as projections see it: the envelope plus the parsed data.
pub struct Input<'a> {
    /// Envelope.
    pub env: EventRef<'a>,
    /// Parsed data.
    pub data: &'a serde_json::Value,
}

fn lookup<'v>(
    input: &'v Input<'_>,
    path: &Path_,
) -> Option<std::borrow::Cow<'v, serde_json::Value>> {
    use std::borrow::Cow;
    match path {
        Path_::Data(parts) => {
            let mut v = input.data;
            for p in parts {
                v = v.get(p)?;
            }
            if v.is_null() {
                None
            } else {
                Some(Cow::Borrowed(v))
            }
        }
        Path_::Envelope(f) => Some(Cow::Owned(match f {
            EnvelopeField::StreamId => input.env.stream_id.into(),
            EnvelopeField::EventType => input.env.event_type.into(),
            EnvelopeField::OccurredAt => input.env.occurred_at.into(),
            EnvelopeField::RecordedAt => input.env.recorded_at.into(),
            EnvelopeField::Position => input.env.position.into(),
        })),
    }
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn matches(input: &Input<'_>, filters: &[Filter]) -> bool {
    filters.iter().all(|f| match lookup(input, &f.path) {
        None => false,
        Some(v) => {
            let t = match v.as_ref() {
                serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                other => std::borrow::Cow::Owned(other.to_string()),
            };
            f.values.iter().any(|want| want == "*" || *want == *t)
        }
    })
}

fn to_val(v: &serde_json::Value) -> Val {
    match v {
        serde_json::Value::Number(n) if n.is_i64() => Val::Int(n.as_i64().unwrap_or(0)),
        serde_json::Value::String(s) => Val::Text(s.clone()),
        other => Val::Text(other.to_string()),
    }
}

/// Reads a business time: an RFC 3339 instant or a `YYYY-MM-DD` date.
/// Returns (local day, µs since epoch).
pub fn business_time(text: &str, tz: &Tz) -> Option<(Day, i64)> {
    if text.len() == 10 {
        let d: NaiveDate = text.parse().ok()?;
        let micros = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros();
        return Some((day_number(d), micros));
    }
    let t = DateTime::parse_from_rfc3339(text).ok()?;
    Some((
        day_number(t.with_timezone(tz).date_naive()),
        t.timestamp_micros(),
    ))
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
    pub fn apply(&self, state: &mut State, src: usize, input: &Input<'_>, tz: &Tz) {
        let source = &self.def.sources[src];
        if !matches(input, &source.filters) {
            return;
        }
        let time_text = match &source.time {
            Some(p) => lookup(input, p).and_then(|v| v.as_str().map(str::to_string)),
            None => None,
        };
        let Some((day, micros)) =
            business_time(time_text.as_deref().unwrap_or(input.env.occurred_at), tz)
                .or_else(|| business_time(input.env.occurred_at, tz))
        else {
            tracing::warn!(
                position = input.env.position,
                "event without a readable business time; skipped"
            );
            return;
        };
        let key: Vec<String> = self
            .def
            .group_paths
            .iter()
            .map(|p| lookup(input, p).map(|v| as_text(&v)).unwrap_or_default())
            .collect();
        let cells = state
            .groups
            .entry(key)
            .or_default()
            .entry(day)
            .or_insert_with(|| {
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
            let field = col.field.as_ref().and_then(|p| lookup(input, p));
            let update = match col.agg {
                Agg::Count => Cell::N(sign),
                Agg::Sum => match field.as_deref().and_then(|v| v.as_i64()) {
                    Some(n) => Cell::N(sign * n),
                    None => continue,
                },
                Agg::Last => match field {
                    Some(v) => Cell::Last(Some((micros, input.env.position, to_val(&v)))),
                    None => continue,
                },
                Agg::Min => match field {
                    Some(v) => Cell::Min(Some(to_val(&v))),
                    None => continue,
                },
                Agg::Max => match field {
                    Some(v) => Cell::Max(Some(to_val(&v))),
                    None => continue,
                },
            };
            cells[ci].merge(&update);
        }
    }
}

/// Routes events to the projections and sources that take them.
pub struct Router {
    by_type: HashMap<String, Vec<(usize, usize)>>,
}

impl Router {
    /// Builds the routing table of a set of compiled definitions.
    pub fn new(compiled: &[Compiled]) -> Router {
        let mut by_type: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (pi, c) in compiled.iter().enumerate() {
            for (si, s) in c.def.sources.iter().enumerate() {
                by_type.entry(s.event.clone()).or_default().push((pi, si));
            }
        }
        Router { by_type }
    }

    /// (projection, source) pairs that take this event type.
    pub fn routes(&self, event_type: &str) -> Option<&[(usize, usize)]> {
        self.by_type.get(event_type).map(Vec::as_slice)
    }
}
