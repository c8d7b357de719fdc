//! Reading a projection's state as of a date: rows, totals, and their output forms.

use super::definition::{bucket_key, Agg, Bucket, Definition};
use super::state::{day_date, day_number, Cell, Day, State, Val};
use chrono::{Datelike, NaiveDate};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeMap;

/// One row: named keys then named values, in definition order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<(String, Option<Val>)>);

impl Row {
    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&Val> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
    }
    /// A numeric field (0 when absent).
    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Some(Val::Int(n)) => *n,
            _ => 0,
        }
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A projection read as of a date (and known at a time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Projection name.
    pub projection: String,
    /// Business date: events up to the end of this day (campaign time zone); `None`: all.
    pub as_of: Option<NaiveDate>,
    /// Commit time: only events recorded by then; `None`: everything recorded.
    pub known_at: Option<String>,
    /// The last log position folded in.
    pub position: u64,
    /// Column names, keys first.
    pub columns: Vec<String>,
    /// Rows, sorted.
    pub rows: Vec<Row>,
    /// Totals of the numeric columns.
    pub totals: Row,
}

fn fold(days: &BTreeMap<Day, Vec<Cell>>, def: &Definition, upto: Option<Day>) -> Option<Vec<Cell>> {
    let mut acc: Option<Vec<Cell>> = None;
    for (_, cells) in days.range(..=upto.unwrap_or(Day::MAX)) {
        let a = acc.get_or_insert_with(|| def.columns.iter().map(|c| Cell::empty(c.agg)).collect());
        for (x, y) in a.iter_mut().zip(cells) {
            x.merge(y);
        }
    }
    acc
}

fn bucket_of(b: Bucket, d: Day) -> NaiveDate {
    let date = day_date(d);
    match b {
        Bucket::Day => date,
        Bucket::Week => date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64),
    }
}

/// Computes the report of `state` as of `as_of`.
pub fn build(
    def: &Definition,
    state: &State,
    as_of: Option<NaiveDate>,
    known_at: Option<String>,
    position: u64,
) -> Report {
    let upto = as_of.map(day_number);
    let key_names: Vec<String> = def
        .rollup_by
        .clone()
        .unwrap_or_else(|| def.group_by.clone());
    let mut columns = key_names.clone();
    if let Some(b) = def.bucket {
        columns.push(bucket_key(b).to_string());
    }
    columns.extend(def.columns.iter().map(|c| c.name.clone()));
    columns.extend(def.rollup_count.clone());

    // Per group, folded up to the as-of day: the basis of plain rows, rollups and totals.
    let folded: Vec<(&Vec<String>, Vec<Cell>)> = state
        .groups
        .iter()
        .filter_map(|(k, days)| fold(days, def, upto).map(|c| (k, c)))
        .collect();

    let make_row =
        |keys: Vec<(String, Option<Val>)>, cells: &[Cell], extra: Option<(String, i64)>| {
            let mut r = keys;
            r.extend(
                def.columns
                    .iter()
                    .zip(cells)
                    .map(|(c, cell)| (c.name.clone(), cell.value())),
            );
            if let Some((n, v)) = extra {
                r.push((n, Some(Val::Int(v))));
            }
            Row(r)
        };
    let key_vals = |names: &[String], key: &[String]| -> Vec<(String, Option<Val>)> {
        names
            .iter()
            .cloned()
            .zip(key.iter().map(|k| Some(Val::Text(k.clone()))))
            .collect()
    };

    let mut rows: Vec<Row> = Vec::new();
    if let Some(b) = def.bucket {
        for (key, days) in &state.groups {
            let mut buckets: BTreeMap<NaiveDate, Vec<Cell>> = BTreeMap::new();
            for (d, cells) in days.range(..=upto.unwrap_or(Day::MAX)) {
                let acc = buckets
                    .entry(bucket_of(b, *d))
                    .or_insert_with(|| def.columns.iter().map(|c| Cell::empty(c.agg)).collect());
                for (x, y) in acc.iter_mut().zip(cells) {
                    x.merge(y);
                }
            }
            let mut running: Vec<Cell> = def.columns.iter().map(|c| Cell::empty(c.agg)).collect();
            for (date, cells) in buckets {
                let shown = if def.cumulative {
                    for (x, y) in running.iter_mut().zip(&cells) {
                        x.merge(y);
                    }
                    running.clone()
                } else {
                    cells
                };
                let mut keys = key_vals(&def.group_by, key);
                keys.push((bucket_key(b).to_string(), Some(Val::Text(date.to_string()))));
                rows.push(make_row(keys, &shown, None));
            }
        }
    } else if let Some(rollup) = &def.rollup_by {
        let idx: Vec<usize> = rollup
            .iter()
            .map(|r| def.group_by.iter().position(|g| g == r).expect("validated"))
            .collect();
        let mut groups: BTreeMap<Vec<String>, (Vec<Cell>, i64)> = BTreeMap::new();
        for (key, cells) in &folded {
            let rk: Vec<String> = idx.iter().map(|&i| key[i].clone()).collect();
            let entry = groups
                .entry(rk)
                .or_insert_with(|| (def.columns.iter().map(|c| rollup_empty(c.agg)).collect(), 0));
            entry.1 += 1;
            for (x, y) in entry.0.iter_mut().zip(cells) {
                rollup_merge(x, y);
            }
        }
        for (key, (cells, n)) in groups {
            rows.push(make_row(
                key_vals(rollup, &key),
                &cells,
                def.rollup_count.clone().map(|c| (c, n)),
            ));
        }
    } else {
        for (key, cells) in &folded {
            rows.push(make_row(key_vals(&def.group_by, key), cells, None));
        }
    }

    sort_rows(def, &mut rows);
    let totals = totals(def, &rows, &folded);

    Report {
        projection: def.name.clone(),
        as_of,
        known_at,
        position,
        columns,
        rows,
        totals,
    }
}

