//! The token file and a token's lifecycle: create, list, revoke, rotate.
//!
//! A token is never deleted from the file: its id is recorded in every event it caused
//! (`agent_ref`), so a revoked token stays listed with `revoked_at` and its id cannot be given
//! to another token. Rotation gives a token a new secret under the same id, role and scope; the
//! old secret may keep working for an overlap period (`previous`, each with its `valid_until`),
//! so that the clients using it can be changed one by one.
//!
//! Every change is checked as a whole against the reference data before the file is replaced
//! (atomically, mode 600): a change that would make the file unreadable is refused and the
//! file stays as it was. A running `serve` picks the change up within a second or on SIGHUP.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::tokens::{hash_token, new_token, Auth, Role};
use crate::domain::Reference;

/// One token as stored in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A name for the token, recorded in every event it causes (`agent_ref`).
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Directorate ids (agents, supervisors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directorates: Vec<String>,
    /// Partner-centre ids (partners).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partner_centres: Vec<String>,
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// After this time the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<FixedOffset>>,
    /// When it was revoked: refused from then on, whatever its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<FixedOffset>>,
    /// Secrets it had before a rotation, each accepted until its `valid_until`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<PreviousSecret>,
}

/// A secret replaced by a rotation, still accepted during the overlap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousSecret {
    /// SHA-256 of the old token, hex.
    pub sha256: String,
    /// Until when the old token is still accepted.
    pub valid_until: DateTime<FixedOffset>,
}

/// The token file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// The tokens.
    pub tokens: Vec<TokenEntry>,
}

/// Where a token stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Accepted.
    Active,
    /// Past its `expires_at`.
    Expired,
    /// Revoked.
    Revoked,
}

impl TokenStatus {
    /// The status as `auth list` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
        }
    }
}

impl TokenEntry {
    /// Where the token stands at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> TokenStatus {
        if self.revoked_at.is_some_and(|at| at <= now) {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    /// The old secrets still accepted at `now` (a rotation's overlap).
    pub fn overlapping(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PreviousSecret> {
        self.previous.iter().filter(move |p| p.valid_until > now)
    }
}

impl TokenFile {
    /// Reads a token file; `None` when there is none at `path`.
    pub fn read(path: &Path) -> Result<Option<TokenFile>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            }
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} is not a token file ({e}); expected {{\"tokens\": [{{\"id\", \"role\", \"sha256\", …}}]}}",
                path.display()
            )
        })
    }

    /// Reads an existing token file.
    fn read_existing(path: &Path) -> Result<TokenFile, String> {
        TokenFile::read(path)?.ok_or_else(|| {
            format!(
                "there is no token file {}; create one with `campaign-ledger auth token --file {} --id NAME --role ROLE`",
                path.display(),
                path.display()
            )
        })
    }

    /// Checks the whole file, then replaces it atomically (mode 600).
    fn write(&self, path: &Path, reference: &Reference) -> Result<(), String> {
        Auth::from_file(self.clone(), reference)?;
        crate::support::files::write_private(
            path,
            &(serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n"),
        )
        .map_err(|e| format!("cannot write the token file {}: {e}", path.display()))
    }

    fn find_mut(&mut self, id: &str, path: &Path) -> Result<&mut TokenEntry, String> {
        let known = self
            .tokens
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        self.tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| {
                format!(
                    "{} has no token {id:?}; its tokens: {known} (`campaign-ledger auth list --file {}`)",
                    path.display(),
                    path.display()
                )
            })
    }
}

/// A time as the file keeps it: whole seconds, UTC.
fn now_fixed(now: DateTime<Utc>) -> DateTime<FixedOffset> {
    use chrono::SubsecRound as _;
    now.trunc_subsecs(0).fixed_offset()
}

/// Adds a token to a token file (created when missing) and returns the token in clear, the
/// only time it is ever shown.
pub fn add_token(
    path: &Path,
    mut entry: TokenEntry,
    reference: &Reference,
) -> Result<String, String> {
    let mut file = TokenFile::read(path)?.unwrap_or_default();
    if let Some(at) = entry.expires_at {
        if at <= Utc::now() {
            return Err(format!(
                "--expires-at {} is in the past: the token would never work",
                at.to_rfc3339()
            ));
        }
    }
    if let Some(old) = file.tokens.iter().find(|t| t.id == entry.id) {
        return Err(format!(
            "{} already has a token {:?} ({}); ids are never reused, since events record them: choose another id, or `campaign-ledger auth rotate {}` for a new secret",
            path.display(),
            entry.id,
            old.status(Utc::now()).as_str(),
            entry.id
        ));
    }
    let token = new_token()?;
    entry.sha256 = hash_token(&token);
    file.tokens.push(entry);
    file.write(path, reference)?;
    Ok(token)
}

