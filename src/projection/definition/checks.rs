//! Checking a definition file: its name, its fold, its sources and columns, its rows' keys and
//! order, and that every field it names exists on its event types.

use super::*;

/// The name matches the file and uses a-z, 0-9 and _; the fold (if any) is one the ledger
/// provides, with a shape it can give.
pub(super) fn name_and_fold(f: &FileDef, stem: &str) -> Result<Option<Fold>, String> {
    if f.name != stem {
        return Err(format!(
            "name = {:?} must match the file name {stem}.toml",
            f.name
        ));
    }
    if !f
        .name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || f.name.is_empty()
    {
        return Err(format!("name {:?} must use a-z, 0-9 and _ only", f.name));
    }
    let fold = match f.fold.as_deref() {
        None => None,
        Some("series_findings") => Some(Fold::SeriesFindings),
        Some(other) => {
            return Err(format!(
                "fold = {other:?} is not a fold the ledger provides; the only one is \"series_findings\""
            ))
        }
    };
    if let Some(fold) = fold {
        let keys = fold.keys();
        if !f.source.is_empty() || f.bucket.is_some() || f.rollup_by.is_some() || f.cumulative {
            return Err(
                "a fold reads the events itself: remove [[source]], bucket, cumulative and rollup_by".into(),
            );
        }
        if let Some(bad) = f.group_by.iter().find(|k| !keys.contains(&k.as_str())) {
            return Err(format!(
                "group_by {bad:?}: this fold groups by {} only",
                keys.join(" and ")
            ));
        }
        let one_count = f.column.len() == 1
            && f.column.iter().all(|c| {
                c.agg == Agg::Count
                    && c.field.is_none()
                    && c.filter.is_empty()
                    && c.events.is_none()
                    && c.signs.is_empty()
            });
        if !one_count {
            return Err("a fold gives one [[column]] with agg = \"count\" and nothing else".into());
        }
    } else if f.source.is_empty() {
        return Err("no [[source]]: name at least one event type to fold".into());
    }
    Ok(fold)
}

/// Each source names an event type and a sign of 1 or -1.
pub(super) fn sources(source: Vec<FileSource>) -> Result<Vec<Source>, String> {
    let mut sources = Vec::new();
    for s in source {
        if !Event::TYPES.contains(&s.event.as_str()) {
            return Err(format!(
                "source event {:?} is not an event type; known types: {}",
                s.event,
                Event::TYPES.join(", ")
            ));
        }
        if s.sign != 1 && s.sign != -1 {
            return Err(format!(
                "source {}: sign must be 1 or -1, not {}",
                s.event, s.sign
            ));
        }
        sources.push(Source {
            time: s.time.as_deref().map(Path_::parse).transpose()?,
            filters: filters(s.filter)?,
            event: s.event,
            sign: s.sign,
        });
    }
    Ok(sources)
}

/// Each column is named once, has the field its aggregate needs, and draws on sources of
/// this definition.
pub(super) fn columns(
    column: Vec<FileColumn>,
    group_by: &[String],
    sources: &[Source],
) -> Result<Vec<Column>, String> {
    if column.is_empty() {
        return Err("no [[column]]: define at least one column".into());
    }
    let source_names: Vec<&str> = sources.iter().map(|s| s.event.as_str()).collect();
    let mut columns = Vec::new();
    let mut names: Vec<String> = group_by.to_vec();
    for c in column {
        if names.contains(&c.name) {
            return Err(format!(
                "column {:?} is defined twice (or is also a group_by field)",
                c.name
            ));
        }
        names.push(c.name.clone());
        match (c.agg, &c.field) {
            (Agg::Count, Some(_)) => {
                return Err(format!(
                    "column {}: count takes no field (use where to filter)",
                    c.name
                ))
            }
            (Agg::Sum | Agg::Last | Agg::Min | Agg::Max, None) => {
                return Err(format!(
                    "column {}: agg = \"{}\" needs a field",
                    c.name,
                    format!("{:?}", c.agg).to_lowercase()
                ))
            }
            _ => {}
        }
        for e in c.events.iter().flatten().chain(c.signs.keys()) {
            if !source_names.contains(&e.as_str()) {
                return Err(format!(
                    "column {}: {e:?} is not one of this projection's sources",
                    c.name
                ));
            }
        }
        if c.signs.values().any(|s| *s != 1 && *s != -1) {
            return Err(format!("column {}: signs must be 1 or -1", c.name));
        }
        columns.push(Column {
            field: c.field.as_deref().map(Path_::parse).transpose()?,
            filters: filters(c.filter)?,
            name: c.name,
            agg: c.agg,
            events: c.events,
            signs: c.signs,
        });
    }
    Ok(columns)
}

