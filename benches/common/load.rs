//! The HTTP load generator the benchmarks share: keep-alive clients sending commands.

use super::percentile;
use std::sync::Arc;
use std::time::Instant;

/// An event-driven load generator (like wrk): one thread, `clients` keep-alive HTTP/1.1
/// connections, each sending its commands one after the other. The requests are built before
/// the clock starts and each response is read into one buffer, so that the generator takes as
/// little as it can of the two cores the server shares with it. Returns (commands/s, p50 ms,
/// p99 ms).
pub fn load(addr: &str, token: &str, clients: u64, per: u64, bodies: &[String]) -> (f64, f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let requests: Vec<Vec<u8>> = bodies
        .iter()
        .map(|body| {
            format!(
                "POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let requests = Arc::new(requests);
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let addr = addr.to_string();
            let requests = requests.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut lat = Vec::with_capacity(per as usize);
                let mut buf = Vec::with_capacity(4096);
                for req in &requests[(c * per) as usize..((c + 1) * per) as usize] {
                    let t = Instant::now();
                    s.write_all(req).await.unwrap();
                    buf.clear();
                    let body = loop {
                        if let Some(end) = response_end(&buf) {
                            break &buf[..end];
                        }
                        if buf.capacity() - buf.len() < 1024 {
                            buf.reserve(4096);
                        }
                        assert!(s.read_buf(&mut buf).await.unwrap() > 0, "connection closed");
                    };
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    assert!(
                        body.starts_with(b"HTTP/1.1 200 "),
                        "{}",
                        String::from_utf8_lossy(body)
                    );
                    assert!(
                        body.windows(10).any(|w| w == b"\"accepted\""),
                        "{}",
                        String::from_utf8_lossy(body)
                    );
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (
            (clients * per) as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        )
    })
}

/// Where the HTTP/1.1 response at the start of `buf` ends (head and `Content-Length` body),
/// once `buf` holds all of it.
fn response_end(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let length = buf[..head]
        .split(|b| *b == b'\n')
        .find_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + length).then_some(head + length)
}
