//! Content hashes of commands: what the ledger keeps, forever, to tell a true resubmission of
//! a command id (`duplicate`) from a reused id with other content (`command_id_reused`).
//!
//! Version 2 (every hash written now) is the SHA-256 of the command's canonical JSON with its
//! `person_ref` replaced by the person's pseudonym: every other field of a command is in its
//! event, so a hash over the ref in clear (version 1, older builds) gave a ref of a small space
//! back to whoever held an export. The four commands that name a person copy every field into
//! their one event, so their hash is made again from the log (`Command::recorded_by`): the
//! migration of a ledger of an older build.

use super::command::*;

impl CommandEnvelope {
    /// The content hash of version 2, what the ledger keeps to tell a resubmission from a
    /// reused id: SHA-256 of the canonical bytes of the command with its `person_ref` replaced
    /// by the person's pseudonym (`person_id`), so that nothing kept, exported or published is
    /// a function of the ref. A command naming no person hashes its canonical bytes as they are.
    pub fn content_hash(&self, person_id: Option<&str>) -> [u8; 32] {
        content_hash(&self.command, person_id)
    }
}

impl Command {
    /// The command that recorded `event`, rebuilt from it, for the four commands that name a
    /// person (`AdministerDose`, `RecordExternalDose`, `RecordDoseNotAdministered`,
    /// `IssueTicket`): each copies every field of the command into its one event, so the
    /// rebuilt command is the one sent (its content hash can be made again: the migration to
    /// version 2). `None` for any other event.
    pub fn recorded_by(event: &crate::domain::Event) -> Option<Command> {
        use crate::domain::Event as E;
        Some(match event {
            E::DoseAdministered(e) => Command::AdministerDose(AdministerDose {
                person_ref: e.person_ref.clone(),
                age_band: e.age_band,
                recipient: e.recipient,
                directorate: e.directorate.clone(),
                site: e.site.clone(),
                product: e.product,
                lot: e.lot.clone(),
                dose: e.dose,
                administered_at: e.administered_at,
                session_id: e.session_id.clone(),
                prior_infection_counted: e.prior_infection_counted,
            }),
            E::ExternalDoseRecorded(e) => Command::RecordExternalDose(RecordExternalDose {
                person_ref: e.person_ref.clone(),
                product: e.product,
                dose: e.dose,
                administered_at: e.administered_at,
                evidence: e.evidence,
            }),
            E::DoseNotAdministered(e) => {
                Command::RecordDoseNotAdministered(RecordDoseNotAdministered {
                    person_ref: e.person_ref.clone(),
                    directorate: e.directorate.clone(),
                    site: e.site.clone(),
                    reason: e.reason,
                    at: e.at,
                })
            }
            E::TicketIssued(e) => Command::IssueTicket(IssueTicket {
                ticket_id: e.ticket_id.clone(),
                person_ref: e.person_ref.clone(),
                directorate: e.directorate.clone(),
                partner_centre: e.partner_centre.clone(),
                issued_at: e.issued_at,
                valid_until: e.valid_until,
            }),
            _ => return None,
        })
    }
}

/// The content hash of a command the ledger makes itself (an erasure, a binding), from a text
/// naming what it does (no person_ref is ever in it).
pub fn content_hash_of_text(text: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).into()
}

/// [`CommandEnvelope::content_hash`] of a command.
pub fn content_hash(command: &Command, person_id: Option<&str>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut value = serde_json::to_value(command).expect("commands serialize");
    if let (Some(id), Some(fields)) = (person_id, value.as_object_mut()) {
        if let Some(r) = fields.get_mut("person_ref") {
            *r = serde_json::Value::String(id.to_string());
        }
    }
    Sha256::digest(serde_json::to_vec(&value).expect("values serialize")).into()
}
