//! Running a file of commands, one JSON object per line, with one outcome per line.

use super::{Ledger, Outcome};
use crate::domain::CommandEnvelope;
use crate::store::Actor;
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The error part of a line's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// Stable snake_case code.
    pub code: String,
    /// A sentence saying what was wrong and what to do.
    pub message: String,
}

/// The outcome of one input line (the `submit --format json` contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineOutcome {
    /// 1-based line number in the input.
    pub line: usize,
    /// The command id, when it could be read.
    pub command_id: Option<Uuid>,
    /// `accepted`, `duplicate`, `rejected` or `invalid`.
    pub outcome: &'static str,
    /// Present for `rejected` and `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Counts by outcome, and rejections by code.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SubmitSummary {
    /// Commands recorded now.
    pub accepted: u64,
    /// Commands already recorded earlier.
    pub duplicate: u64,
    /// Commands refused by a rule.
    pub rejected: u64,
    /// Lines that were not commands.
    pub invalid: u64,
    /// Rejections and invalid lines by code.
    pub by_code: BTreeMap<String, u64>,
}

impl SubmitSummary {
    /// Adds one outcome.
    pub fn add(&mut self, o: &LineOutcome) {
        match o.outcome {
            "accepted" => self.accepted += 1,
            "duplicate" => self.duplicate += 1,
            "rejected" => self.rejected += 1,
            _ => self.invalid += 1,
        }
        if let Some(e) = &o.error {
            *self.by_code.entry(e.code.clone()).or_default() += 1;
        }
    }
}

/// Parses one command's JSON text and handles it: the outcome object of the `submit` and HTTP
/// contracts (`line` is the 1-based place of the command in its file or request).
/// `before` sees the parsed command before it runs.
pub fn handle_text(
    ledger: &Ledger,
    line: usize,
    text: &str,
    actor: &Actor,
    mut before: impl FnMut(&CommandEnvelope),
) -> Result<LineOutcome, super::AppError> {
    Ok(match CommandEnvelope::parse(text) {
        Err(invalid) => invalid_outcome(line, invalid),
        Ok(envelope) => {
            before(&envelope);
            handle_envelope(ledger, line, &envelope, actor)?
        }
    })
}

/// The outcome of an invalid command, as in the `submit` and HTTP contracts.
pub fn invalid_outcome(line: usize, invalid: crate::domain::InvalidCommand) -> LineOutcome {
    LineOutcome {
        line,
        command_id: invalid.command_id,
        outcome: "invalid",
        error: Some(ErrorBody {
            code: invalid.code.to_string(),
            message: invalid.message,
        }),
    }
}

/// Handles one parsed command: its outcome object.
pub fn handle_envelope(
    ledger: &Ledger,
    line: usize,
    envelope: &CommandEnvelope,
    actor: &Actor,
) -> Result<LineOutcome, super::AppError> {
    Ok(line_outcome(
        line,
        envelope,
        ledger.handle(envelope, actor)?,
    ))
}

/// What a line reports of a handled command.
pub fn line_outcome(line: usize, envelope: &CommandEnvelope, o: Outcome) -> LineOutcome {
    LineOutcome {
        line,
        command_id: Some(envelope.command_id),
        outcome: o.label(),
        error: match o {
            Outcome::Rejected(r) => Some(ErrorBody {
                code: r.code().to_string(),
                message: r.to_string(),
            }),
            _ => None,
        },
    }
}

/// Runs `(line number, bytes)` pairs in order; a line that is not UTF-8 is `invalid`. Blank lines and lines starting with `#` are
/// skipped. `before` sees each parsed command before it runs (the demo sets its clock there).
/// A store failure stops the run and is returned; outcomes so far were already reported.
pub fn submit_lines<I, B, F>(
    ledger: &Ledger,
    lines: I,
    actor: &Actor,
    mut before: B,
    mut on_outcome: F,
) -> Result<SubmitSummary, super::AppError>
where
    I: IntoIterator<Item = (usize, Vec<u8>)>,
    B: FnMut(&CommandEnvelope),
    F: FnMut(&LineOutcome),
{
    let mut summary = SubmitSummary::default();
    for (line, bytes) in lines {
        let Ok(text) = String::from_utf8(bytes) else {
            let outcome = LineOutcome {
                line,
                command_id: None,
                outcome: "invalid",
                error: Some(ErrorBody {
                    code: "not_utf8".into(),
                    message: "This line is not UTF-8 text; save the file as UTF-8.".into(),
                }),
            };
            summary.add(&outcome);
            on_outcome(&outcome);
            continue;
        };
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let outcome = handle_text(ledger, line, trimmed, actor, &mut before)?;
        summary.add(&outcome);
        on_outcome(&outcome);
    }
    Ok(summary)
}
