//! A witness written from the C2SP `tlog-witness` and `tlog-cosignature` specs by someone
//! else's hands, sharing no code with `campaign-ledger witness`: notes are read and verified with
//! Cloudflare's `signed_note`, checkpoints and consistency proofs with its `tlog_tiles`, the
//! cosignature made with `ed25519-dalek` directly. A thread serving HTTP/1.1 on 127.0.0.1,
//! state in memory.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::sync::{Arc, Mutex};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The running witness.
pub struct OtherWitness {
    pub addr: String,
    /// Its cosigner key, `name+id+base64(0x04 ‖ key)`.
    pub vkey: String,
}

fn key_id(name: &str, key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', 0x04]);
    h.update(key);
    h.finalize()[..4].try_into().unwrap()
}

/// Starts it, watching the log whose verifier key is `log_vkey`.
pub fn start(name: &str, seed: [u8; 32], log_vkey: &str) -> OtherWitness {
    let key = SigningKey::from_bytes(&seed);
    let pk = key.verifying_key().to_bytes();
    let id = key_id(name, &pk);
    let vkey = format!(
        "{name}+{}+{}",
        hex::encode(id),
        B64.encode([&[0x04u8][..], &pk].concat())
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state: Arc<Mutex<HashMap<String, (u64, tlog_tiles::Hash)>>> = Default::default();
    let (name, log_vkey) = (name.to_string(), log_vkey.to_string());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let (status, ctype, answer) = handle(&body, &name, &key, id, &log_vkey, &state);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    OtherWitness { addr, vkey }
}

type State = Mutex<HashMap<String, (u64, tlog_tiles::Hash)>>;

fn handle(
    body: &[u8],
    name: &str,
    key: &SigningKey,
    id: [u8; 4],
    log_vkey: &str,
    state: &State,
) -> (u16, &'static str, String) {
    let text = String::from_utf8_lossy(body);
    let Some((head, note)) = text.split_once("\n\n") else {
        return (400, "text/plain", "no blank line\n".into());
    };
    let mut lines = head.lines();
    let Some(old) = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return (400, "text/plain", "bad old line\n".into());
    };
    let proof: Vec<tlog_tiles::Hash> = lines
        .filter_map(|l| tlog_tiles::Hash::parse_hash(l).ok())
        .collect();
    let Ok(n) = signed_note::Note::from_bytes(note.as_bytes()) else {
        return (400, "text/plain", "not a note\n".into());
    };
    let Ok(cp) = tlog_tiles::Checkpoint::from_bytes(n.text()) else {
        return (400, "text/plain", "not a checkpoint\n".into());
    };
    let verifier = signed_note::StandardVerifier::new(log_vkey).unwrap();
    if signed_note::Verifier::name(&verifier) != cp.origin() {
        return (404, "text/plain", "unknown log\n".into());
    }
    let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    if n.verify(&list).is_err() {
        return (403, "text/plain", "not signed by the log\n".into());
    }
    if old > cp.size() {
        return (400, "text/plain", "old beyond size\n".into());
    }
    let mut st = state.lock().unwrap();
    let (held, root) = st
        .get(cp.origin())
        .copied()
        .unwrap_or((0, tlog_tiles::EMPTY_HASH));
    if old != held {
        return (409, "text/x.tlog.size", format!("{held}\n"));
    }
    let holds = if old == 0 {
        proof.is_empty()
    } else {
        tlog_tiles::check_tree(&proof, cp.size(), *cp.hash(), old, root).is_ok()
    };
    if !holds {
        return (422, "text/plain", "the proof does not hold\n".into());
    }
    st.insert(cp.origin().to_string(), (cp.size(), *cp.hash()));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
    msg.extend_from_slice(n.text());
    let sig = key.sign(&msg).to_bytes();
    let mut raw = id.to_vec();
    raw.extend_from_slice(&ts.to_be_bytes());
    raw.extend_from_slice(&sig);
    (
        200,
        "text/plain",
        format!("\u{2014} {name} {}\n", B64.encode(raw)),
    )
}

/// Checks a cosignature line of `name` with `vkey` over a checkpoint's note text, as the
/// `tlog-cosignature` spec gives it (independently of the ledger's code): its timestamp.
pub fn verify_cosignature(vkey: &str, note: &str) -> Option<u64> {
    let mut parts = vkey.splitn(3, '+');
    let (name, id, raw) = (
        parts.next()?,
        parts.next()?,
        B64.decode(parts.next()?).ok()?,
    );
    let pk = ed25519_dalek::VerifyingKey::from_bytes(raw[1..].try_into().ok()?).ok()?;
    let split = note.rfind("\n\n")?;
    let text = &note[..split + 1];
    for line in note[split + 2..].lines() {
        let Some((n, b)) = line
            .strip_prefix("\u{2014} ")
            .and_then(|l| l.split_once(' '))
        else {
            continue;
        };
        let b = B64.decode(b).ok()?;
        if n != name || hex::encode(&b[..4]) != id || b.len() != 76 {
            continue;
        }
        let ts = u64::from_be_bytes(b[4..12].try_into().ok()?);
        let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        msg.extend_from_slice(text.as_bytes());
        let sig = ed25519_dalek::Signature::from_bytes(b[12..].try_into().ok()?);
        return pk.verify_strict(&msg, &sig).ok().map(|_| ts);
    }
    None
}
