//! Declarative projection definitions (`projections/*.toml`): parsing and validation.
//! The format is documented in `projections/README.md`.

mod checks;

use crate::domain::Event;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    /// Number of matching events (times their sign).
    Count,
    /// Sum of a numeric field (times the sign).
    Sum,
    /// The value of the latest matching event (by business time, then position).
    Last,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
}

/// Time buckets for rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// One row per local day.
    Day,
    /// One row per ISO week (labelled by its Monday).
    Week,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum WhereValue {
    One(String),
    Many(Vec<String>),
    Bool(bool),
    Int(i64),
}

impl WhereValue {
    fn into_vec(self) -> Vec<String> {
        match self {
            WhereValue::One(s) => vec![s],
            WhereValue::Many(v) => v,
            WhereValue::Bool(b) => vec![b.to_string()],
            WhereValue::Int(i) => vec![i.to_string()],
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileDef {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    group_by: Vec<String>,
    bucket: Option<Bucket>,
    #[serde(default)]
    cumulative: bool,
    rollup_by: Option<Vec<String>>,
    rollup_count: Option<String>,
    sort_by: Option<Vec<String>>,
    #[serde(default)]
    source: Vec<FileSource>,
    #[serde(default)]
    column: Vec<FileColumn>,
    fold: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileSource {
    event: String,
    time: Option<String>,
    #[serde(default = "one")]
    sign: i64,
    #[serde(default, rename = "where")]
    filter: BTreeMap<String, WhereValue>,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FileColumn {
    name: String,
    agg: Agg,
    field: Option<String>,
    #[serde(default, rename = "where")]
    filter: BTreeMap<String, WhereValue>,
    events: Option<Vec<String>>,
    #[serde(default)]
    signs: BTreeMap<String, i64>,
}

/// A field filter: the field's value (as text) must be one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Field path.
    pub path: Path_,
    /// Accepted values.
    pub values: Vec<String>,
}

/// A field path: `a.b` in the event data, or `$stream_id`, `$event_type`, `$occurred_at`,
/// `$recorded_at`, `$position` in the envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Path_ {
    /// A path into the data.
    Data(Vec<String>),
    /// An envelope field.
    Envelope(EnvelopeField),
}

/// Envelope fields a definition may use.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub enum EnvelopeField {
    StreamId,
    EventType,
    OccurredAt,
    RecordedAt,
    Position,
}

impl Path_ {
    fn parse(s: &str) -> Result<Path_, String> {
        if let Some(env) = s.strip_prefix('$') {
            return Ok(Path_::Envelope(match env {
                "stream_id" => EnvelopeField::StreamId,
                "event_type" => EnvelopeField::EventType,
                "occurred_at" => EnvelopeField::OccurredAt,
                "recorded_at" => EnvelopeField::RecordedAt,
                "position" => EnvelopeField::Position,
                _ => return Err(format!("unknown envelope field {s:?} (use $stream_id, $event_type, $occurred_at, $recorded_at or $position)")),
            }));
        }
        if s.is_empty() || s.split('.').any(str::is_empty) {
            return Err(format!(
                "{s:?} is not a field path (write field or field.subfield)"
            ));
        }
        Ok(Path_::Data(s.split('.').map(String::from).collect()))
    }
}

/// A source event type of a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Event type name.
    pub event: String,
    /// Business-time field used by `--as-of` (`None`: the envelope's `occurred_at`).
    pub time: Option<Path_>,
    /// +1, or -1 for reversals.
    pub sign: i64,
    /// Filters on the event.
    pub filters: Vec<Filter>,
}

/// An output column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Aggregate.
    pub agg: Agg,
    /// Field aggregated (not for `count`).
    pub field: Option<Path_>,
    /// Filters.
    pub filters: Vec<Filter>,
    /// Source events this column takes (`None`: all).
    pub events: Option<Vec<String>>,
    /// Sign overrides by event type.
    pub signs: BTreeMap<String, i64>,
}

/// A validated projection definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Name (the file's stem).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Grouping fields (row keys).
    pub group_by: Vec<String>,
    /// Parsed grouping paths.
    pub group_paths: Vec<Path_>,
    /// Optional time buckets.
    pub bucket: Option<Bucket>,
    /// Running totals across buckets.
    pub cumulative: bool,
    /// Second-level grouping.
    pub rollup_by: Option<Vec<String>>,
    /// Name of the column counting rolled-up groups.
    pub rollup_count: Option<String>,
    /// Row order.
    pub sort_by: Vec<String>,
    /// Sources.
    pub sources: Vec<Source>,
    /// Columns.
    pub columns: Vec<Column>,
    /// SHA-256 of the file text: a changed definition invalidates stored state.
    pub hash: String,
    /// Where it came from: `builtin:NAME`, or the file's name in the projections folder.
    pub origin: String,
    /// A fold the domain provides instead of `[[source]]`s (`fold = "series_findings"`).
    pub fold: Option<Fold>,
}

/// Folds the domain provides, for read models that counting events cannot give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Each person's dose series, and the data-quality findings the domain derives from it:
    /// rows keyed by `directorate` and `kind`, one `count` column of open findings.
    SeriesFindings,
}

impl Fold {
    /// Group fields a fold can give.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Fold::SeriesFindings => &["directorate", "kind"],
        }
    }
}

