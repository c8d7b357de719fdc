//! What changed since: the entries recorded in a window of commit times that changed figures
//! of earlier business dates (paper records entered late, reversals, corrections), with a
//! projection's figures for each date they touch, as known before the window and after it.
//! What an auditor otherwise gets from two reports, an export and a script.

use super::{AppError, Reader};
use crate::projection::{Report, Row};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One entry recorded in the window for an earlier business date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangedEntry {
    /// Its position in the log.
    pub position: u64,
    /// When it was recorded.
    pub recorded_at: String,
    /// The event.
    pub event_type: String,
    /// `reversal` (an entry taken back) or `late_entry` (recorded after its business date).
    pub kind: &'static str,
    /// The directorate whose figures it changes (none for a dose given elsewhere).
    pub directorate: Option<String>,
    /// The business date it counts on (campaign time zone).
    pub business_date: NaiveDate,
}

/// A projection's figures for one date and directorate, before and after the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureChange {
    /// The business date (the projection read as of it).
    pub as_of: NaiveDate,
    /// The directorate (`None`: the projection's totals).
    pub directorate: Option<String>,
    /// As known at the start of the window.
    pub before: Option<Row>,
    /// As known at its end.
    pub after: Option<Row>,
}

/// What changed in a window of commit times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    /// The window's start (exclusive).
    pub known_since: String,
    /// Its end (inclusive); `None`: everything recorded.
    pub known_until: Option<String>,
    /// The projection whose figures are compared.
    pub projection: String,
    /// The entries, in log order.
    pub entries: Vec<ChangedEntry>,
    /// For each date and directorate they touch, the figures before and after.
    pub figures: Vec<FigureChange>,
}

impl Reader {
    /// The entries recorded after `since` (and up to `until`) that count on an earlier
    /// business date, and `projection`'s rows for each date and directorate they touch, as
    /// known at `since` and at `until` (or now). With `after`, the window starts after that
    /// position (a checkpoint the auditor holds) rather than at a commit time: an entry recorded
    /// after the checkpoint is in it whatever time it says it was recorded at.
    pub fn changes(
        &self,
        since: DateTime<FixedOffset>,
        until: Option<DateTime<FixedOffset>>,
        projection: &str,
        after: Option<u64>,
    ) -> Result<Changes, AppError> {
        let tz = self.engine.time_zone();
        let (from, to) = (
            crate::store::format_recorded_at(since.to_utc()),
            until.map(|u| crate::store::format_recorded_at(u.to_utc())),
        );
        let mut entries = Vec::new();
        let head = self.store.head_position()?;
        self.store.scan(after.unwrap_or(0), head, &mut |e| {
            if after.is_none() && e.recorded_at <= from.as_str() {
                return true;
            }
            if to.as_deref().is_some_and(|t| e.recorded_at > t) {
                return false;
            }
            let (Ok(occurred), Ok(recorded)) = (
                DateTime::parse_from_rfc3339(e.occurred_at),
                DateTime::parse_from_rfc3339(e.recorded_at),
            ) else {
                return true;
            };
            let day = occurred.with_timezone(&tz).date_naive();
            let reversal = e.event_type.ends_with("Reversed");
            if reversal || day < recorded.with_timezone(&tz).date_naive() {
                entries.push(ChangedEntry {
                    position: e.position,
                    recorded_at: e.recorded_at.to_string(),
                    event_type: e.event_type.to_string(),
                    kind: if reversal { "reversal" } else { "late_entry" },
                    directorate: directorate_of(e.data),
                    business_date: day,
                });
            }
            true
        })?;
        let mut touched: BTreeMap<NaiveDate, BTreeSet<Option<String>>> = BTreeMap::new();
        for e in &entries {
            touched
                .entry(e.business_date)
                .or_default()
                .insert(e.directorate.clone());
        }
        let mut figures = Vec::new();
        for (day, directorates) in touched {
            let before = self.report(projection, Some(day), Some(since))?;
            let after = self.report(projection, Some(day), until)?;
            for d in directorates {
                figures.push(FigureChange {
                    as_of: day,
                    before: row_of(&before, d.as_deref()),
                    after: row_of(&after, d.as_deref()),
                    directorate: d,
                });
            }
        }
        Ok(Changes {
            known_since: since.to_rfc3339(),
            known_until: until.map(|u| u.to_rfc3339()),
            projection: projection.to_string(),
            entries,
            figures,
        })
    }
}

fn directorate_of(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct D {
        directorate: Option<String>,
    }
    serde_json::from_str::<D>(data).ok()?.directorate
}

/// The directorate's row of a report (its totals when the report has no directorate column
/// or no directorate is named).
fn row_of(r: &Report, directorate: Option<&str>) -> Option<Row> {
    match directorate {
        Some(d) if r.columns.iter().any(|c| c == "directorate") => r
            .rows
            .iter()
            .find(|row| {
                matches!(row.get("directorate"), Some(crate::projection::Val::Text(t)) if t == d)
            })
            .cloned(),
        _ => Some(r.totals.clone()),
    }
}
