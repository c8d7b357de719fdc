//! `audit`: verify, digest, keygen, public-key, access-log.

use super::args::*;
use super::output::*;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit;
use std::path::Path;
use std::process::ExitCode;

/// Runs `audit`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    let Cmd::Audit { action, .. } = &cli.command else {
        unreachable!("dispatched on its own subcommand")
    };
    match action {
        AuditCmd::Verify { .. } => verify(cli),
        AuditCmd::Digest => digest(cli),
        AuditCmd::Checkpoint => super::follow::checkpoint(cli),
        AuditCmd::Follow { .. } => super::follow::run(cli),
        AuditCmd::AccessLog { .. } => access_log(cli),
        AuditCmd::Keygen => keygen(cli),
        AuditCmd::RebuildTree => {
            let env = cli.open(false, false)?;
            env.store.rebuild_tree().map_err(|e| anyhow!("{e}"))?;
            let size = env.store.tree_size().map_err(|e| anyhow!("{e}"))?;
            println!("the Merkle tree was built again from the events: it covers {size} events; run `audit verify`");
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::PublicKey => public_key(cli),
        AuditCmd::Prove { .. } | AuditCmd::Consistency { .. } | AuditCmd::CheckProof { .. } => {
            super::proofs::run(cli)
        }
        AuditCmd::Changes {
            known_since,
            since_checkpoint,
            trust,
            known_until,
            projection,
            format,
        } => {
            let since = match (known_since, since_checkpoint) {
                (Some(t), _) => super::changes::Since::Time(*t),
                (None, Some(f)) => super::changes::Since::Checkpoint(f.clone(), trust.trust()?),
                (None, None) => bail!("give --since-checkpoint FILE or --known-since TIME"),
            };
            super::changes::run(cli, since, *known_until, projection, *format)
        }
    }
}

/// `audit verify`.
fn verify(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Audit {
            action:
                AuditCmd::Verify {
                    format,
                    digest,
                    trust,
                    export,
                },
            ..
        } => {
            // The digest first: a document that is not a valid signed digest, or not one the
            // auditor's keys and witnesses vouch for, is refused before the log is read.
            let digest = match digest {
                None => None,
                Some(path) => {
                    let d = super::trust::read_digest(path)?;
                    // A checkpoint that does not hold is a verdict (exit 1), not a usage error.
                    match d.check(&trust.trust()?) {
                        Ok(checked) => Some((d, checked)),
                        Err(e) => {
                            return Ok(print_failed(*format, &format!("{}: {e}", path.display())))
                        }
                    }
                }
            };
            let witnessed = digest
                .as_ref()
                .and_then(|(_, c)| c.as_ref())
                .and_then(|c| c.witnessed_at());
            let summary = digest.as_ref().map(|(_, c)| {
                c.as_ref().map_or_else(
                    || "unwitnessed (first format)".to_string(),
                    |c| c.witness_summary(),
                )
            });
            let digest = digest.map(|(d, _)| d);
            if let Some(file) = export {
                return verify_export_file(
                    file,
                    digest.as_ref(),
                    witnessed,
                    summary.as_deref(),
                    *format,
                );
            }
            let env = cli.open(false, false)?;
            let head = env.store.head().map_err(|e| anyhow!("{e}"))?;
            let pb = progress(Some(head.position), "verifying");
            let result = match &digest {
                None => audit::verify(env.store.as_ref(), &mut |n| pb.set_position(n)),
                Some(d) => audit::verify_extends(env.store.as_ref(), d, witnessed),
            };
            pb.finish_and_clear();
            if let (Ok(_), Some(d)) = (&result, &digest) {
                if *format == SubmitFormat::Table {
                    println!(
                        "ok: the log extends the checkpoint of position {}, signed by a key you trust, {}",
                        d.position,
                        summary.as_deref().unwrap_or("")
                    );
                }
            }
            match result {
                Ok(v) => {
                    let log = access_log_check(cli, digest.as_ref())?;
                    match format {
                        SubmitFormat::Json => println!(
                            "{}",
                            serde_json::json!({"ok": log.as_ref().is_none_or(|l| l.is_ok()), "events": v.events, "position": v.position, "hash": v.hash,
                            "access_log": log.as_ref().map(|l| match l {
                                Ok(h) => serde_json::json!({"ok": true, "entries": h.size, "hash": h.hash}),
                                Err(b) => serde_json::json!({"ok": false, "entry": b.id, "reason": b.reason}),
                            })})
                        ),
                        SubmitFormat::Table => {
                            println!(
                                "ok: {} events, chain intact; head {} {}",
                                v.events, v.position, v.hash
                            );
                            match &log {
                                Some(Ok(h)) => println!(
                                    "ok: access log of {} entries, chain intact; head {}",
                                    h.size, h.hash
                                ),
                                Some(Err(b)) => println!(
                                    "BROKEN in the access log at entry {}: {}",
                                    b.id, b.reason
                                ),
                                None => {}
                            }
                        }
                    }
                    Ok(match log {
                        Some(Err(_)) => ExitCode::from(1),
                        _ => ExitCode::SUCCESS,
                    })
                }
                Err(audit::VerifyError::Broken { position, reason }) => {
                    Ok(print_broken(*format, position, &reason))
                }
                Err(e) => Err(anyhow!("{e}")),
            }
        }
        _ => unreachable!("dispatched on its own action"),
    }
}

