//! The command line as clap parses it: every subcommand, flag and value, with their help text.

use chrono::{DateTime, FixedOffset, NaiveDate};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// An event-sourced, hash-chained ledger for a vaccination campaign.
#[derive(Parser, Debug)]
#[command(name = "campaign-ledger", version, about, long_about = None)]
pub struct Cli {
    /// Where the log lives: sqlite:PATH (the embedded default).
    #[arg(
        long,
        global = true,
        env = "LEDGER_STORE",
        default_value = "sqlite:./ledger-data/ledger.db"
    )]
    pub store: String,
    /// A directory of projection definitions (*.toml) added to the shipped ones; a file there
    /// replaces a shipped definition of the same name. Default: ./projections when it exists.
    #[arg(long, global = true, env = "LEDGER_PROJECTIONS")]
    pub projections: Option<PathBuf>,
    /// NATS server URL(s), comma-separated (for example nats://127.0.0.1:4222): where `relay`
    /// publishes and where `project`, `report` and `projections` read with --nats.
    #[arg(long, global = true, env = "LEDGER_NATS")]
    pub nats: Option<String>,
    /// NATS credentials file (user JWT and nkey seed, NATS accounts in operator mode), for every
    /// NATS connection of this command (relay, digests, project, --store nats://).
    #[arg(long, global = true, env = "LEDGER_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password).
    #[arg(long, global = true, env = "LEDGER_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password; prefer the environment variable, which `ps` does not show.
    #[arg(
        long,
        global = true,
        env = "LEDGER_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
    /// A file holding the NATS user's nkey seed (SU…).
    #[arg(
        long,
        global = true,
        env = "LEDGER_NATS_NKEY_SEED",
        value_name = "FILE"
    )]
    pub nats_nkey_seed: Option<PathBuf>,
    /// CA certificate(s) (PEM) that signed the NATS servers' certificates: TLS is then required.
    #[arg(long, global = true, env = "LEDGER_NATS_TLS_CA", value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients (with --nats-tls-key).
    #[arg(long, global = true, env = "LEDGER_NATS_TLS_CERT", value_name = "FILE")]
    pub nats_tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, global = true, env = "LEDGER_NATS_TLS_KEY", value_name = "FILE")]
    pub nats_tls_key: Option<PathBuf>,
    /// The projection database of the NATS-fed projections (default
    /// ./ledger-data/nats-projections.db).
    #[arg(long, global = true, env = "LEDGER_PROJECTIONS_DB")]
    pub projections_db: Option<PathBuf>,
    /// The key store: one data key per person, each wrapped by the master key (default: the
    /// store file with .keys.db, or ledger-data/nats-log.keys.db for a NATS log). Keep it
    /// apart from copies of the log: destroying a key erases a person everywhere.
    #[arg(long, global = true, env = "LEDGER_KEY_STORE")]
    pub key_store: Option<PathBuf>,
    /// The erasure journal: the pseudonyms and times of every erasure, which `restore`
    /// re-applies to a backup taken before them (default: the store file with
    /// .erasures.jsonl, or ledger-data/nats-log.erasures.jsonl). Keep it apart from the
    /// backups, on another volume.
    #[arg(long, global = true, env = "LEDGER_ERASURE_JOURNAL")]
    pub erasure_journal: Option<PathBuf>,
    /// The master key file (64 hex digits; default master.key beside the store, created
    /// once with mode 0600). The environment variable LEDGER_MASTER_KEY, when set, gives the
    /// key itself instead.
    #[arg(long, global = true, env = "LEDGER_MASTER_KEY_FILE")]
    pub master_key: Option<PathBuf>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Cmd,
}

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

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Load the synthetic OFII 2021 scenario into the store (once: running it again loads
    /// nothing twice) and print the report as of 17 December 2021.
    Demo {
        /// Then serve the API and the dashboard, with one fresh token per role (written to
        /// demo-tokens.json beside the store); stops on SIGTERM or Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// Address and port for --serve (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
        listen: String,
    },
    /// Run a file of commands (JSON lines; `-` for standard input), one outcome per line.
    Submit {
        /// The command file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
        /// Where commit times come from.
        #[arg(long, value_enum, default_value = "system")]
        clock: ClockChoice,
    },
    /// Print a projection (read model).
    Report {
        /// Projection name (see `projections list`).
        name: String,
        /// Events up to the end of this day (YYYY-MM-DD, campaign time zone Europe/Paris).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Only what the ledger had recorded by this instant (RFC 3339, e.g. 2021-12-17T18:00:00+01:00).
        #[arg(long, value_parser = parse_instant)]
        known_at: Option<DateTime<FixedOffset>>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// List the open data-quality findings: people whose recorded series no longer holds after
    /// a correction (a second dose with no first…), with the entries involved and what to do.
    /// Persons appear by pseudonym only.
    Findings {
        /// Only this directorate's findings (its id, for example lyon).
        #[arg(long)]
        directorate: Option<String>,
        /// Findings dated up to the end of this day (YYYY-MM-DD, campaign time zone).
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Only what the ledger had recorded by this instant (RFC 3339).
        #[arg(long, value_parser = parse_instant)]
        known_at: Option<DateTime<FixedOffset>>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Write a generated scenario as JSON lines to standard output.
    Scenario {
        /// Which scenario.
        #[arg(value_enum)]
        name: ScenarioName,
    },
    /// Write the log, or part of it, as JSON lines: one CloudEvent per event with its
    /// position, recorded_at, prev_hash, hash and command hash. Byte-identical for the same
    /// log from any backend; `audit verify --export` checks it without the database.
    Export {
        /// First position (default 1).
        #[arg(long)]
        from: Option<u64>,
        /// Last position (default: the head).
        #[arg(long)]
        to: Option<u64>,
        /// Only events recorded at or after this instant (RFC 3339, for example
        /// 2021-12-01T00:00:00+01:00).
        #[arg(long, value_parser = parse_instant)]
        since: Option<DateTime<FixedOffset>>,
        /// Write to this file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Rebuild the store named by --store from an export (`-` for standard input), verifying
    /// the chain before anything is written: the hashes after import are identical. The store
    /// must be empty or hold a prefix of the same log (an interrupted import goes on).
    Import {
        /// The export file.
        file: PathBuf,
    },
    /// Copy the log named by --store, event for event, into another store (for example a NATS
    /// log into a new stream: --to 'nats://HOST:PORT?stream=LEDGER_LOG_V2'), verifying the chain
    /// as it goes: the copy carries content hashes of version 2 (a NATS log's messages written
    /// by an older build keep version 1; their owner removes the old stream once the ledger
    /// runs on the copy). The target must be empty or hold a prefix of the same log (an
    /// interrupted copy goes on). Stop the processes that write before copying.
    CopyLog {
        /// The store to copy into (sqlite:PATH or nats://…).
        #[arg(long)]
        to: String,
    },
    /// Copy the ledger (log, projections, key store, access log) into a new or empty
    /// directory while it is being written (SQLite's online backup), then check the copy: the
    /// chain and tree, the access log's chain, every sealed person's key. The master key and the
    /// signing key are not copied: keep them apart. SQLite ledgers only (a JetStream log is
    /// kept by its replicas).
    Backup {
        /// The directory to write (created; must be empty).
        #[arg(long, required_unless_present = "check", conflicts_with = "check")]
        to: Option<PathBuf>,
        /// Check an existing backup directory instead (its files' hashes, chain and keys).
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
    },
    /// Make a new ledger at --store (and its key store, projections and access log beside it)
    /// from a directory written by `backup`, after checking it. Never overwrites a file. The
    /// master key the backup's key store was made with must be given as for any command.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
        /// Restore without the erasure journal (--erasure-journal): the people erased since
        /// the backup was taken become readable again, until they are erased again.
        #[arg(long)]
        without_erasure_journal: bool,
    },
    /// Tamper evidence.
    Audit {
        /// The ledger's Ed25519 signing key (default: signing.key beside the store file).
        #[arg(long, env = "LEDGER_SIGNING_KEY", global = true)]
        key: Option<PathBuf>,
        /// What to do.
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Publish every committed event, in order and exactly once, to the NATS JetStream stream
    /// LEDGER_EVENTS (CloudEvents JSON); resumes where the stream ends; follows new commits
    /// until SIGTERM or Ctrl-C.
    Relay {
        /// Stream replicas: 1 for one server, 3 for a production cluster. Without it a new
        /// stream gets 1 and an existing one keeps its own (a `serve` never scales it down).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
        replicas: Option<u8>,
        /// Stop once the stream holds the whole log instead of following new commits.
        #[arg(long)]
        once: bool,
        /// With --once: how long NATS may stay unreachable (without progress) before the run
        /// ends with an error, exit code 2 (90s, 5m…). A following relay retries for ever.
        #[arg(long, default_value = "30s", value_parser = parse_every)]
        retry_for: std::time::Duration,
        /// First delete the stream LEDGER_EVENTS (one that belongs to another ledger and is not
        /// needed: the relay refuses to publish into it), saying how many messages it held;
        /// then relay this ledger from position 1. Its consumers must start again.
        #[arg(long)]
        delete_stream: bool,
    },
    /// Serve the HTTP API and the dashboard; with --nats also runs the relay. Stops
    /// gracefully on SIGTERM or Ctrl-C (commands in flight finish first).
    Serve {
        /// Address and port to listen on (port 0: any free port). Without --auth, loopback
        /// only.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The token file (hashes and roles; `campaign-ledger auth token` writes it). Without
        /// it every request has full rights, so only loopback addresses are accepted.
        #[arg(long, env = "LEDGER_AUTH")]
        auth: Option<PathBuf>,
        /// How often to publish a signed digest of the head when the log moved (to
        /// digests.jsonl beside the store and, with --nats, on ledger.v1.digests): 90s, 15m,
        /// 1h…; 0 turns it off. Needs the signing key (`audit keygen`).
        #[arg(long, default_value = "1h", value_parser = parse_every)]
        digest_every: std::time::Duration,
        /// Start a new, empty ledger when --store names none (a missing SQLite file, or a NATS
        /// log without events). Without it `serve` refuses, naming the path it looked at: a
        /// server started in the wrong directory must not serve a new empty ledger.
        #[arg(long)]
        create: bool,
        /// The most live clients (server-sent events: `/v1/events/live`, `/v1/projections/
        /// NAME/live`, the dashboard) served at once; one more is answered 503 with
        /// Retry-After. Each costs a task and a bounded buffer, no thread.
        #[arg(long, env = "LEDGER_MAX_LIVE_CLIENTS", default_value_t = campaign_ledger::http::DEFAULT_MAX_LIVE as u32, value_parser = clap::value_parser!(u32).range(1..))]
        max_live_clients: u32,
        /// Serve HTTPS with this PEM certificate chain (the server's certificate first), for a
        /// directorate without a TLS-terminating proxy. With --tls-key.
        #[arg(
            long,
            env = "LEDGER_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// A witness to submit each checkpoint to, as URL=KEY: its http:// address and its
        /// cosigner key as `witness keygen` prints it (repeat for several witnesses). Any
        /// C2SP tlog-witness will do.
        #[arg(long = "witness", value_name = "URL=KEY")]
        witnesses: Vec<String>,
        /// The certificate's PEM private key.
        #[arg(
            long,
            env = "LEDGER_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
    },
    /// A witness (C2SP tlog-witness) an auditor's organisation runs apart from the ledger: it
    /// cosigns each checkpoint of the logs it watches once it has checked that the log only
    /// grew, and keeps a fork or a rollback shown to it as evidence.
    Witness {
        /// What to do.
        #[command(subcommand)]
        action: WitnessCmd,
    },
    /// Tokens for the HTTP API.
    Auth {
        /// What to do.
        #[command(subcommand)]
        action: AuthCmd,
    },
    /// Erase a person (crypto-shredding): record PersonErased (who, when, by pseudonym) and
    /// destroy their key. The log, its hash chain and every count stay as they are; their
    /// ref no longer leads to their history and reads of their events say "erased".
    ErasePerson {
        /// The person's ref, as commands gave it.
        person_ref: String,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (as committed in schemas/openapi.json).
    Openapi,
    /// The JSON Schemas of every command and every event version, generated from the code:
    /// lists them, or with --write DIR writes DIR/commands/*.schema.json and
    /// DIR/events/*.schema.json (removing files of those folders the code no longer makes).
    Schemas {
        /// The directory to write them to (the repository keeps them in schemas/).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// A NATS-fed projection worker: folds LEDGER_EVENTS (published by the relay) into every
    /// projection, each saved with its stream position in one transaction, in the
    /// --projections-db file; follows new events until SIGTERM or Ctrl-C. Needs --nats.
    Project {
        /// Stop once caught up instead of following.
        #[arg(long)]
        once: bool,
    },
    /// Projections (read models).
    Projections {
        /// What to do.
        #[command(subcommand)]
        action: ProjectionsCmd,
    },
}

/// Known scenarios.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum ScenarioName {
    /// The OFII's COVID-19 campaign of 2021 (synthetic people, published national totals).
    #[value(name = "ofii-2021")]
    Ofii2021,
}

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

/// Token subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCmd {
    /// Create a token: print it once, store only its hash (and role, scope) in the file.
    Token {
        /// The token file (created when missing).
        #[arg(long)]
        file: PathBuf,
        /// A name for the token, recorded in every event it causes.
        #[arg(long)]
        id: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A directorate id it acts for or reads (agent, supervisor); repeat for several.
        #[arg(long = "directorate")]
        directorates: Vec<String>,
        /// A partner-centre id it reports for (partner); repeat for several.
        #[arg(long = "partner-centre")]
        partner_centres: Vec<String>,
        /// When it stops working (RFC 3339, for example 2022-06-30T00:00:00+02:00).
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List the tokens of a file: id, role, scope, status (active, expired, revoked), expiry,
    /// and old secrets still accepted after a rotation. Never the secrets.
    List {
        /// The token file.
        #[arg(long)]
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
    /// Revoke a token: a running server refuses it within a second (it follows the file).
    /// The entry stays, marked revoked: its id is in the events it caused.
    Revoke {
        /// The token file.
        #[arg(long)]
        file: PathBuf,
        /// The token's id.
        id: String,
    },
    /// Give a token a new secret (same id, role, scope and expiry), printed once. The old
    /// secret keeps working for --overlap (default: refused at once).
    Rotate {
        /// The token file.
        #[arg(long)]
        file: PathBuf,
        /// The token's id.
        id: String,
        /// How long the old secret is still accepted (90s, 15m, 24h; at most a year).
        #[arg(long, default_value = "0s", value_parser = parse_every)]
        overlap: std::time::Duration,
    },
}

/// Projection subcommands.
#[derive(Subcommand, Debug)]
pub enum ProjectionsCmd {
    /// List the projections and how far each has folded the log.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: SubmitFormat,
    },
    /// Replay the whole log into NAME beside the live state, compare, and swap it in.
    Rebuild {
        /// Projection name.
        name: String,
    },
}

pub(super) fn parse_every(s: &str) -> Result<std::time::Duration, String> {
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

pub(super) fn parse_date(s: &str) -> Result<NaiveDate, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"))
}

pub(super) fn parse_instant(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        format!("{s:?} is not an RFC 3339 time with an offset; write for example 2021-12-17T18:00:00+01:00")
    })
}
