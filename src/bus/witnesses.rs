//! Submitting checkpoints to witnesses (C2SP `tlog-witness`, the client side): for each
//! witness, `POST <url>/add-checkpoint` with the size it cosigned last and the consistency proof
//! from it; a 409 gives the witness's size, and the request is made again once with the proof
//! from there. The cosignature lines it answers are checked with the witness's key before they
//! are added to the checkpoint. Any conforming witness will do, not only `campaign-ledger
//! witness`. Plain HTTP/1.1 over TCP, one connection per request (a checkpoint a second at
//! most).

use crate::envelope::merkle::Hash;
use crate::envelope::note::{Note, NoteSignature, VerifierKey};
use crate::envelope::witness::AddCheckpoint;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a witness may take to answer.
pub const WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// A witness the server submits its checkpoints to.
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// Its submission prefix (`http://HOST:PORT[/PATH]`).
    pub url: String,
    /// Its cosigner key (type 0x04).
    pub key: VerifierKey,
    /// The size of the last checkpoint it cosigned, as far as this process knows.
    pub cosigned: u64,
}

impl WitnessTarget {
    /// Reads `URL=NAME+ID+KEY` (`serve --witness`).
    pub fn parse(text: &str) -> Result<WitnessTarget, String> {
        let (url, key) = text.split_once('=').ok_or_else(|| {
            format!("--witness {text:?} is not URL=KEY (http://HOST:PORT=name+id+key, the key as `witness keygen` prints it)")
        })?;
        if !url.starts_with("http://") {
            return Err(format!(
                "--witness {url:?}: give the witness's http:// address (behind a TLS proxy of your own for another network)"
            ));
        }
        let key = VerifierKey::parse(key).map_err(|e| format!("--witness {url}: {e}"))?;
        if key.sig_type != crate::envelope::note::TYPE_COSIGNATURE {
            return Err(format!(
                "--witness {url}: the key is not a witness's cosigner key (type 0x04, as `witness keygen` prints it)"
            ));
        }
        Ok(WitnessTarget {
            url: url.trim_end_matches('/').to_string(),
            key,
            cosigned: 0,
        })
    }
}

/// What a witness answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its cosignatures of the checkpoint (checked).
    Cosigned(Vec<NoteSignature>),
    /// It holds a checkpoint of this size and refused the old size given (409).
    Conflict(u64),
    /// It refused (status and its body).
    Refused(u16, String),
}

/// One `add-checkpoint` request.
pub async fn add_checkpoint(
    target: &WitnessTarget,
    request: &AddCheckpoint,
    note: &Note,
) -> Result<Answer, String> {
    let (status, content_type, body) = post(&target.url, &request.body()).await?;
    Ok(match status {
        200 => {
            let sigs: Vec<NoteSignature> = body
                .lines()
                .filter(|l| !l.is_empty())
                .map(NoteSignature::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "the witness {} answered lines that are not cosignatures: {e}",
                        target.url
                    )
                })?;
            let mine: Vec<NoteSignature> =
                sigs.into_iter().filter(|s| target.key.signed(s)).collect();
            for s in &mine {
                if target.key.verify(&note.text, s).is_none() {
                    return Err(format!(
                        "the witness {} answered a cosignature that does not verify with its key",
                        target.url
                    ));
                }
            }
            if mine.is_empty() {
                return Err(format!(
                    "the witness {} answered no cosignature of its key {}",
                    target.url, target.key
                ));
            }
            Answer::Cosigned(mine)
        }
        409 if content_type.starts_with(crate::envelope::witness::SIZE_CONTENT_TYPE) => {
            Answer::Conflict(
                body.trim().parse().map_err(|_| {
                    format!("the witness {} answered 409 without a size", target.url)
                })?,
            )
        }
        s => Answer::Refused(s, body.trim().to_string()),
    })
}

/// Submits a checkpoint to one witness: its cosignatures, after at most one retry with the
/// size a 409 gives. `proof(old)` is the consistency proof from `old` to the checkpoint.
pub async fn cosign(
    target: &mut WitnessTarget,
    note: &Note,
    size: u64,
    proof: &(dyn Fn(u64) -> Result<Vec<Hash>, String> + Sync),
) -> Result<Vec<NoteSignature>, String> {
    for _ in 0..2 {
        let old = if target.cosigned > size {
            0
        } else {
            target.cosigned
        };
        let request = AddCheckpoint {
            old,
            proof: if old == 0 || old == size {
                Vec::new()
            } else {
                proof(old)?
            },
            checkpoint: note.to_text(),
        };
        match add_checkpoint(target, &request, note).await? {
            Answer::Cosigned(sigs) => {
                target.cosigned = size;
                return Ok(sigs);
            }
            Answer::Conflict(theirs) if theirs <= size => target.cosigned = theirs,
            Answer::Conflict(theirs) => {
                return Err(format!(
                    "the witness {} has cosigned a tree of {theirs} events of this ledger, larger than this log's {size}: this log lost events, or another history of it was shown to the witness",
                    target.url
                ))
            }
            Answer::Refused(status, why) => {
                return Err(format!("the witness {} refused ({status}): {why}", target.url))
            }
        }
    }
    Err(format!(
        "the witness {} kept refusing the size it gave",
        target.url
    ))
}

/// `POST <prefix>/add-checkpoint`: the status, content type and body.
async fn post(prefix: &str, body: &str) -> Result<(u16, String, String), String> {
    let rest = prefix.strip_prefix("http://").unwrap_or(prefix);
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, format!("/{p}")),
        None => (rest, String::new()),
    };
    let path = format!("{path}{}", crate::envelope::witness::ADD_CHECKPOINT);
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| format!("cannot reach the witness {prefix}: {e}"))?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot write to the witness {prefix}: {e}"))?;
        let mut answer = Vec::new();
        s.take(1 << 20)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("cannot read the witness {prefix}: {e}"))?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(WITNESS_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the witness {prefix} did not answer within {WITNESS_TIMEOUT:?}"))??;
    parse_response(&answer).ok_or_else(|| format!("the witness {prefix} did not answer HTTP"))
}

/// An HTTP/1.1 response's status, content type and body (chunked bodies are joined).
fn parse_response(raw: &[u8]) -> Option<(u16, String, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut content_type = String::new();
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.trim().to_string(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
    }
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(after.get(..n)?);
            rest = after.get(n + 2..)?;
        }
        out
    } else {
        body.to_string()
    };
    Some((status, content_type, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_flags_and_answers_are_read() {
        let t = WitnessTarget::parse(
            "http://127.0.0.1:7380/=witness.example/w1+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c",
        )
        .unwrap();
        assert_eq!(t.url, "http://127.0.0.1:7380");
        assert!(WitnessTarget::parse("http://x").is_err());
        // A log key is not a cosigner key.
        let e = WitnessTarget::parse(
            "http://x=example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap_err();
        assert!(e.contains("cosigner"), "{e}");
        let r =
            parse_response(b"HTTP/1.1 409 Conflict\r\ncontent-type: text/x.tlog.size\r\n\r\n12\n")
                .unwrap();
        assert_eq!(r, (409, "text/x.tlog.size".into(), "12\n".into()));
        let r = parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.2, "abcde");
    }
}
