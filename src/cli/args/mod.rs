//! The command line as clap parses it: every subcommand, flag and value, with their help text
//! (the auditor's subcommands in `audit.rs`, the values flags take in `values.rs`).

mod audit;
mod values;

pub use audit::*;
pub use values::*;

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
