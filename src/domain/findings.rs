//! Data-quality findings: where a person's recorded series no longer holds.
//!
//! A correction (`ReverseDoseEntry`) is always recorded; what it breaks in the series is not
//! refused but found here, by a pure function of the folded series (`PersonState`). Nothing
//! about findings is stored: they are derived from the log every time, so a later command that
//! makes the series whole (the first dose recorded as given elsewhere, or the reversal of the
//! later entry) makes the finding disappear from the open list.
//!
//! Each valid entry is judged only against the valid entries dated at or before it, and the
//! finding is dated at that entry. So the findings of a series as of a business date are
//! exactly the findings dated on or before it: `as_of` reads need no second fold.

use super::decide::{DoseEntry, PersonState};
use super::policy::Policy;
use super::types::{DoseKind, Product};
use chrono::{Duration, Months, NaiveDate};
use serde::Serialize;
use uuid::Uuid;

/// What no longer holds in a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A second dose with no valid first dose dated at or before it.
    SecondDoseWithoutFirst,
    /// A booster with no primary series completed at or before it.
    BoosterWithoutPrimarySeries,
    /// An OFII dose given earlier than the minimum interval after the dose before it.
    DoseIntervalTooShort,
}

impl FindingKind {
    /// Every kind, in report order.
    pub const ALL: [FindingKind; 3] = [
        FindingKind::SecondDoseWithoutFirst,
        FindingKind::BoosterWithoutPrimarySeries,
        FindingKind::DoseIntervalTooShort,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::SecondDoseWithoutFirst => "second_dose_without_first",
            FindingKind::BoosterWithoutPrimarySeries => "booster_without_primary_series",
            FindingKind::DoseIntervalTooShort => "dose_interval_too_short",
        }
    }

    /// What to do about it, as one sentence for a supervisor.
    pub fn advice(self) -> &'static str {
        match self {
            FindingKind::SecondDoseWithoutFirst => "Record the first dose the person really had (RecordExternalDose if it was given elsewhere), or reverse the second dose if it too was entered in error.",
            FindingKind::BoosterWithoutPrimarySeries => "Record the missing dose of the primary series (RecordExternalDose if it was given elsewhere), or reverse the booster if it was entered in error.",
            FindingKind::DoseIntervalTooShort => "Check the dates of both doses: reverse the entry that is wrong and record it again with its true date.",
        }
    }
}

/// One entry a finding involves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvolvedEntry {
    /// The command that recorded the entry (what `ReverseDoseEntry` names).
    pub command_id: Uuid,
    /// Its kind of dose.
    pub dose: DoseKind,
    /// Its business date (campaign time zone).
    pub date: NaiveDate,
    /// Given by the OFII (`true`) or recorded as given elsewhere.
    pub ofii: bool,
    /// Reversed as entered in error.
    pub reversed: bool,
}

/// A finding about one person's series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What no longer holds.
    pub kind: FindingKind,
    /// The date of the entry that no longer holds (the finding's business date).
    pub date: NaiveDate,
    /// The directorate that must act: the one that gave the dose, else the one that gave the
    /// person's latest OFII dose; `None` for a series with no OFII dose at all.
    pub directorate: Option<String>,
    /// The entry that no longer holds first, then the entries that explain it (the reversed
    /// ones, the dose before it).
    pub entries: Vec<InvolvedEntry>,
}

fn involved(d: &DoseEntry, policy: &Policy) -> InvolvedEntry {
    InvolvedEntry {
        command_id: d.origin.command_id,
        dose: d.kind,
        date: policy.local_date(d.at),
        ofii: d.given.is_some(),
        reversed: d.reversed,
    }
}

/// When the primary series was completed among `primary` (valid, non-booster, in date order).
fn completed_at(primary: &[&DoseEntry], policy: &Policy) -> Option<NaiveDate> {
    primary
        .iter()
        .enumerate()
        .find(|(i, d)| *i >= 1 || d.product == Product::Jcovden || d.prior_infection_counted)
        .map(|(_, d)| policy.local_date(d.at))
}

