//! `findings`: the open data-quality findings, optionally of one directorate, as of a date and
//! known at a time: a table for supervisors, JSON or CSV for programs. Pseudonyms only.

use super::{Cli, ReportFormat};
use anyhow::{anyhow, bail, Result};
use campaign_ledger::projection::FindingView;
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::io::Write;
use std::process::ExitCode;

/// Runs `findings`.
pub fn run(
    cli: &Cli,
    directorate: Option<&str>,
    as_of: Option<NaiveDate>,
    known_at: Option<DateTime<FixedOffset>>,
    format: ReportFormat,
) -> Result<ExitCode> {
    if let Some(d) = directorate {
        let reference = campaign_ledger::domain::Reference::builtin();
        if !reference.directorates.contains_key(d) {
            bail!(
                "directorate {d:?} is not in the reference list; known ids: {}",
                reference
                    .directorates
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let (store, engine) = cli.read_side()?;
    let (found, position) = engine
        .findings(store.as_ref(), as_of, known_at)
        .map_err(|e| anyhow!("{e}"))?;
    let rows: Vec<FindingView> = found
        .iter()
        .filter(|f| directorate.is_none_or(|d| f.directorate() == d))
        .map(|f| f.view())
        .collect();
    let mut persons: Vec<String> = rows.iter().filter_map(|r| r.person_id.clone()).collect();
    persons.sort();
    persons.dedup();
    cli.disclose("findings", persons, rows.len() as u64, 0, "findings")?;
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&serde_json::json!({
                "directorate": directorate,
                "as_of": as_of,
                "known_at": known_at.map(|k| k.to_rfc3339()),
                "position": position,
                "findings": rows,
            }))?
        )?,
        ReportFormat::Csv => {
            writeln!(out, "directorate,date,kind,person_id,entries,action")?;
            for r in &rows {
                writeln!(
                    out,
                    "{},{},{},{},\"{}\",\"{}\"",
                    r.directorate,
                    r.date,
                    r.kind,
                    r.person_id.as_deref().unwrap_or(""),
                    entries_text(r).replace('"', "\"\""),
                    r.action.replace('"', "\"\"")
                )?;
            }
        }
        ReportFormat::Table => {
            writeln!(
                out,
                "open findings{} as of {}{}: {}",
                directorate.map(|d| format!(" of {d}")).unwrap_or_default(),
                as_of
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "everything recorded".into()),
                known_at
                    .map(|k| format!(", known at {}", k.to_rfc3339()))
                    .unwrap_or_default(),
                rows.len()
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "\n{}  {}  {}  person {}\n  entries: {}\n  to do: {}",
                    r.date,
                    r.directorate,
                    r.kind,
                    r.person_id.as_deref().unwrap_or("(log without pseudonyms)"),
                    entries_text(r),
                    r.action
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `second 2021-10-14 (command …), first 2021-09-14 reversed (command …)`.
fn entries_text(r: &FindingView) -> String {
    r.entries
        .iter()
        .map(|e| {
            format!(
                "{} {}{}{} (command {})",
                e.dose.as_str(),
                e.date,
                if e.ofii { "" } else { " elsewhere" },
                if e.reversed { " reversed" } else { "" },
                e.command_id
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