/// The access log beside the store, when there is one: its chain recomputed and, with a
/// digest that states its head, shown to extend it.
fn access_log_check(
    cli: &Cli,
    digest: Option<&audit::SignedDigest>,
) -> Result<Option<Result<audit::AccessHead, audit::AccessBreak>>> {
    let path = cli.access_log_path();
    if !path.exists() {
        return Ok(None);
    }
    let log = audit::AccessLog::open(&path).map_err(|e| anyhow!("{e}"))?;
    let checked =
        match digest.and_then(|d| Some((d.access_log_size?, d.access_log_hash.as_deref()?))) {
            Some((size, hash)) => log.verify_extends(size, hash),
            None => log.verify(),
        };
    Ok(Some(checked.map_err(|e| anyhow!("{e}"))?))
}

/// `audit digest`.
fn digest(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Audit {
            key,
            action: AuditCmd::Digest,
        } => {
            let d = super::follow::signed_head(cli, key.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own action"),
    }
}

/// `audit access-log`.
fn access_log(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Audit {
            action: AuditCmd::AccessLog { person, format },
            ..
        } => {
            let path = cli.access_log_path();
            if !path.exists() {
                bail!(
                "there is no access log at {} (the server writes it on the first person-level read)",
                path.display()
            );
            }
            let log = campaign_ledger::audit::AccessLog::open(&path).map_err(|e| anyhow!("{e}"))?;
            let mut after = 0;
            loop {
                let page = log
                    .entries(after, 1000, person.as_deref())
                    .map_err(|e| anyhow!("{e}"))?;
                let Some(last) = page.last() else {
                    // Nothing for a value that is no pseudonym: most likely a ref was given.
                    if let Some(p) = person.as_deref().filter(|p| {
                        after == 0 && !(p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()))
                    }) {
                        bail!(
                            "no reads of {p:?}: --person takes a pseudonym (32 hex digits, the person_id events show), not a person_ref; find a person's pseudonym by ref with `audit prove --person REF` or POST /v1/persons/record"
                        );
                    }
                    break;
                };
                after = last.id;
                for e in &page {
                    match format {
                        SubmitFormat::Json => println!("{}", serde_json::to_string(e)?),
                        SubmitFormat::Table => println!(
                            "{:>6}  {}  {} ({})  {}  {} events of {} ({} shown in clear)",
                            e.id,
                            e.at,
                            e.caller,
                            e.role,
                            e.route,
                            e.events,
                            e.persons.join(","),
                            e.revealed
                        ),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own action"),
    }
}

/// `audit keygen`.
fn keygen(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Audit {
            key,
            action: AuditCmd::Keygen,
        } => {
            let path = cli.key_path(key.as_deref());
            let k = audit::LedgerKey::generate(&path).map_err(|e| anyhow!(e))?;
            eprintln!(
                "signing key written to {} (keep it secret and backed up); its public key:",
                path.display()
            );
            println!("{}", k.public_hex());
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own action"),
    }
}

/// `audit public-key`.
fn public_key(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Audit {
            key,
            action: AuditCmd::PublicKey,
        } => {
            let k =
                audit::LedgerKey::load(&cli.key_path(key.as_deref())).map_err(|e| anyhow!(e))?;
            // Named by the ledger's origin: the ledger's id is its first event's hash.
            let env = cli.open(false, false)?;
            let id = audit::digest(env.store.as_ref())
                .map_err(|e| anyhow!("{e}"))?
                .ledger
                .ok_or_else(|| {
                    anyhow!(
                        "the ledger holds no event yet: its id (the name its checkpoints are signed under) comes with its first event; the raw public key is {}",
                        k.public_hex()
                    )
                })?;
            println!("{}", k.verifier(&id));
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own action"),
    }
}

/// `audit verify --export FILE`: the export alone, and the digest if one is given.
pub(super) fn verify_export_file(
    file: &Path,
    digest: Option<&audit::SignedDigest>,
    witnessed: Option<u64>,
    summary: Option<&str>,
    format: SubmitFormat,
) -> Result<ExitCode> {
    let f = std::fs::File::open(file)
        .with_context(|| format!("cannot read the export {}; check the path", file.display()))?;
    let result = audit::verify_export(
        &mut std::io::BufReader::with_capacity(1 << 20, f),
        digest,
        witnessed,
    );
    match result {
        Ok(v) => {
            match format {
                SubmitFormat::Json => println!(
                    "{}",
                    serde_json::json!({"ok": true, "events": v.events, "first": v.first, "last": v.last,
                        "anchor": v.anchor, "hash": v.hash, "from_start": v.from_start,
                        "digest_position": digest.map(|d| d.position)})
                ),
                SubmitFormat::Table => {
                    if let Some(d) = digest {
                        println!(
                            "ok: the export holds the log the checkpoint of position {} states, signed by a key you trust, {}",
                            d.position,
                            summary.unwrap_or("")
                        );
                    }
                    if v.from_start {
                        println!(
                            "ok: export of positions 1..{}, chain intact; head {} {}",
                            v.last, v.last, v.hash
                        );
                    } else {
                        println!(
                            "ok: export of positions {}..{} ({} events), chain intact from the hash before it ({}); head {} {}",
                            v.first, v.last, v.events, v.anchor, v.last, v.hash
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(audit::VerifyError::Broken { position, reason }) => {
            Ok(print_broken(format, position, &reason))
        }
        Err(e) => Err(anyhow!("{}: {e}", file.display())),
    }
}

/// Says what does not hold (exit code 1).
pub(super) fn print_failed(format: SubmitFormat, why: &str) -> ExitCode {
    match format {
        SubmitFormat::Json => println!("{}", serde_json::json!({"ok": false, "reason": why})),
        SubmitFormat::Table => println!("FAILED: {why}"),
    }
    ExitCode::from(1)
}

/// Says where the chain breaks (exit code 1).
pub(super) fn print_broken(format: SubmitFormat, position: u64, reason: &str) -> ExitCode {
    match format {
        SubmitFormat::Json => println!(
            "{}",
            serde_json::json!({"ok": false, "position": position, "reason": reason})
        ),
        SubmitFormat::Table => println!("BROKEN at position {position}: {reason}"),
    }
    ExitCode::from(1)
}
