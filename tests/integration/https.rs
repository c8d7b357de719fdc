//! `serve --tls-cert --tls-key`: HTTPS without a proxy, checked by a real TLS client that
//! trusts only the CA made at test time; plain HTTP to that port gets no answer; files that
//! are not a certificate and key are refused at start, saying which.

use crate::support;

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use tokio_rustls::rustls;

/// One HTTPS GET through rustls trusting `ca_pem` (server name 127.0.0.1): status and body.
fn https_get(addr: &str, ca_pem: &str, path: &str, token: &str) -> (u16, String) {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    // A peer that closes without close_notify is an error in rustls; the answer is complete.
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |x| x.1)
        .to_string();
    (status, body)
}

#[test]
fn serve_speaks_https_with_the_certificate_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = support::pki::Pki::new();
    pki.write(d);
    let token = support::token(d, "auditor-1", "auditor");
    let mut args = support::SERVE_WITH_TOKENS.to_vec();
    args.extend(["--tls-cert", "server.pem", "--tls-key", "server-key.pem"]);
    let (server, addr) = support::spawn_serve(d, &args, std::process::Stdio::null());
    let (status, body) = https_get(&addr, &pki.ca, "/healthz", "");
    assert_eq!((status, body.trim()), (200, "ok"), "{body}");
    let (status, body) = https_get(&addr, &pki.ca, "/v1/whoami", &token);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("auditor-1"), "{body}");
    // Plain HTTP to the TLS port: no HTTP answer.
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // The server may close before the request is all written (it is no TLS hello).
    let _ = write!(tcp, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
    // The server goes on serving TLS clients after that.
    assert_eq!(https_get(&addr, &pki.ca, "/healthz", "").0, 200);
    drop(server);
}

#[test]
fn certificate_and_key_that_do_not_read_or_match_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = support::pki::Pki::new();
    pki.write(d);
    std::fs::write(d.join("empty.pem"), "not a certificate\n").unwrap();
    for (cert, key, says) in [
        (
            "empty.pem",
            "server-key.pem",
            "--tls-cert empty.pem: holds no certificate",
        ),
        (
            "server.pem",
            "empty.pem",
            "--tls-key empty.pem: not a PEM private key",
        ),
        (
            "server.pem",
            "client-key.pem",
            "does not go with --tls-cert server.pem",
        ),
        ("missing.pem", "server-key.pem", "--tls-cert missing.pem"),
    ] {
        let o = support::run(
            d,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--create",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{cert} {key}");
        assert!(
            support::stderr(&o).contains(says),
            "{cert} {key}: {}",
            support::stderr(&o)
        );
    }
    // One without the other: clap says so.
    let o = support::run(d, &["serve", "--tls-cert", "server.pem"]);
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("--tls-key"),
        "{}",
        support::stderr(&o)
    );
}