/// Orders rows by the definition's `sort_by` keys.
fn sort_rows(def: &Definition, rows: &mut [Row]) {
    let sort_keys = def.sort_by.clone();
    rows.sort_by(|a, b| {
        for k in &sort_keys {
            let o = a.get(k).cmp(&b.get(k));
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

/// Totals: numeric columns summed over the rows (for cumulative buckets, over each group's
/// final values, so a running total is not counted once per day).
fn totals(def: &Definition, rows: &[Row], folded: &[(&Vec<String>, Vec<Cell>)]) -> Row {
    let mut totals = Vec::new();
    let basis: Vec<&Row> = if def.bucket.is_some() {
        Vec::new()
    } else {
        rows.iter().collect()
    };
    for (ci, c) in def.columns.iter().enumerate() {
        let sum: Option<i64> = if def.bucket.is_some() {
            match c.agg {
                Agg::Count | Agg::Sum => Some(
                    folded
                        .iter()
                        .map(|(_, cells)| if let Cell::N(n) = cells[ci] { n } else { 0 })
                        .sum(),
                ),
                _ => None,
            }
        } else {
            let vals: Vec<i64> = basis
                .iter()
                .filter_map(|r| match r.get(&c.name) {
                    Some(Val::Int(n)) => Some(*n),
                    _ => None,
                })
                .collect();
            if vals.is_empty() && !matches!(c.agg, Agg::Count | Agg::Sum) {
                None
            } else {
                Some(vals.iter().sum())
            }
        };
        if let Some(s) = sum {
            totals.push((c.name.clone(), Some(Val::Int(s))));
        }
    }
    if let Some(rc) = &def.rollup_count {
        totals.push((
            rc.clone(),
            Some(Val::Int(basis.iter().map(|r| r.int(rc)).sum())),
        ));
    }
    Row(totals)
}

fn rollup_empty(agg: Agg) -> Cell {
    match agg {
        Agg::Min => Cell::Min(None),
        Agg::Max => Cell::Max(None),
        _ => Cell::N(0),
    }
}

/// Rolling groups up: counts, sums and numeric `last` values add; min and max keep their extreme.
fn rollup_merge(acc: &mut Cell, cell: &Cell) {
    match (acc, cell) {
        (Cell::N(a), Cell::N(b)) => *a += b,
        (Cell::N(a), Cell::Last(Some((_, _, Val::Int(b))))) => *a += b,
        (a, b) => a.merge(b),
    }
}

fn text(v: &Option<Val>) -> String {
    match v {
        None => String::new(),
        Some(Val::Int(n)) => n.to_string(),
        Some(Val::Text(t)) => t.clone(),
    }
}

impl Report {
    /// A plain-text table for people, with a totals line.
    pub fn to_table(&self) -> String {
        let mut lines: Vec<Vec<String>> = vec![self.columns.clone()];
        for r in &self.rows {
            lines.push(
                self.columns
                    .iter()
                    .map(|c| {
                        text(
                            &r.0.iter()
                                .find(|(k, _)| k == c)
                                .and_then(|(_, v)| v.clone()),
                        )
                    })
                    .collect(),
            );
        }
        if !self.totals.0.is_empty() {
            let mut t: Vec<String> = self
                .columns
                .iter()
                .map(|c| {
                    self.totals
                        .0
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| text(v))
                        .unwrap_or_default()
                })
                .collect();
            if let Some(first) = t.first_mut() {
                if first.is_empty() {
                    *first = "TOTAL".into();
                }
            }
            lines.push(t);
        }
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let numeric = |i: usize| {
            let c = &self.columns[i];
            self.rows
                .iter()
                .any(|r| matches!(r.get(c), Some(Val::Int(_))))
                || self
                    .totals
                    .0
                    .iter()
                    .any(|(k, v)| k == c && matches!(v, Some(Val::Int(_))))
        };
        for (li, l) in lines.iter().enumerate() {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = widths[i] - c.chars().count();
                    if numeric(i) && li > 0 {
                        format!("{}{}", " ".repeat(pad), c)
                    } else {
                        format!("{}{}", c, " ".repeat(pad))
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
            if li == 0 || (li == lines.len() - 2 && !self.totals.0.is_empty()) {
                out.push_str(
                    &widths
                        .iter()
                        .map(|w| "-".repeat(*w))
                        .collect::<Vec<_>>()
                        .join("  "),
                );
                out.push('\n');
            }
        }
        out
    }

    /// CSV (RFC 4180) with a header line; totals are not included.
    pub fn to_csv(&self) -> String {
        let esc = |s: String| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        let mut out = self
            .columns
            .iter()
            .cloned()
            .map(esc)
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for r in &self.rows {
            let line: Vec<String> = self
                .columns
                .iter()
                .map(|c| {
                    esc(text(
                        &r.0.iter()
                            .find(|(k, _)| k == c)
                            .and_then(|(_, v)| v.clone()),
                    ))
                })
                .collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }
}
