//! Bearer tokens and roles for the HTTP API.
//!
//! Tokens live in a JSON file (`serve --auth FILE`) that holds only their SHA-256 hashes:
//!
//! ```json
//! {"tokens": [
//!   {"id": "lyon-agent-1", "role": "agent", "directorates": ["lyon"],
//!    "sha256": "…64 hex…", "expires_at": "2022-06-30T00:00:00+02:00"},
//!   {"id": "cvl-partner", "role": "partner", "partner_centres": ["cv-lyon-gerland"], "sha256": "…"}
//! ]}
//! ```
//!
//! `campaign-ledger auth token --file FILE --id ID --role ROLE [--directorate D]…` creates a
//! token, prints it once and stores its hash. A token is 256 random bits (hex), so a plain
//! SHA-256 is the right hash: nothing to guess, no need for a slow password hash.
//!
//! What each role may do is decided here (see [`Principal`]) and documented in the README's
//! role × endpoint table.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::domain::Reference;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
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

impl Role {
    /// The role's name as written in token files, envelopes and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Partner => "partner",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

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

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token's id.
    pub token_id: String,
    /// Its role.
    pub role: Role,
    /// Its directorates (agents, supervisors); shared with the loaded token file, so that a
    /// request's check copies no set.
    pub directorates: Arc<BTreeSet<String>>,
    /// Its partner centres (partners), shared likewise.
    pub partner_centres: Arc<BTreeSet<String>>,
}

/// Why a request's token was refused (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("this API needs a token: send the header `Authorization: Bearer TOKEN` (tokens come from the ledger's operator)")]
    Missing,
    /// A header that is not `Bearer …`.
    #[error("the Authorization header must be `Bearer TOKEN`")]
    Malformed,
    /// No token with that hash.
    #[error("this token is not known to the ledger; ask its operator for a valid one")]
    Unknown,
    /// Past its `expires_at`.
    #[error("token {id:?} expired at {at}; ask the ledger's operator for a new one")]
    Expired {
        /// Token id.
        id: String,
        /// Expiry.
        at: String,
    },
    /// Revoked (`auth revoke`).
    #[error("token {id:?} was revoked at {at}; ask the ledger's operator for a new one")]
    Revoked {
        /// Token id.
        id: String,
        /// Revocation time.
        at: String,
    },
    /// A secret replaced by `auth rotate`, past its overlap.
    #[error("this secret of token {id:?} was replaced and stopped working at {at}; use the token's new secret")]
    Rotated {
        /// Token id.
        id: String,
        /// End of the overlap.
        at: String,
    },
}

impl TokenError {
    /// Stable code for the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Malformed => "malformed_token",
            TokenError::Unknown => "unknown_token",
            TokenError::Expired { .. } => "expired_token",
            TokenError::Revoked { .. } => "revoked_token",
            TokenError::Rotated { .. } => "rotated_token",
        }
    }
}

/// The loaded tokens, by the hash of each secret they accept.
#[derive(Debug, Clone)]
pub struct Auth {
    by_hash: HashMap<String, Secret>,
    tokens: usize,
}

/// One accepted secret: whose it is and until when.
#[derive(Debug, Clone)]
struct Secret {
    principal: Principal,
    expires_at: Option<DateTime<FixedOffset>>,
    revoked_at: Option<DateTime<FixedOffset>>,
    /// For a secret replaced by a rotation: the end of its overlap.
    valid_until: Option<DateTime<FixedOffset>>,
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token: `clt_` and 256 random bits in hex.
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| format!("the system gave no random bytes ({e})"))?;
    Ok(format!("clt_{}", hex::encode(bytes)))
}

