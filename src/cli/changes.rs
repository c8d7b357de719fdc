//! `audit changes`: what was recorded in a window of commit times for earlier business dates,
//! and what it did to a projection's figures (see `campaign_ledger::app::Changes`).

use super::args::SubmitFormat;
use super::Cli;
use anyhow::{anyhow, Result};
use campaign_ledger::app::Reader;
use campaign_ledger::projection::{Row, Val};
use chrono::{DateTime, FixedOffset};
use std::process::ExitCode;
use std::sync::Arc;

/// Where the window starts.
pub(super) enum Since {
    /// After a commit time (the log's own word).
    Time(DateTime<FixedOffset>),
    /// After a checkpoint the auditor holds, checked against what they trust.
    Checkpoint(std::path::PathBuf, campaign_ledger::audit::Trust),
}

/// Runs `audit changes`.
pub(super) fn run(
    cli: &Cli,
    since: Since,
    until: Option<DateTime<FixedOffset>>,
    projection: &str,
    format: SubmitFormat,
) -> Result<ExitCode> {
    let env = cli.open(false, false)?;
    let (since, after) = match since {
        Since::Time(t) => (t, None),
        Since::Checkpoint(file, trust) => {
            let d = super::trust::read_digest(&file)?;
            let checked = d
                .check(&trust)
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            // The log must hold the checkpoint's tree (this also checks it was not backdated).
            let witnessed = checked.as_ref().and_then(|c| c.witnessed_at());
            campaign_ledger::audit::verify_extends(env.store.as_ref(), &d, witnessed).map_err(
                |e| {
                    anyhow!(
                        "the log does not extend the checkpoint {}: {e}",
                        file.display()
                    )
                },
            )?;
            let at = env
                .store
                .read_all(d.position.saturating_sub(1), 1)
                .map_err(|e| anyhow!("{e}"))?
                .first()
                .and_then(|e| DateTime::parse_from_rfc3339(&e.recorded_at).ok())
                .unwrap_or_else(|| DateTime::UNIX_EPOCH.fixed_offset());
            (at, Some(d.position))
        }
    };
    let reader = Reader::new(&env.ledger, Arc::new(env.engine?));
    let c = reader
        .changes(since, until, projection, after)
        .map_err(|e| anyhow!("{e}"))?;
    if format == SubmitFormat::Json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(ExitCode::SUCCESS);
    }
    let start = match after {
        Some(p) => format!(
            "the checkpoint of position {p} (its last event recorded at {})",
            c.known_since
        ),
        None => c.known_since.clone(),
    };
    println!(
        "Recorded after {start} {}: {} entries for earlier business dates.",
        c.known_until
            .as_deref()
            .map_or("until now".to_string(), |u| format!("up to {u}")),
        c.entries.len()
    );
    for e in &c.entries {
        println!(
            "  {:>8}  {}  {:<10}  {:<24} {:<12} counts on {}",
            e.position,
            e.recorded_at,
            e.kind,
            e.event_type,
            e.directorate.as_deref().unwrap_or("-"),
            e.business_date
        );
    }
    if !c.figures.is_empty() {
        println!(
            "{} as of each date they touch, before → after:",
            c.projection
        );
    }
    for f in &c.figures {
        println!(
            "  {}  {:<12} {}",
            f.as_of,
            f.directorate.as_deref().unwrap_or("(totals)"),
            differences(f.before.as_ref(), f.after.as_ref())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The numeric columns that differ, `name a → b`; "no change" when none does.
fn differences(before: Option<&Row>, after: Option<&Row>) -> String {
    let names: Vec<&String> = before
        .or(after)
        .map(|r| r.0.iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    let int = |r: Option<&Row>, k: &str| r.map_or(0, |r| r.int(k));
    let changed: Vec<String> = names
        .into_iter()
        .filter(|k| {
            matches!(before.and_then(|r| r.get(k)), Some(Val::Int(_)) | None)
                && matches!(after.and_then(|r| r.get(k)), Some(Val::Int(_)) | None)
                && int(before, k) != int(after, k)
        })
        .map(|k| format!("{k} {} → {}", int(before, k), int(after, k)))
        .collect();
    if changed.is_empty() {
        "no change".into()
    } else {
        changed.join(", ")
    }
}
