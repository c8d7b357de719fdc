//! A full disk while serving: commands are refused with a clear error (503 over HTTP, exit 2
//! in the CLI), nothing written is damaged, and writing resumes when space is back, without a
//! restart. The disk is a small tmpfs where the machine lets this test mount one (root in a
//! container that allows it); elsewhere a file-size limit (RLIMIT_FSIZE, lowered and raised on
//! the running server with prlimit) plays the full disk.

use crate::support;

use support::plain as request;
use support::{lyon_first_dose as dose, lyon_session as session};

use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

/// How the disk is made full, then given space again.
enum Disk {
    /// A 3 MiB tmpfs mounted on `mount`, filled by `filler`.
    Tmpfs { mount: PathBuf, filler: PathBuf },
    /// A file-size limit set on the server's process (and the CLI's).
    Limit,
}

impl Disk {
    fn new(dir: &Path) -> Disk {
        let mount = dir.join("disk");
        std::fs::create_dir(&mount).unwrap();
        // LEDGER_TEST_DISK=limit tries the file-size limit even where a tmpfs can be mounted.
        let limit_only = std::env::var("LEDGER_TEST_DISK").as_deref() == Ok("limit");
        let ok = !limit_only
            && std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
                .arg(&mount)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if ok {
            eprintln!("full disk: a 3 MiB tmpfs");
            Disk::Tmpfs {
                filler: mount.join("filler"),
                mount,
            }
        } else {
            eprintln!("full disk: cannot mount a tmpfs here; a file-size limit plays it");
            Disk::Limit
        }
    }

    fn dir(&self, base: &Path) -> PathBuf {
        match self {
            Disk::Tmpfs { mount, .. } => mount.clone(),
            Disk::Limit => base.join("disk"),
        }
    }

    fn fill(&self, pid: u32) {
        match self {
            Disk::Tmpfs { filler, .. } => {
                let mut f = std::fs::File::create(filler).unwrap();
                let block = vec![0u8; 64 * 1024];
                while f.write_all(&block).is_ok() {}
                let _ = f.sync_all();
            }
            Disk::Limit => set_file_limit(pid, 1),
        }
    }

    fn free(&self, pid: u32) {
        match self {
            Disk::Tmpfs { filler, .. } => std::fs::remove_file(filler).unwrap(),
            Disk::Limit => set_file_limit(pid, libc::RLIM_INFINITY),
        }
    }

    /// The CLI run with the disk full (for `Limit`, the limit set on that process).
    fn cli(&self, dir: &Path) -> std::process::Command {
        let mut c = support::bin();
        c.current_dir(dir);
        if let Disk::Limit = self {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                c.pre_exec(|| {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let lim = libc::rlimit {
                        rlim_cur: 1,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                    Ok(())
                });
            }
        }
        c
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Disk::Tmpfs { mount, .. } = self {
            let _ = std::process::Command::new("umount").arg(mount).status();
        }
    }
}