/// A definition file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("projection definition {origin}: {message}")]
pub struct DefinitionError {
    /// The file.
    pub origin: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn filters(map: BTreeMap<String, WhereValue>) -> Result<Vec<Filter>, String> {
    map.into_iter()
        .map(|(k, v)| {
            Ok(Filter {
                path: Path_::parse(&k)?,
                values: v.into_vec(),
            })
        })
        .collect()
}

impl Definition {
    /// Parses and validates a definition. `stem` is the file name without `.toml`.
    pub fn parse(text: &str, stem: &str, origin: &str) -> Result<Definition, DefinitionError> {
        let err = |message: String| DefinitionError {
            origin: origin.to_string(),
            message,
        };
        let f: FileDef = toml::from_str(text).map_err(|e| err(e.to_string().trim().to_string()))?;
        let fold = checks::name_and_fold(&f, stem).map_err(err)?;
        let FileDef {
            name,
            description,
            group_by,
            bucket,
            cumulative,
            rollup_by,
            rollup_count,
            source,
            column,
            ..
        } = f.clone();
        let sources = checks::sources(source).map_err(err)?;
        let columns = checks::columns(column, &group_by, &sources).map_err(err)?;
        let sort_by = checks::sort_by(&f, &columns).map_err(err)?;
        let group_paths = checks::group_paths(&group_by, &sources, &columns).map_err(err)?;
        use sha2::Digest;
        Ok(Definition {
            name,
            description,
            group_by,
            group_paths,
            bucket,
            cumulative,
            rollup_by,
            rollup_count,
            sort_by,
            sources,
            columns,
            hash: hex::encode(sha2::Sha256::digest(text.as_bytes())),
            origin: origin.to_string(),
            fold,
        })
    }
}

/// The row key a bucket adds.
pub fn bucket_key(b: Bucket) -> &'static str {
    match b {
        Bucket::Day => "day",
        Bucket::Week => "week",
    }
}

/// The definitions shipped in `projections/`, embedded in the binary.
const BUILTIN: &[(&str, &str)] = &[
    (
        "doses_by_directorate",
        include_str!("../../../projections/doses_by_directorate.toml"),
    ),
    (
        "doses_by_day",
        include_str!("../../../projections/doses_by_day.toml"),
    ),
    (
        "tickets_by_directorate",
        include_str!("../../../projections/tickets_by_directorate.toml"),
    ),
    (
        "session_attendance",
        include_str!("../../../projections/session_attendance.toml"),
    ),
    (
        "survey_coverage",
        include_str!("../../../projections/survey_coverage.toml"),
    ),
    (
        "doses_by_day_by_directorate",
        include_str!("../../../projections/doses_by_day_by_directorate.toml"),
    ),
    (
        "tickets_by_partner_centre",
        include_str!("../../../projections/tickets_by_partner_centre.toml"),
    ),
    (
        "data_quality",
        include_str!("../../../projections/data_quality.toml"),
    ),
];

/// Loads the shipped definitions, then every `*.toml` in `dir` (a file there replaces a
/// shipped one of the same name). Definitions are returned sorted by name.
pub fn load_definitions(dir: Option<&Path>) -> Result<Vec<Definition>, DefinitionError> {
    let mut defs: BTreeMap<String, Definition> = BTreeMap::new();
    for (stem, text) in BUILTIN {
        let d = Definition::parse(text, stem, &format!("builtin:{stem}"))?;
        defs.insert(d.name.clone(), d);
    }
    if let Some(dir) = dir {
        let origin = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| DefinitionError {
            origin: origin.clone(),
            message: format!("cannot read the projections directory: {e}"),
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let origin = p.display().to_string();
            let text = std::fs::read_to_string(&p).map_err(|e| DefinitionError {
                origin: origin.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let mut d = Definition::parse(&text, stem, &origin)?;
            // Shown by `projections list` and GET /v1/projections: relative to the projections
            // folder, never the server's absolute path (errors above name the whole path).
            d.origin = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(origin);
            defs.insert(d.name.clone(), d);
        }
    }
    Ok(defs.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Definition, DefinitionError> {
        Definition::parse(text, "t", "t.toml")
    }

    #[test]
    fn the_shipped_definitions_load() {
        let defs = load_definitions(None).unwrap();
        assert_eq!(defs.len(), BUILTIN.len());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = parse("name = \"t\"\n[[source]]\nevent = \"DoseGiven\"\n[[column]]\nname=\"n\"\nagg=\"count\"").unwrap_err();
        assert!(
            e.to_string().starts_with("projection definition t.toml:"),
            "{e}"
        );
        assert!(
            e.message.contains("DoseGiven") && e.message.contains("DoseAdministered"),
            "{e}"
        );
        let e = parse("name = \"other\"").unwrap_err();
        assert!(e.message.contains("must match the file name"), "{e}");
        let e = parse("name = \"t\"\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname=\"n\"\nagg=\"sum\"").unwrap_err();
        assert!(e.message.contains("needs a field"), "{e}");
        let e = parse("name = \"t\"\ngroup_by = [\"prodct\"]\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname=\"n\"\nagg=\"count\"").unwrap_err();
        assert!(
            e.message
                .contains("\"prodct\" is not a field of DoseAdministered"),
            "{e}"
        );
        let e = parse("name = \"t\"\n[[source]]\nevent = \"DoseAdministered\"\ntime = \"administred_at\"\n[[column]]\nname=\"n\"\nagg=\"count\"").unwrap_err();
        assert!(e.message.contains("administred_at"), "{e}");
        let e = parse("name = \"t\"\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname=\"n\"\nagg=\"count\"\nwhere = { dos = \"booster\" }").unwrap_err();
        assert!(e.message.contains("column n where"), "{e}");
        let e = parse("name = \"t\"\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname=\"n\"\nagg=\"median\"").unwrap_err();
        assert!(e.message.contains("median"), "{e}");
        let e = parse("name = \"t\"\ncumulative = true\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname=\"n\"\nagg=\"count\"").unwrap_err();
        assert!(e.message.contains("bucket"), "{e}");
    }
}
