//! The auditor's subcommands (`audit`, `witness`) and what a verifier trusts.

use super::values::{parse_instant, SubmitFormat};
use chrono::{DateTime, FixedOffset};
use clap::Subcommand;
use std::path::PathBuf;

/// What a verifier trusts (every command that checks a checkpoint or a digest): the ledger's
/// keys, the witnesses' keys, how many witnesses must have cosigned.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// The ledger keys you trust: a key set file, one verifier key a line as `audit public-key`
    /// prints it, optionally followed by the start and end of its validity (RFC 3339 or -).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// One ledger key you trust, as `audit public-key` prints it (the 64 hex digits older
    /// digests name are taken too).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// The witnesses you trust: a key set file of cosigner keys, as `witness keygen` prints them.
    #[arg(long, value_name = "FILE")]
    pub witness_keys: Option<PathBuf>,
    /// How many of those witnesses must have cosigned a checkpoint (default: all of them); 0
    /// accepts a checkpoint no witness saw, which proves nothing about what others were shown.
    #[arg(long, value_name = "K")]
    pub quorum: Option<usize>,
}

/// Audit subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain: exit 0 if intact, 1 naming the first bad position.
    Verify {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
        /// Also prove that the log extends the log this digest or checkpoint (from `audit
        /// digest` or `audit checkpoint`) was taken from: nothing before it changed, nothing
        /// removed, nothing reordered, nothing recorded after it backdated.
        #[arg(long)]
        digest: Option<PathBuf>,
        /// What the digest is checked against.
        #[command(flatten)]
        trust: TrustArgs,
        /// Verify this export (from `campaign-ledger export`) instead of the store: no
        /// database needed. With --digest, the digest's position must be inside the export.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Print the head of the log (position, hash, time, the Merkle tree's size and root, the
    /// ledger's id) as JSON, signed with the ledger's key, for an auditor to keep: a view of
    /// its signed checkpoint.
    Digest,
    /// Print the head of the log as a checkpoint (C2SP tlog-checkpoint: origin, tree size,
    /// root), a signed note others' tools verify; `GET /v1/audit/checkpoint` serves the newest
    /// with its witnesses' cosignatures.
    Checkpoint,
    /// Check a ledger's newest checkpoint against the last one you verified (kept in --state
    /// on your machine): a larger tree must be proved to extend it, the same size must have
    /// the same root, a smaller tree is a rollback. A fork or a rollback exits 1 and keeps
    /// both checkpoints as evidence.
    Follow {
        /// The server to ask (http://HOST:PORT; GET /v1/audit/checkpoint and the consistency
        /// proof), with --token.
        #[arg(long, conflicts_with = "checkpoint")]
        url: Option<String>,
        /// An auditor's token for --url.
        #[arg(long, env = "LEDGER_TOKEN")]
        token: Option<String>,
        /// Or a checkpoint file (from `audit checkpoint` or the endpoint).
        #[arg(long, required_unless_present = "url")]
        checkpoint: Option<PathBuf>,
        /// With --checkpoint: a consistency proof document (`audit consistency`, or
        /// /v1/audit/proofs/consistency) from the size you kept to the checkpoint's.
        #[arg(long)]
        proof: Option<PathBuf>,
        /// The directory holding the last checkpoint verified of each ledger.
        #[arg(long)]
        state: PathBuf,
        /// What checkpoints are checked against.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Prove that one event, or every event of one person, is in the log: an RFC 9162
    /// inclusion proof against a signed digest (JSON on standard output; check it anywhere with
    /// `audit check-proof`).
    Prove {
        /// The event's position.
        #[arg(required_unless_present = "person", conflicts_with = "person")]
        position: Option<u64>,
        /// Instead of one event: every event naming this person (their ref; needs the key
        /// store), and nothing of anyone else.
        #[arg(long)]
        person: Option<String>,
        /// The digest (from `audit digest`) to prove against; default: a digest of the head,
        /// signed now.
        #[arg(long)]
        digest: Option<PathBuf>,
    },
    /// Prove that the log of a newer digest extends the log of an older one: an RFC 9162
    /// consistency proof (JSON on standard output). Exit 1 if the log no longer holds the
    /// older digest's tree.
    Consistency {
        /// The older digest.
        #[arg(long)]
        from: PathBuf,
        /// The newer digest; default: a digest of the head, signed now.
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// What changed since a time: the entries recorded in a window that count on earlier
    /// business dates (late paper records, reversals), with a projection's figures for each
    /// date they touch as known before and after the window.
    Changes {
        /// The window's start (exclusive), RFC 3339, for example 2021-12-17T18:00:00+01:00: a
        /// time the log itself states. Prefer --since-checkpoint.
        #[arg(long, value_parser = parse_instant, required_unless_present = "since_checkpoint", conflicts_with = "since_checkpoint")]
        known_since: Option<DateTime<FixedOffset>>,
        /// Start after a checkpoint you hold (checked with --keys, --witness-keys, --quorum):
        /// every entry recorded after it is in the window, whatever time it says it was
        /// recorded at.
        #[arg(long, value_name = "FILE")]
        since_checkpoint: Option<PathBuf>,
        /// What --since-checkpoint is checked against.
        #[command(flatten)]
        trust: TrustArgs,
        /// The window's end (inclusive); default: everything recorded.
        #[arg(long, value_parser = parse_instant)]
        known_until: Option<DateTime<FixedOffset>>,
        /// The projection whose figures are compared.
        #[arg(long, default_value = "doses_by_directorate")]
        projection: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
    /// Check a proof file from `audit prove` or `audit consistency` with no store: the events'
    /// hashes, the paths to the roots, the digests' signatures. Exit 0 if it holds, 1 naming
    /// what failed.
    CheckProof {
        /// The proof file.
        file: PathBuf,
        /// What the digests are checked against.
        #[command(flatten)]
        trust: TrustArgs,
        /// Your own checked checkpoint or digest of this ledger: the proof must stand on its
        /// tree (the same size and root), not only on the checkpoint it brings along.
        #[arg(long, value_name = "FILE")]
        trusted: Option<PathBuf>,
    },
    /// Build the Merkle tree again from the events, after `audit verify` named it missing or
    /// damaged (it is never rebuilt silently). The events are not touched; restart a server
    /// running on the ledger afterwards.
    RebuildTree,
    /// Create the ledger's Ed25519 signing key (once) and print its public key.
    Keygen,
    /// Print the ledger's public key (hex), for auditors to trust.
    PublicKey,
    /// Print the log of person-level reads made over HTTP (who read whose events, when).
    AccessLog {
        /// Only the reads of this person (their person_id, as events show it).
        #[arg(long)]
        person: Option<String>,
        /// Output format: one line per read (table) or one JSON object per read (json).
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
}

/// Witness subcommands.
#[derive(Subcommand, Debug)]
pub enum WitnessCmd {
    /// Create the witness's Ed25519 key (once) and print its cosigner key (type 0x04), for the
    /// ledger's operator (`serve --witness`) and auditors (`--witness-keys`).
    Keygen {
        /// The key file to create (mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// The witness's name (a URL without scheme, for example witness.example.org/w1).
        #[arg(long)]
        name: String,
    },
    /// Print the cosigner key of an existing witness key.
    PublicKey {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// The witness's name.
        #[arg(long)]
        name: String,
    },
    /// Serve `POST /add-checkpoint` until SIGTERM or Ctrl-C.
    Serve {
        /// Address and port to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: String,
        /// The witness's key file (`witness keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The witness's name.
        #[arg(long)]
        name: String,
        /// The logs it watches: one verifier key a line, as `audit public-key` prints it (its
        /// name is the log's origin).
        #[arg(long)]
        logs: PathBuf,
        /// Its state: the last checkpoint cosigned per log, and the evidence kept (SQLite).
        #[arg(long)]
        state: PathBuf,
    },
    /// Print the evidence kept: checkpoints validly signed by a log that contradict the one the
    /// witness cosigned (a fork, a rollback, a proof that fails), one JSON object a line.
    Evidence {
        /// The witness's state file.
        #[arg(long)]
        state: PathBuf,
    },
}
