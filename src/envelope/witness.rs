//! The C2SP `tlog-witness` protocol's messages: the body of `POST <prefix>/add-checkpoint`
//! (`old <size>`, up to 63 consistency-proof hashes in base64, a blank line, the signed
//! checkpoint) and the answers. Pure: the witness server (`witness`) and the client that
//! submits checkpoints (`bus::witnesses`) both read and write these bytes.

use super::note::{b64, b64_hash, NoteError};

/// The most consistency-proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;
/// The content type of a 409 answer: the witness's size for the origin, in decimal.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// The path of the submission endpoint, under the witness's prefix.
pub const ADD_CHECKPOINT: &str = "/add-checkpoint";

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness cosigned last (0: none).
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<[u8; 32]>,
    /// The signed checkpoint (a note).
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request's body.
    pub fn body(&self) -> String {
        let mut s = format!("old {}\n", self.old);
        for h in &self.proof {
            s.push_str(&b64(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Reads a request's body.
    pub fn parse(body: &str) -> Result<AddCheckpoint, NoteError> {
        let bad = |why: &str| NoteError(why.to_string());
        let (head, checkpoint) = body.split_once("\n\n").ok_or_else(|| {
            bad("the body has no blank line between the proof and the checkpoint")
        })?;
        let mut lines = head.split('\n');
        let old_line = lines.next().unwrap_or_default();
        let old_text = old_line
            .strip_prefix("old ")
            .ok_or_else(|| bad("the body's first line is not `old <size>`"))?;
        let old: u64 = old_text
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == old_text)
            .ok_or_else(|| bad("the old size is not a decimal number"))?;
        let proof = lines.map(b64_hash).collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("the consistency proof has more than 63 lines"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_written_and_read_back_and_bad_ones_are_named() {
        let r = AddCheckpoint {
            old: 3,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n5\nAA==\n\n\u{2014} o AAAA\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(&r.body()).unwrap(), r);
        assert!(r.body().starts_with("old 3\nAQEB"));
        for (body, says) in [
            ("old 3\n", "blank line"),
            ("new 3\n\nx", "old <size>"),
            ("old 03\n\nx", "decimal"),
            ("old 3\nnot-base64\n\nx", "not a hash"),
        ] {
            let e = AddCheckpoint::parse(body).unwrap_err().to_string();
            assert!(e.contains(says), "{body:?}: {e}");
        }
    }
}
