//! Output helpers shared by the subcommands: progress bars, counts, summaries.

use super::args::*;
use super::env::*;
use anyhow::{anyhow, Result};
use campaign_ledger::app::{submit_lines, LineOutcome, SubmitSummary};
use campaign_ledger::projection::Report;
use campaign_ledger::store::Clock;
use chrono::{Duration, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;

pub(super) fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(n) => (
            ProgressBar::new(n),
            "{spinner} {msg} [{bar:30}] {pos}/{len} (eta {eta})",
        ),
        None => (ProgressBar::new_spinner(), "{spinner} {msg} {pos}"),
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

pub(super) fn count_lines(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let read = f.read(&mut buf).ok()?;
        if read == 0 {
            return Some(n);
        }
        n += buf[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

pub(super) fn print_summary(s: &SubmitSummary) {
    eprintln!(
        "{} accepted, {} duplicate, {} rejected, {} invalid",
        s.accepted, s.duplicate, s.rejected, s.invalid
    );
}

pub(super) fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub(super) fn run_lines(
    env: &Env,
    lines: impl Iterator<Item = (usize, Vec<u8>)>,
    total: Option<u64>,
    mut emit: impl FnMut(&LineOutcome),
) -> Result<SubmitSummary> {
    let pb = progress(total, "commands");
    let business = env.business.clone();
    let summary = submit_lines(
        &env.ledger,
        lines,
        &actor(),
        |cmd| {
            if let (Some(b), Some(t)) = (&business, cmd.command.business_time()) {
                let t = t.with_timezone(&Utc) + Duration::minutes(5);
                if t > b.0.now() {
                    b.0.set(t);
                }
            }
        },
        |o| {
            // Print with the bar hidden, so that the two never mix on a terminal.
            pb.suspend(|| emit(o));
            pb.set_position(o.line as u64);
        },
    )
    .map_err(|e| anyhow!("{e}; the commands before this one are stored, the rest were not run"))?;
    pb.finish_and_clear();
    Ok(summary)
}

pub(super) fn print_report(r: &Report, format: ReportFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => writeln!(out, "{}", serde_json::to_string(r)?)?,
        ReportFormat::Csv => write!(out, "{}", r.to_csv())?,
        ReportFormat::Table => {
            let as_of = r
                .as_of
                .map(|d| d.to_string())
                .unwrap_or_else(|| "everything recorded".into());
            writeln!(
                out,
                "{} as of {as_of}{}",
                r.projection,
                r.known_at
                    .as_ref()
                    .map(|k| format!(", known at {k}"))
                    .unwrap_or_default()
            )?;
            write!(out, "{}", r.to_table())?;
        }
    }
    Ok(())
}
