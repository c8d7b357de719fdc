//! The C2SP specs' own examples, and vectors made with an independent implementation (Python's
//! `cryptography`, from the spec text): keys, ids, signatures and cosignatures byte for byte.

use super::*;

/// `signed-note`'s example: its verifier key, note and signature.
#[test]
fn the_signed_note_spec_example_verifies() {
    let vk =
        VerifierKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
            .unwrap();
    let note = Note::parse("This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n").unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(vk.verify(&note.text, &note.signatures[0]), Some(0));
    assert_eq!(
        vk.to_string(),
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    );
    // One byte of the text changed: no longer.
    assert_eq!(
        vk.verify("This is an example message!\n", &note.signatures[0]),
        None
    );
}

/// A log key (seed 0), its signed checkpoint, and a witness's cosignature (seed 1, time
/// 1700000000), made with Python's `cryptography` from the specs alone.
#[test]
fn checkpoints_and_cosignatures_match_an_independent_implementation() {
    let log = SigningKey::from_bytes(&[0; 32]);
    let witness = SigningKey::from_bytes(&[1; 32]);
    let origin = "example.com/behind-the-sofa";
    let cp = Checkpoint {
        origin: origin.into(),
        size: 7,
        root: b64_hash("3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=").unwrap(),
        extensions: vec![],
    };
    let sig = sign(&cp.text(), origin, &log);
    let note = Note {
        text: cp.text(),
        signatures: vec![sig],
    };
    assert_eq!(
        note.to_text(),
        "example.com/behind-the-sofa\n7\n3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=\n\n\u{2014} example.com/behind-the-sofa nFHOPR6PoegRRzU0jtDqRy80EcjCop1r80Nh1Qw5gOMcSFMOWvMvwzrtRI71FwecFQekUKm5kaMH6DLLeqTMdx9wpwA=\n"
    );
    let log_vk = VerifierKey::new(origin, TYPE_ED25519, log.verifying_key());
    assert_eq!(
        log_vk.to_string(),
        "example.com/behind-the-sofa+9c51ce3d+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
    );
    let w_vk = VerifierKey::new(
        "witness.example/w1",
        TYPE_COSIGNATURE,
        witness.verifying_key(),
    );
    assert_eq!(
        w_vk.to_string(),
        "witness.example/w1+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c"
    );
    let cosig = cosign(&cp.text(), "witness.example/w1", &witness, 1_700_000_000);
    assert_eq!(
        cosig.line(),
        "\u{2014} witness.example/w1 CtfTXgAAAABlU/EAKUlg3Y3a82EiIYS9VH/eQswHO0tS8fwdyr6yuP2eNKoV0BBm2gPoNIbKrWX3xk0FbypOpwKbifgC0UC4dMVoDw==\n"
    );
    assert_eq!(w_vk.verify(&cp.text(), &cosig), Some(1_700_000_000));
    // A cosignature is not a note signature, and the other way round.
    assert_eq!(log_vk.verify(&cp.text(), &cosig), None);
    let parsed = Checkpoint::parse(&note.text).unwrap();
    assert_eq!(parsed, cp);
}

#[test]
fn malformed_notes_keys_and_checkpoints_are_named() {
    for (note, says) in [
        ("no blank line\n\u{2014} a AAAAAAA=\n", "blank line"),
        ("text\n\n", "no signature"),
        ("text\n\nnot a signature\n", "not a signature line"),
        ("te\tx\n\n\u{2014} a AAAAAAA=\n", "control character"),
        ("text\n\n\u{2014} a AAAAAAA=", "newline"),
    ] {
        let e = Note::parse(note).unwrap_err().to_string();
        assert!(e.contains(says), "{note:?}: {e}");
    }
    for (key, says) in [
        ("a+b", "not a verifier key"),
        ("a+0000000g+AQ==", "8 hex digits"),
        ("a+00000000+AQ==", "33 bytes"),
        (
            "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
            "was changed",
        ),
    ] {
        let e = VerifierKey::parse(key).unwrap_err().to_string();
        assert!(e.contains(says), "{key:?}: {e}");
    }
    for (text, says) in [
        ("o\n05\nAAAA\n", "decimal"),
        ("o\n5\nAAAA\n", "32 bytes"),
        ("o\n5\n", "root hash"),
        (
            "o\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",
            "extension line",
        ),
    ] {
        let e = Checkpoint::parse(text).unwrap_err().to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}
