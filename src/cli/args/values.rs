//! The values flags take: roles, output formats, clocks, durations, dates and times.

use chrono::{DateTime, FixedOffset, NaiveDate};
use clap::ValueEnum;

/// A token's role, as `auth token --role` takes it (the access layer's `Role`).
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum RoleArg {
    /// Sends commands for its directorates (not site authorisations).
    Agent,
    /// Reports ticket redemptions (`RedeemTicket`) for its partner centres.
    Partner,
    /// Reads everything of its directorates (business dates only, small counts suppressed).
    Supervisor,
    /// Reads everything, at any `as_of` and `known_at`, and the audit endpoints; never writes.
    Auditor,
    /// Authorises sites and rebuilds projections.
    Admin,
}

impl From<RoleArg> for campaign_ledger::access::Role {
    fn from(r: RoleArg) -> Self {
        use campaign_ledger::access::Role;
        match r {
            RoleArg::Agent => Role::Agent,
            RoleArg::Partner => Role::Partner,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Auditor => Role::Auditor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// Output format of a report.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ReportFormat {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
    /// CSV for spreadsheets.
    Csv,
}

/// Output format of a command run.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum SubmitFormat {
    /// One line per command for people.
    Table,
    /// One JSON object per command.
    Json,
}

/// Where commit times come from.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ClockChoice {
    /// The machine's clock (normal use).
    System,
    /// Each command is recorded at its own business time (never going backwards): for loading
    /// a historical or simulated campaign, so that --known-at reads make sense for it.
    Business,
}

pub(in crate::cli) fn parse_every(s: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("{s:?} is not a duration; write for example 90s, 15m or 1h (0 turns it off)");
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    Ok(std::time::Duration::from_secs(secs))
}

pub(in crate::cli) fn parse_date(s: &str) -> Result<NaiveDate, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"))
}

pub(in crate::cli) fn parse_instant(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        format!("{s:?} is not an RFC 3339 time with an offset; write for example 2021-12-17T18:00:00+01:00")
    })
}