/// The findings of one person's series, in date order.
pub fn findings(person: &PersonState, policy: &Policy) -> Vec<Finding> {
    let mut valid: Vec<&DoseEntry> = person.doses.iter().filter(|d| !d.reversed).collect();
    valid.sort_by_key(|d| d.at); // stable: record order among entries of the same instant
    let reversed: Vec<&DoseEntry> = person.doses.iter().filter(|d| d.reversed).collect();
    let directorate_of = |e: &DoseEntry| -> Option<String> {
        e.given.as_ref().map(|g| g.directorate.clone()).or_else(|| {
            let mut ofii: Vec<&DoseEntry> =
                person.doses.iter().filter(|d| d.given.is_some()).collect();
            ofii.sort_by_key(|d| d.at);
            ofii.last()
                .and_then(|d| d.given.as_ref())
                .map(|g| g.directorate.clone())
        })
    };
    let mut out = Vec::new();
    for (i, e) in valid.iter().enumerate() {
        // Every other valid entry dated at or before it (same-instant entries included).
        let before: Vec<&DoseEntry> = valid
            .iter()
            .enumerate()
            .filter(|&(j, d)| j != i && d.at <= e.at)
            .map(|(_, d)| *d)
            .collect();
        let day = policy.local_date(e.at);
        let explained_by = |kinds: &[DoseKind]| -> Vec<InvolvedEntry> {
            reversed
                .iter()
                .filter(|r| kinds.contains(&r.kind) && r.at <= e.at)
                .map(|r| involved(r, policy))
                .collect()
        };
        let finding = |kind, mut rest: Vec<InvolvedEntry>| {
            let mut entries = vec![involved(e, policy)];
            entries.append(&mut rest);
            Finding {
                kind,
                date: day,
                directorate: directorate_of(e),
                entries,
            }
        };
        match e.kind {
            DoseKind::First => {}
            DoseKind::Second => {
                let Some(first) = before.iter().rev().find(|d| d.kind == DoseKind::First) else {
                    out.push(finding(
                        FindingKind::SecondDoseWithoutFirst,
                        explained_by(&[DoseKind::First]),
                    ));
                    continue;
                };
                if e.given.is_some() {
                    if let Some(&days) = policy.second_dose_min_days.get(&first.product) {
                        if day < policy.local_date(first.at) + Duration::days(days) {
                            out.push(finding(
                                FindingKind::DoseIntervalTooShort,
                                vec![involved(first, policy)],
                            ));
                        }
                    }
                }
            }
            DoseKind::Booster => {
                let primary: Vec<&DoseEntry> = before
                    .iter()
                    .copied()
                    .filter(|d| d.kind != DoseKind::Booster)
                    .collect();
                let Some(completed) = completed_at(&primary, policy) else {
                    out.push(finding(
                        FindingKind::BoosterWithoutPrimarySeries,
                        explained_by(&[DoseKind::First, DoseKind::Second]),
                    ));
                    continue;
                };
                if e.given.is_some() {
                    let months = policy.booster_delay_months(day);
                    let earliest = completed
                        .checked_add_months(Months::new(months))
                        .unwrap_or(completed);
                    if day < earliest {
                        let last = primary.last().map(|d| involved(d, policy));
                        out.push(finding(
                            FindingKind::DoseIntervalTooShort,
                            last.into_iter().collect(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The findings dated on or before `as_of` (all when `None`): the findings of the series as
/// it stood at the end of that business day.
pub fn findings_as_of(
    person: &PersonState,
    policy: &Policy,
    as_of: Option<NaiveDate>,
) -> Vec<Finding> {
    let mut all = findings(person, policy);
    if let Some(d) = as_of {
        all.retain(|f| f.date <= d);
    }
    all
}