impl Auth {
    /// Checks a token file's content against the reference data (directorates and partner
    /// centres).
    pub fn from_file(file: TokenFile, reference: &Reference) -> Result<Auth, String> {
        let directorates: BTreeSet<String> = reference.directorates.keys().cloned().collect();
        let mut by_hash = HashMap::new();
        let mut ids = BTreeSet::new();
        let tokens = file.tokens.len();
        for (i, t) in file.tokens.into_iter().enumerate() {
            let at = format!("token {} ({:?})", i + 1, t.id);
            if t.id.is_empty()
                || t.id.len() > 64
                || !t
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return Err(format!(
                    "{at}: a token id is 1 to 64 letters, digits, dots, dashes or underscores (it is recorded in every event the token causes)"
                ));
            }
            if !ids.insert(t.id.clone()) {
                return Err(format!(
                    "{at}: the id is used twice; token ids must be unique"
                ));
            }
            if std::iter::once(&t.sha256)
                .chain(t.previous.iter().map(|p| &p.sha256))
                .any(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "{at}: sha256 must be 64 hex digits (the SHA-256 of the token; `campaign-ledger auth token` writes it)"
                ));
            }
            let scoped_by_directorate = matches!(t.role, Role::Agent | Role::Supervisor);
            if scoped_by_directorate && t.directorates.is_empty() {
                return Err(format!(
                    "{at}: the {} role needs at least one directorate",
                    t.role.as_str()
                ));
            }
            if t.role == Role::Partner && t.partner_centres.is_empty() {
                return Err(format!(
                    "{at}: the partner role needs at least one partner centre"
                ));
            }
            if !scoped_by_directorate && !t.directorates.is_empty() {
                return Err(format!(
                    "{at}: the {} role is not scoped by directorate; remove its directorates",
                    t.role.as_str()
                ));
            }
            if t.role != Role::Partner && !t.partner_centres.is_empty() {
                return Err(format!(
                    "{at}: only partner tokens have partner centres; remove them"
                ));
            }
            if let Some(d) = t.directorates.iter().find(|d| !directorates.contains(*d)) {
                return Err(format!(
                    "{at}: {d:?} is not a directorate id; known ids: {}",
                    directorates.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            for c in &t.partner_centres {
                if reference.partner_centres.contains_key(c) {
                    continue;
                }
                let known = reference
                    .partner_centres
                    .values()
                    .map(|c| format!("{} ({})", c.id, c.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(match reference.partner_centre(c) {
                    Some(p) => format!(
                        "{at}: {c:?} is a partner centre's name; tokens name it by id: {:?}",
                        p.id
                    ),
                    None => format!(
                        "{at}: {c:?} is not in the reference list of partner centres; known: {known}"
                    ),
                });
            }
            let principal = Principal {
                token_id: t.id.clone(),
                role: t.role,
                directorates: Arc::new(t.directorates.iter().cloned().collect()),
                partner_centres: Arc::new(t.partner_centres.iter().cloned().collect()),
            };
            let current = Secret {
                principal,
                expires_at: t.expires_at,
                revoked_at: t.revoked_at,
                valid_until: None,
            };
            let secrets = t.previous.iter().map(|p| {
                let mut old = current.clone();
                old.valid_until = Some(p.valid_until);
                (p.sha256.to_ascii_lowercase(), old)
            });
            for (hash, secret) in std::iter::once((t.sha256.to_ascii_lowercase(), current.clone()))
                .chain(secrets)
                .collect::<Vec<_>>()
            {
                if by_hash.insert(hash, secret).is_some() {
                    return Err(format!("{at}: the same token hash appears twice"));
                }
            }
        }
        Ok(Auth { by_hash, tokens })
    }

    /// How many tokens the file lists (revoked and expired ones included).
    pub fn len(&self) -> usize {
        self.tokens
    }

    /// Whether the file lists no token.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Checks an `Authorization` header's value.
    pub fn check(&self, header: Option<&str>, now: DateTime<Utc>) -> Result<Principal, TokenError> {
        let header = header.ok_or(TokenError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Malformed)?;
        let secret = self
            .by_hash
            .get(&hash_token(token))
            .ok_or(TokenError::Unknown)?;
        let id = || secret.principal.token_id.clone();
        if let Some(at) = secret.revoked_at.filter(|at| *at <= now) {
            return Err(TokenError::Revoked {
                id: id(),
                at: at.to_rfc3339(),
            });
        }
        if let Some(at) = secret.expires_at.filter(|at| *at <= now) {
            return Err(TokenError::Expired {
                id: id(),
                at: at.to_rfc3339(),
            });
        }
        if let Some(at) = secret.valid_until.filter(|at| *at <= now) {
            return Err(TokenError::Rotated {
                id: id(),
                at: at.to_rfc3339(),
            });
        }
        Ok(secret.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Reference {
        Reference::builtin()
    }

    fn entry(id: &str, role: Role, token: &str) -> TokenEntry {
        TokenEntry {
            id: id.into(),
            role,
            directorates: if matches!(role, Role::Agent | Role::Supervisor) {
                vec!["lyon".into()]
            } else {
                vec![]
            },
            partner_centres: if role == Role::Partner {
                vec!["cv-lyon-gerland".into()]
            } else {
                vec![]
            },
            sha256: hash_token(token),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        }
    }

    #[test]
    fn a_known_token_gives_its_principal_and_others_are_refused_by_reason() {
        let mut exp = entry("old", Role::Auditor, "t-old");
        exp.expires_at = Some("2021-01-01T00:00:00+00:00".parse().unwrap());
        let auth = Auth::from_file(
            TokenFile {
                tokens: vec![entry("a", Role::Agent, "t-a"), exp],
            },
            &dirs(),
        )
        .unwrap();
        let now = Utc::now();
        let p = auth.check(Some("Bearer t-a"), now).unwrap();
        assert_eq!((p.token_id.as_str(), p.role), ("a", Role::Agent));
        assert!(p.directorates.contains("lyon"));
        assert_eq!(auth.check(None, now), Err(TokenError::Missing));
        assert_eq!(auth.check(Some("Basic x"), now), Err(TokenError::Malformed));
        assert_eq!(auth.check(Some("Bearer "), now), Err(TokenError::Malformed));
        assert_eq!(
            auth.check(Some("Bearer nope"), now),
            Err(TokenError::Unknown)
        );
        assert!(matches!(
            auth.check(Some("Bearer t-old"), now),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn bad_token_files_are_refused_with_the_reason() {
        let mut no_dir = entry("a", Role::Agent, "x");
        no_dir.directorates.clear();
        let mut bad_dir = entry("b", Role::Supervisor, "y");
        bad_dir.directorates = vec!["atlantis".into()];
        let mut bad_hash = entry("c", Role::Admin, "z");
        bad_hash.sha256 = "abc".into();
        for (tokens, says) in [
            (vec![no_dir], "at least one directorate"),
            (vec![entry("bad id", Role::Admin, "9")], "letters, digits"),
            (vec![bad_dir], "\"atlantis\" is not a directorate id"),
            (vec![bad_hash], "64 hex digits"),
            (
                vec![entry("d", Role::Admin, "1"), entry("d", Role::Admin, "2")],
                "used twice",
            ),
            (
                vec![entry("e", Role::Admin, "1"), entry("f", Role::Admin, "1")],
                "hash appears twice",
            ),
        ] {
            let e = Auth::from_file(TokenFile { tokens }, &dirs()).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