/// Cumulative needs a bucket, rollups a subset of the keys; the row order names keys or
/// columns (default: the row keys, then the bucket).
pub(super) fn sort_by(f: &FileDef, columns: &[Column]) -> Result<Vec<String>, String> {
    if f.cumulative && f.bucket.is_none() {
        return Err("cumulative = true needs a bucket (day or week)".into());
    }
    if let Some(r) = &f.rollup_by {
        if let Some(bad) = r.iter().find(|k| !f.group_by.contains(k)) {
            return Err(format!("rollup_by {bad:?} is not one of group_by"));
        }
        if f.bucket.is_some() {
            return Err("rollup_by and bucket cannot be combined".into());
        }
    } else if f.rollup_count.is_some() {
        return Err("rollup_count needs rollup_by".into());
    }
    let row_keys: Vec<String> = match &f.rollup_by {
        Some(r) => r.clone(),
        None => f.group_by.clone(),
    };
    let mut sortable = row_keys.clone();
    sortable.extend(columns.iter().map(|c| c.name.clone()));
    sortable.extend(f.rollup_count.clone());
    if let Some(b) = f.bucket {
        sortable.push(bucket_key(b).to_string());
    }
    let sort_by = match f.sort_by.clone() {
        Some(s) => {
            if let Some(bad) = s.iter().find(|k| !sortable.contains(k)) {
                return Err(format!("sort_by {bad:?} is not a row key or column"));
            }
            s
        }
        None => {
            let mut s = row_keys;
            if let Some(b) = f.bucket {
                s.push(bucket_key(b).to_string());
            }
            s
        }
    };
    Ok(sort_by)
}

/// The grouping paths, checked with every other data field a source feeds against the fields
/// of its event type.
pub(super) fn group_paths(
    group_by: &[String],
    sources: &[Source],
    columns: &[Column],
) -> Result<Vec<Path_>, String> {
    let group_paths: Vec<Path_> = group_by
        .iter()
        .map(|g| Path_::parse(g))
        .collect::<Result<_, _>>()?;
    // Every data field a source feeds must exist on its event type: a misspelt field would
    // otherwise silently group everything under "" or count nothing.
    for s in sources {
        let fields = Event::fields(&s.event).unwrap_or(&[]);
        let mut used: Vec<(&Path_, String)> = group_paths
            .iter()
            .map(|p| (p, "group_by".to_string()))
            .collect();
        used.extend(s.time.iter().map(|p| (p, "time".to_string())));
        used.extend(s.filters.iter().map(|f| (&f.path, "where".to_string())));
        for c in columns
            .iter()
            .filter(|c| c.events.as_ref().is_none_or(|ev| ev.contains(&s.event)))
        {
            used.extend(
                c.field
                    .iter()
                    .map(|p| (p, format!("column {} field", c.name))),
            );
            used.extend(
                c.filters
                    .iter()
                    .map(|f| (&f.path, format!("column {} where", c.name))),
            );
        }
        for (path, role) in used {
            if let Path_::Data(parts) = path {
                if !fields.contains(&parts[0].as_str()) {
                    return Err(format!(
                        "{role}: {:?} is not a field of {} (its fields: {}); for an envelope field write $stream_id, $occurred_at…",
                        parts[0],
                        s.event,
                        fields.join(", ")
                    ));
                }
            }
        }
    }
    Ok(group_paths)
}
