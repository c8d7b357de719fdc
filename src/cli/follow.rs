//! `audit checkpoint` (the head as a signed checkpoint) and `audit follow` (the newest
//! checkpoint checked against the last one the auditor verified).

use super::args::*;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit::follow::{follow, kept_size, Followed, Refused};
use campaign_ledger::audit::{self, SignedDigest};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

/// The head, signed now (with the access log's head where the server keeps one beside the
/// store); kept in `checkpoint.txt` beside the store as the last checkpoint this ledger signed.
pub(super) fn signed_head(cli: &Cli, key: Option<&Path>) -> Result<SignedDigest> {
    // A digest is worth keeping only signed: without the key, say how to make one.
    let env = cli.open(false, false)?;
    let signer = super::proofs::signer(cli, key)?;
    let log_path = cli.access_log_path();
    let log = if log_path.exists() {
        Some(audit::AccessLog::open(&log_path).map_err(|e| anyhow!("{e}"))?)
    } else {
        None
    };
    let d = audit::digest(env.store.as_ref())
        .and_then(|d| d.with_access_log(log.as_ref()))
        .map_err(|e| anyhow!("{e}"))?;
    let d = signer.sign(d);
    if let Some(note) = &d.checkpoint {
        campaign_ledger::support::files::write_private(
            &cli.data_dir().join("checkpoint.txt"),
            note,
        )?;
    }
    Ok(d)
}

/// `audit checkpoint`.
pub(super) fn checkpoint(cli: &Cli) -> Result<ExitCode> {
    let Cmd::Audit { key, .. } = &cli.command else {
        unreachable!("dispatched on its own action")
    };
    let d = signed_head(cli, key.as_deref())?;
    let Some(note) = d.checkpoint else {
        bail!("the log holds no event yet: its first checkpoint comes with its first event");
    };
    print!("{note}");
    Ok(ExitCode::SUCCESS)
}

/// One GET with an auditor's token; the body.
fn get(url: &str, path: &str, token: Option<&str>) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url {url:?}: give the server's http:// address (or fetch the checkpoint yourself and give --checkpoint)"))?;
    let host = rest.trim_end_matches('/');
    let mut s =
        std::net::TcpStream::connect(host).with_context(|| format!("cannot reach {url}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{url} did not answer HTTP"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status != 200 {
        bail!("{url}{path} answered {status}: {}", body.trim());
    }
    Ok(body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// The consistency path of a proof document (`audit consistency`, or the HTTP endpoint).
fn path_of(doc: &str) -> Result<Vec<[u8; 32]>> {
    let v: serde_json::Value =
        serde_json::from_str(doc).context("the consistency proof is not JSON")?;
    v["consistency_path"]
        .as_array()
        .ok_or_else(|| anyhow!("the consistency proof has no consistency_path"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("a consistency_path entry is not 64 hex digits"))
        })
        .collect()
}

/// `audit follow`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    let Cmd::Audit {
        action:
            AuditCmd::Follow {
                url,
                token,
                checkpoint,
                proof,
                state,
                trust,
            },
        ..
    } = &cli.command
    else {
        unreachable!("dispatched on its own action")
    };
    let trust = trust.trust()?;
    let note = match (url, checkpoint) {
        (Some(u), _) => get(u, "/v1/audit/checkpoint", token.as_deref())?,
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the checkpoint {}", f.display()))?,
        (None, None) => bail!("give --url (with --token) or --checkpoint"),
    };
    let new_size = SignedDigest::from_checkpoint(&note)
        .map_err(|e| anyhow!(e))?
        .position;
    let path = match (kept_size(state, &note), url, proof) {
        (Some(old), _, _) if old >= new_size => None,
        (Some(old), Some(u), _) => {
            let doc = get(
                u,
                &format!("/v1/audit/proofs/consistency?first={old}&second={new_size}"),
                token.as_deref(),
            )?;
            Some(path_of(&doc)?)
        }
        (_, _, Some(p)) => Some(path_of(&std::fs::read_to_string(p)?)?),
        _ => None,
    };
    match follow(state, &note, &trust, path.as_deref()) {
        Ok((f, checked)) => {
            let (origin, witnessed) = (&checked.checkpoint.origin, checked.witness_summary());
            match f {
                Followed::First(n) => println!("ok: first checkpoint of {origin} kept: {n} events (trusted on first use), {witnessed}"),
                Followed::Same(n) => println!("ok: {origin} still at {n} events, the same root, {witnessed}"),
                Followed::Grew { from, to } => println!("ok: {origin} grew from {from} to {to} events, proved to extend the tree you had verified, {witnessed}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Refused::Contradicts { why, evidence }) => {
            println!("REFUSED: {why}; both checkpoints are kept as evidence in {}", evidence.display());
            Ok(ExitCode::from(1))
        }
        Err(Refused::Untrusted(why)) => {
            println!("REFUSED: {why}");
            Ok(ExitCode::from(1))
        }
        Err(Refused::NeedsProof(old)) => bail!(
            "the checkpoint is larger than the one you kept ({old} events): give --proof, a consistency proof from {old} (`audit consistency`, or /v1/audit/proofs/consistency?first={old}&second={new_size})"
        ),
        Err(Refused::State(e)) => bail!("{e}"),
    }
}