/// Revokes a token: refused from now on, by a running server within seconds. Its entry stays
/// (its id is in the events it caused). Returns the revocation time.
pub fn revoke_token(
    path: &Path,
    id: &str,
    now: DateTime<Utc>,
    reference: &Reference,
) -> Result<DateTime<FixedOffset>, String> {
    let mut file = TokenFile::read_existing(path)?;
    let entry = file.find_mut(id, path)?;
    if let Some(at) = entry.revoked_at {
        return Err(format!(
            "token {id:?} was already revoked at {}",
            at.to_rfc3339()
        ));
    }
    let at = now_fixed(now);
    entry.revoked_at = Some(at);
    file.write(path, reference)?;
    Ok(at)
}

/// Gives a token a new secret (same id, role, scope and expiry) and returns it in clear, the
/// only time it is shown. The old secret keeps working for `overlap` (none: refused at once,
/// as "replaced").
pub fn rotate_token(
    path: &Path,
    id: &str,
    overlap: std::time::Duration,
    now: DateTime<Utc>,
    reference: &Reference,
) -> Result<String, String> {
    let mut file = TokenFile::read_existing(path)?;
    let entry = file.find_mut(id, path)?;
    match entry.status(now) {
        TokenStatus::Active => {}
        status => {
            return Err(format!(
                "token {id:?} is {}: a new secret would not work; create a new token with another id (`campaign-ledger auth token`)",
                status.as_str()
            ))
        }
    }
    let overlap = chrono::Duration::from_std(overlap)
        .ok()
        .filter(|d| *d <= chrono::Duration::days(366))
        .ok_or("--overlap is at most a year: the old secret must stop working at some point")?;
    let token = new_token()?;
    let old = std::mem::replace(&mut entry.sha256, hash_token(&token));
    // A replaced secret stays listed (refused once its overlap ends, with a reason that says
    // so) for 30 days after it stopped working.
    entry
        .previous
        .retain(|p| p.valid_until > now - chrono::Duration::days(30));
    entry.previous.push(PreviousSecret {
        sha256: old,
        valid_until: now_fixed(now + overlap),
    });
    file.write(path, reference)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> TokenEntry {
        TokenEntry {
            id: id.into(),
            role: Role::Agent,
            directorates: vec!["lyon".into()],
            partner_centres: vec![],
            sha256: String::new(),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        }
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn revoked_tokens_are_refused_and_their_id_stays_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let r = Reference::builtin();
        let t = add_token(&path, agent("a"), &r).unwrap();
        let now = Utc::now();
        revoke_token(&path, "a", now, &r).unwrap();
        let auth = Auth::load(&path, &r).unwrap();
        let err = auth.check(Some(&bearer(&t)), now).unwrap_err();
        assert_eq!(err.code(), "revoked_token", "{err}");
        assert!(err.to_string().contains("revoked"), "{err}");
        let again = revoke_token(&path, "a", now, &r).unwrap_err();
        assert!(again.contains("already revoked"), "{again}");
        let reuse = add_token(&path, agent("a"), &r).unwrap_err();
        assert!(reuse.contains("never reused"), "{reuse}");
        let rotate = rotate_token(&path, "a", Default::default(), now, &r).unwrap_err();
        assert!(rotate.contains("is revoked"), "{rotate}");
        let unknown = revoke_token(&path, "b", now, &r).unwrap_err();
        assert!(
            unknown.contains("no token \"b\"") && unknown.contains("a"),
            "{unknown}"
        );
    }

    #[test]
    fn a_rotated_secret_works_only_during_its_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let r = Reference::builtin();
        let old = add_token(&path, agent("a"), &r).unwrap();
        let now = Utc::now();
        let new = rotate_token(&path, "a", std::time::Duration::from_secs(3600), now, &r).unwrap();
        assert_ne!(old, new);
        let auth = Auth::load(&path, &r).unwrap();
        for t in [&old, &new] {
            let p = auth.check(Some(&bearer(t)), now).unwrap();
            assert_eq!((p.token_id.as_str(), p.role), ("a", Role::Agent));
        }
        let later = now + chrono::Duration::hours(2);
        assert!(auth.check(Some(&bearer(&new)), later).is_ok());
        let err = auth.check(Some(&bearer(&old)), later).unwrap_err();
        assert_eq!(err.code(), "rotated_token", "{err}");
        // Without an overlap the old secret is refused at once.
        let newer = rotate_token(&path, "a", Default::default(), now, &r).unwrap();
        let auth = Auth::load(&path, &r).unwrap();
        assert!(auth.check(Some(&bearer(&newer)), now).is_ok());
        assert!(auth.check(Some(&bearer(&new)), now).is_err());
        // The first overlap still runs.
        assert!(auth.check(Some(&bearer(&old)), now).is_ok());
        let file = TokenFile::read(&path).unwrap().unwrap();
        assert_eq!(file.tokens[0].overlapping(now).count(), 1);
        assert!(rotate_token(
            &path,
            "a",
            std::time::Duration::from_secs(400 * 86400),
            now,
            &r
        )
        .unwrap_err()
        .contains("at most a year"));
    }
}