/// The soft file-size limit of a running process (the hard limit stays unlimited).
fn set_file_limit(pid: u32, bytes: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a plain syscall on our own child.
    let r = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_full_disk_refuses_commands_clearly_damages_nothing_and_writing_resumes() {
    let base = tempfile::tempdir().unwrap();
    let disk = Disk::new(base.path());
    let dir = disk.dir(base.path());
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = support::bin();
    cmd.current_dir(&dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--digest-every",
            "0",
            "--create",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec. A write past a file-size
    // limit is then an error (EFBIG) instead of a signal that kills the server.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    let server = support::Running(child);
    let pid = server.0.id();

    let site = support::lyon_site();
    assert_eq!(request(&addr, "POST", "/v1/commands", &site).0, 200);
    let mut accepted = 1;
    for i in 0..20 {
        let (code, body) = request(
            &addr,
            "POST",
            "/v1/commands",
            &dose(uuid::Uuid::now_v7(), &format!("before-{i}")),
        );
        assert_eq!(code, 200, "{body}");
        accepted += 1;
    }

    disk.fill(pid);
    // Commands (new people, and sessions) are refused with 503 and a sentence saying why.
    let mut refused = Vec::new();
    for i in 0..40 {
        let id = uuid::Uuid::now_v7();
        let body = if i % 2 == 0 {
            dose(id, &format!("during-{i}"))
        } else {
            session(id)
        };
        let (code, answer) = request(&addr, "POST", "/v1/commands", &body);
        if code == 200 {
            // The last pages of the disk may still take a few groups.
            accepted += 1;
            continue;
        }
        assert_eq!(code, 503, "{answer}");
        assert!(
            answer.contains("the disk is full or a file-size limit was reached"),
            "{answer}"
        );
        refused.push(body);
    }
    assert!(
        refused.len() >= 30,
        "only {} of 40 commands were refused on a full disk",
        refused.len()
    );
    // Reads of counts go on; a read that shows people needs its access-log entry, and is
    // refused while that cannot be written.
    assert_eq!(request(&addr, "GET", "/v1/events?limit=1", "").0, 200);
    let (code, answer) = request(&addr, "GET", "/v1/events?limit=5", "");
    assert_eq!(code, 503, "{answer}");
    eprintln!("a read of people on a full disk: {answer}");
    // A projection answers from its saved state, or 503 when it must first save a catch-up
    // it cannot write.
    let (code, answer) = request(&addr, "GET", "/v1/projections/doses_by_directorate", "");
    assert!(
        code == 200 || (code == 503 && answer.contains("the disk is full")),
        "{code} {answer}"
    );

    // The CLI on the same full disk: exit 2, saying why; the server's log is untouched.
    let file = dir.join("more.jsonl");
    let more = dose(uuid::Uuid::now_v7(), "cli-1") + "\n";
    if let Disk::Tmpfs { .. } = disk {
        // Written before the disk filled up would be more honest, but the file is tiny:
        // free a little room for it only.
        disk.free(pid);
        std::fs::write(&file, &more).unwrap();
        disk.fill(pid);
    } else {
        std::fs::write(&file, &more).unwrap();
    }
    let o = disk
        .cli(&dir)
        .args(["submit", "more.jsonl"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    let said = support::stdout(&o) + &support::stderr(&o);
    eprintln!("submit on a full disk: {said}");
    assert!(said.contains("full") || said.contains("limit"), "{said}");

    // Space is back: the same commands are accepted now (they were not stored), without a
    // restart; the log verifies and holds each command once.
    disk.free(pid);
    for body in &refused {
        let (code, answer) = request(&addr, "POST", "/v1/commands", body);
        assert_eq!(code, 200, "{answer}");
        assert!(answer.contains("\"accepted\""), "{answer}");
        accepted += 1;
    }
    drop(server);
    let o = support::run(&dir, &["audit", "verify"]);
    assert!(o.status.success(), "{}", support::stdout(&o));
    let events: usize = support::stdout(&o)
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert_eq!(events, accepted, "{}", support::stdout(&o));
}

#[test]
fn a_full_key_store_volume_refuses_new_people_only_and_half_records_nobody() {
    let base = tempfile::tempdir().unwrap();
    let keys = base.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    // The key store on a volume of its own (as the README advises), which fills up.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&keys)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: this machine does not let the test mount a tmpfs for the key store (the full-disk test above covers the key store with a file-size limit)");
        return;
    }
    let _unmount = Disk::Tmpfs {
        mount: keys.clone(),
        filler: keys.join("filler"),
    };
    let (server, addr) = support::serve_new(base.path(), &["--key-store", "keys/ledger.keys.db"]);
    let site = support::lyon_site();
    assert_eq!(request(&addr, "POST", "/v1/commands", &site).0, 200);
    assert_eq!(
        request(
            &addr,
            "POST",
            "/v1/commands",
            &dose(uuid::Uuid::now_v7(), "known")
        )
        .0,
        200
    );
    let mut f = std::fs::File::create(keys.join("filler")).unwrap();
    while f.write_all(&[0u8; 16 * 1024]).is_ok() {}
    drop(f);

    // New people take keys made in advance, then need new ones the full volume refuses: the
    // request says how far it got, and nobody is recorded without a key.
    let batch = |from: usize| {
        let all: Vec<serde_json::Value> = (from..from + 700)
            .map(|i| {
                serde_json::from_str(&dose(uuid::Uuid::now_v7(), &format!("new-{i}"))).unwrap()
            })
            .collect();
        serde_json::Value::Array(all).to_string()
    };
    let first = batch(0);
    let (code, answer) = request(&addr, "POST", "/v1/commands", &first);
    assert_eq!(code, 200, "{answer}");
    let second = batch(700);
    let (code, answer) = request(&addr, "POST", "/v1/commands", &second);
    assert_eq!(code, 503, "{answer}");
    assert!(
        answer.contains("cannot write the key store") && answer.contains("the disk is full"),
        "{answer}"
    );
    assert!(
        answer.contains("commands of the request were handled"),
        "{answer}"
    );
    eprintln!("a new person with the key store's volume full: {answer}");
    // Commands naming nobody, and people who have a key, go on.
    let (code, answer) = request(
        &addr,
        "POST",
        "/v1/commands",
        &session(uuid::Uuid::now_v7()),
    );
    assert_eq!(code, 200, "{answer}");
    let second_dose = serde_json::json!({"type": "AdministerDose", "command_id": uuid::Uuid::now_v7(),
        "person_ref": "known", "age_band": "30-39", "recipient": "user", "directorate": "lyon",
        "site": "lyon-dt", "product": "comirnaty", "lot": "FF1234", "dose": "second",
        "administered_at": "2021-11-15T10:00:00+01:00"});
    let (code, answer) = request(&addr, "POST", "/v1/commands", &second_dose.to_string());
    assert_eq!(
        (code, answer.contains("\"accepted\"")),
        (200, true),
        "{answer}"
    );

    // Space is back: the same request is handled whole (what was recorded is a duplicate).
    std::fs::remove_file(keys.join("filler")).unwrap();
    let (code, answer) = request(&addr, "POST", "/v1/commands", &second);
    assert_eq!(code, 200, "{answer}");
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&answer).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| o["outcome"] == "accepted" || o["outcome"] == "duplicate"),
        "{answer}"
    );
    drop(server);
    // Everyone the log seals has a key that opens their ref: a backup's check says so.
    let o = support::run(
        base.path(),
        &["--key-store", "keys/ledger.keys.db", "backup", "--to", "bk"],
    );
    let out = support::stdout(&o) + &support::stderr(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("1401 people with keys"), "{out}");
}
