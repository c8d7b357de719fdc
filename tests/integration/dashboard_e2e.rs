//! The dashboard end to end, in a real headless Chromium driven over the DevTools protocol:
//! `demo --serve` on port 0, the page opened with the printed URL (auditor token in the
//! fragment), the national totals read from the page (1,428 and 880 as of 2021-12-17, in
//! French number format), a command posted through the API appearing on the page without a
//! reload, the data-quality findings, the notice of figures revised after their date, "known
//! at" read in Paris time, the Lyon supervisor's own page, English on the switch, a
//! phone-width layout without horizontal scrolling, the
//! "disconnected" state when the server stops, and screenshots kept under
//! `target/tmp/dashboard-e2e/`.
//!
//! Chromium comes from `$CHROMIUM`, or `chromium` / `chromium-browser` / `google-chrome` on
//! PATH; `scripts/test.sh` installs Debian's `chromium` when none is there. Without one the
//! test fails and says so: it is never skipped.

use crate::support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!(
        "no Chromium found: install Debian's package (apt-get install chromium), or set CHROMIUM to a \
         Chromium or Chrome binary; scripts/test.sh installs it"
    )
}

/// A process group started by this test, stopped (the whole group) when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        unsafe {
            libc::kill(-pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// A DevTools protocol session with one page.
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(tungstenite::Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method}");
            let msg = match self.ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection failed during {method}: {e}"),
            };
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates JavaScript in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` gives `want`; returns how long it took.
    fn wait_for(&mut self, expression: &str, want: &Value, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let got = self.eval(expression);
            if &got == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "`{expression}` is {got}, not {want}, after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// A GET answered with a Content-Length (DevTools' HTTP server keeps connections open).
fn http_get(addr: &str, path: &str) -> String {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(&s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

fn http_post(addr: &str, path: &str, token: &str, body: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Starts headless Chromium on a free DevTools port; returns it and a session with its page.
fn browser(profile: &Path) -> (Group, Cdp) {
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,1800",
            "--lang=fr-FR",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let stderr = child.stderr.take().unwrap();
    let group = Group(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let ws_url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Chromium did not start its DevTools server within 60 s");
    let addr = ws_url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // The page target (about:blank) and its own WebSocket.
    let page = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list: Value =
                serde_json::from_str(&http_get(&addr, "/json/list")).unwrap_or(Value::Null);
            if let Some(p) = list
                .as_array()
                .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            {
                break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "Chromium opened no page: {list}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let stream = TcpStream::connect(&addr).unwrap();
    // The handshake waits as long as a loaded machine needs (a short read timeout here
    // made it fail with "Interrupted" on CI); the session's reads then poll every 500 ms.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (ws, _) = tungstenite::client::client(page.as_str(), stream)
        .unwrap_or_else(|e| panic!("the WebSocket handshake with Chromium failed: {e}"));
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    (group, Cdp { ws, next: 0 })
}

fn digits(v: &Value) -> String {
    v.as_str()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

#[test]
fn the_dashboard_shows_the_totals_follows_new_commands_live_and_fits_a_phone() {
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-e2e");
    std::fs::create_dir_all(&artefacts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = support::bin()
        .current_dir(dir.path())
        .args([
            "--store",
            "sqlite:./data/ledger.db",
            "demo",
            "--serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut server = Group(server);
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut dashboard = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening on http://") {
            addr = Some(a.to_string());
        }
        if let Some(u) = line.strip_prefix("dashboard: ") {
            dashboard = Some(u.to_string());
            break;
        }
    }
    let addr = addr.expect("demo --serve printed no address");
    let dashboard = dashboard.expect("demo --serve printed no dashboard URL");
    assert!(dashboard.contains("#token=clt_"), "{dashboard}");
    let tokens: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("data/demo-tokens.json")).unwrap(),
    )
    .unwrap();
    for role in ["agent", "partner", "supervisor", "auditor", "admin"] {
        assert!(
            tokens[role].as_str().unwrap().starts_with("clt_"),
            "{tokens}"
        );
    }

    let profile = tempfile::tempdir().unwrap();
    let (_chromium, mut page) = browser(profile.path());
    page.call("Page.enable", json!({}));
    page.call("Page.navigate", json!({"url": dashboard}));
    // The national line as of 17 December 2021, from the page.
    page.wait_for(
        "document.getElementById('total-doses')?.dataset.value",
        &json!("1428"),
        Duration::from_secs(30),
    );
    assert_eq!(
        page.eval("document.getElementById('total-first').dataset.value"),
        json!("880")
    );
    let shown = page.eval("document.getElementById('total-doses').textContent");
    assert_eq!(digits(&shown), "1428");
    let separator: String = shown
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    assert!(
        ["\u{202f}", "\u{a0}", " "].contains(&separator.as_str()),
        "French groups thousands with a space: {shown}"
    );
    assert_eq!(page.eval("document.documentElement.lang"), json!("fr"));
    // The token left the address bar once read.
    assert_eq!(page.eval("location.hash"), json!(""));
    assert_eq!(
        page.eval("document.querySelectorAll('#directorates tbody tr').length"),
        json!(19)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#curve polyline').length"),
        json!(4)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#curve .marker').length >= 1"),
        json!(true)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#tickets .funnel').length"),
        json!(2)
    );
    page.wait_for(
        "document.getElementById('status').dataset.state",
        &json!("live"),
        Duration::from_secs(10),
    );
    page.screenshot(&artefacts.join("dashboard.png"));

    // The agents column of the report, the data-quality panel (the scenario's open finding in
    // Lyon, with the person's pseudonym only), and the notice that 17 December was revised
    // after that evening (the paper backlog), with the way to the "known at" view.
    assert_eq!(
        page.eval("document.querySelector('#directorates tbody tr[data-directorate=paris] td[data-key=agents]').textContent"),
        json!("14")
    );
    assert_eq!(
        page.eval("document.getElementById('findings-count').dataset.value"),
        json!("1")
    );
    assert_eq!(
        page.eval("[...document.querySelectorAll('#findings-list .finding')].map(e => e.dataset.kind + '@' + e.dataset.directorate)"),
        json!(["second_dose_without_first@lyon"])
    );
    let item = page.eval("document.querySelector('#findings-list .finding').textContent");
    assert!(
        item.as_str()
            .unwrap()
            .contains("Enregistrer la première dose"),
        "{item}"
    );
    assert!(
        !item.as_str().unwrap().contains("p-"),
        "a ref in the list: {item}"
    );
    let notice = page.eval("document.getElementById('revision').textContent");
    assert!(
        notice.as_str().unwrap().contains("1\u{202f}420")
            || notice.as_str().unwrap().contains("1 420"),
        "{notice}"
    );
    assert_eq!(
        page.eval("document.getElementById('revision').dataset.kind"),
        json!("revised")
    );

    // A command through the API appears without a reload.
    page.eval("window.__notReloaded = true");
    let dose = json!({"type": "AdministerDose", "command_id": uuid::Uuid::now_v7(),
        "person_ref": format!("p-e2e-{}", uuid::Uuid::now_v7()), "age_band": "30-39",
        "recipient": "user", "directorate": "lyon", "site": "lyon-dt", "product": "comirnaty",
        "lot": "FF2832", "dose": "first", "administered_at": "2021-12-17T15:00:00+01:00"});
    let (status, body) = http_post(
        &addr,
        "/v1/commands",
        tokens["agent"].as_str().unwrap(),
        &dose.to_string(),
    );
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("\"accepted\""), "{body}");
    let took = page.wait_for(
        "document.getElementById('total-doses').dataset.value",
        &json!("1429"),
        Duration::from_secs(5),
    );
    eprintln!("the page showed the new dose {took:?} after the API accepted it");
    assert_eq!(
        page.eval("document.getElementById('total-first').dataset.value"),
        json!("881")
    );
    assert_eq!(
        page.eval("window.__notReloaded === true"),
        json!(true),
        "the page reloaded"
    );

    // The directorates sort by any column: by doses, most first.
    page.eval("document.querySelector('#directorates th[data-key=total]').click()");
    assert_eq!(
        page.eval("document.querySelector('#directorates tbody tr').dataset.directorate"),
        json!("paris"),
        "Paris gave the most doses"
    );

    // Time travel for auditors: what the ledger knew on the evening of 17 December 2021
    // (the dose just posted was recorded today, so it is not there either). The time is read
    // in the campaign's time zone whatever the browser's (this one runs in UTC), said on the
    // page, and kept in the address.
    assert_eq!(
        page.eval("document.getElementById('known-at-box').hidden"),
        json!(false)
    );
    assert_eq!(
        page.eval("document.getElementById('tz').textContent.includes('Europe/Paris')"),
        json!(true)
    );
    page.eval(
        "document.getElementById('known-at').value = '17/12/2021 18:00'; \
         document.getElementById('known-at-on').click()",
    );
    page.wait_for(
        "document.getElementById('total-doses').dataset.value",
        &json!("1420"),
        Duration::from_secs(10),
    );
    assert_eq!(
        page.eval("new URL(location.href).searchParams.get('known_at')"),
        json!("2021-12-17T18:00:00+01:00")
    );
    page.eval("document.getElementById('known-at-on').click()");
    page.wait_for(
        "document.getElementById('total-doses').dataset.value",
        &json!("1429"),
        Duration::from_secs(10),
    );

    // English on the switch.
    page.eval("document.getElementById('lang').click()");
    assert_eq!(page.eval("document.documentElement.lang"), json!("en"));
    assert_eq!(
        page.eval("document.getElementById('total-doses').textContent"),
        json!("1,429")
    );
    assert_eq!(
        page.eval("document.getElementById('h-totals').textContent"),
        json!("National totals")
    );

    // A phone-width screen: no horizontal scrolling of the page.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"),
        json!(true),
        "the page is wider than a phone: {}",
        page.eval("document.documentElement.scrollWidth")
    );
    page.screenshot(&artefacts.join("dashboard-phone.png"));

    // The Lyon supervisor's page: its directorate's curve, no panel that does not concern
    // Lyon (it runs no session), the finding, what is masked said exactly, the role in French.
    page.call("Emulation.clearDeviceMetricsOverride", json!({}));
    let supervisor = format!(
        "http://{addr}/dashboard/?as_of=2021-12-17&lang=fr#token={}",
        tokens["supervisor"].as_str().unwrap()
    );
    page.call("Page.navigate", json!({"url": supervisor}));
    page.wait_for(
        "document.getElementById('status')?.dataset.state === 'live' && document.getElementById('who').textContent",
        &json!("Rôle : superviseur (Lyon)"),
        Duration::from_secs(30),
    );
    assert_eq!(
        page.eval("document.getElementById('total-doses').dataset.value"),
        json!("27"),
        "Lyon's doses, with the one posted above"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#curve polyline').length"),
        json!(4),
        "{}",
        page.eval("document.getElementById('curve').textContent")
    );
    assert_eq!(
        page.eval("document.getElementById('sec-sessions').hidden"),
        json!(true)
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#tickets .funnel').length"),
        json!(1)
    );
    assert_eq!(
        page.eval("document.getElementById('known-at-box').hidden"),
        json!(true)
    );
    assert_eq!(
        page.eval("document.getElementById('findings-count').dataset.value"),
        json!("1")
    );
    assert_eq!(
        page.eval("document.getElementById('masking').hidden"),
        json!(true),
        "nothing per site on this page, so nothing said masked"
    );
    assert_eq!(
        page.eval("document.getElementById('as-of').value"),
        json!("17/12/2021"),
        "dates as the French write them, whatever the browser"
    );
    page.screenshot(&artefacts.join("dashboard-supervisor.png"));

    // The server stops: the page says it is disconnected.
    drop(server);
    page.wait_for(
        "document.getElementById('status').dataset.state",
        &json!("disconnected"),
        Duration::from_secs(10),
    );
    eprintln!("screenshots in {}", artefacts.display());
}
