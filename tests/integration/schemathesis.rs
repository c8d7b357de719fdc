//! The API against its own document, by a tool others keep: schemathesis (PyPI) runs every
//! check it has against the served OpenAPI document with the token of each role, and with
//! none, and finds nothing. `scripts/test.sh` installs it; `SCHEMATHESIS` names the program
//! (default: `schemathesis` on PATH). The live (SSE) routes are left out: their answers never
//! end, which a request-response tool reads as a timeout; `tests/live.rs` drives them. The seed
//! is fixed so that a run is repeatable (`SCHEMATHESIS_SEED` to try another).

use crate::support;

use std::process::Command;

fn program() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into())
}

#[test]
fn schemathesis_finds_nothing_with_any_role() {
    let st = program();
    let version = Command::new(&st).arg("--version").output().unwrap_or_else(|e| {
        panic!("{st} cannot run ({e}): install it with `pip install 'schemathesis>=4.3,<5'` (scripts/test.sh does) or name it with SCHEMATHESIS")
    });
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    let dir = tempfile::tempdir().unwrap();
    support::ok_output(&support::run(dir.path(), &["demo"]));
    let mut tokens = vec![("none", None)];
    for (role, scope) in [
        ("agent", ["--directorate", "lyon"]),
        ("supervisor", ["--directorate", "lyon"]),
        ("partner", ["--partner-centre", "cv-lyon-gerland"]),
        ("auditor", ["", ""]),
        ("admin", ["", ""]),
    ] {
        let id = format!("st-{role}");
        let mut args = vec![
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            &id,
            "--role",
            role,
        ];
        args.extend(scope.iter().filter(|a| !a.is_empty()));
        let token = support::ok_output(&support::run(dir.path(), &args))
            .trim()
            .to_string();
        tokens.push((role, Some(token)));
    }
    let (server, addr) = support::spawn_serve(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "tokens.json",
            "--digest-every",
            "0",
        ],
        std::process::Stdio::null(),
    );
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let mut failed = Vec::new();
    for (role, token) in &tokens {
        let mut cmd = Command::new(&st);
        cmd.current_dir(dir.path())
            .env("NO_COLOR", "1")
            .args(["run", &format!("http://{addr}/v1/openapi.json")])
            .args(["--checks", "all", "--max-examples", "20", "--seed", &seed])
            .args(["--exclude-path-regex", "/live$"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let o = cmd.output().unwrap();
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        let cases = out
            .lines()
            .find(|l| l.contains(" generated"))
            .map(str::trim)
            .unwrap_or("no count")
            .to_string();
        eprintln!("{role}: {cases}");
        if !o.status.success() {
            failed.push(format!("== {role} ==\n{out}"));
        }
    }
    drop(server);
    assert!(
        failed.is_empty(),
        "schemathesis found problems:\n{}",
        failed.join("\n")
    );
}
