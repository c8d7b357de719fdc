//! `demo` (and `demo --serve`): load the OFII 2021 scenario, print its report; serve it with one token per role.

use super::args::*;
use super::output::*;
use super::serve::{serve, DemoBanner, Endpoint};
use anyhow::{anyhow, Context as _, Result};
use campaign_ledger::domain::Reference;
use campaign_ledger::scenario;
use chrono::Duration;
use std::process::ExitCode;

/// Runs `demo`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Demo { serve, listen } => {
            let code = demo(cli)?;
            if !*serve {
                return Ok(code);
            }
            demo_serve(cli, listen)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

pub(super) fn demo(cli: &Cli) -> Result<ExitCode> {
    let reference = Reference::builtin();
    let s = scenario::ofii_2021(&reference).map_err(|e| anyhow!(e))?;
    let env = cli.open(true, true)?;
    println!("campaign-ledger demo — {}", s.title);
    println!("store: {}", env.store.describe());
    let text = s.to_jsonl();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.as_bytes().to_vec()));
    let mut examples: std::collections::BTreeMap<String, String> = Default::default();
    let summary = run_lines(&env, lines, Some(text.lines().count() as u64), |o| {
        if let Some(e) = &o.error {
            examples
                .entry(e.code.clone())
                .or_insert_with(|| e.message.clone());
        }
    })?;
    println!(
        "scenario: {} commands — {} accepted now, {} already in the store, {} rejected by the rules, {} invalid",
        s.commands.len(),
        summary.accepted,
        summary.duplicate,
        summary.rejected,
        summary.invalid
    );
    if summary.accepted == 0 && summary.duplicate > 0 {
        println!("(the scenario was loaded before: nothing was appended twice)");
    }
    let mut others = 0u64;
    env.store
        .scan(0, u64::MAX, &mut |e| {
            others += (e.correlation_id != Some(scenario::CORRELATION)) as u64;
            true
        })
        .map_err(|e| anyhow!("{e}"))?;
    if others > 0 {
        println!(
            "note: this store also holds {others} events that are not from the scenario; the figures below include them."
        );
    }
    for (code, n) in &summary.by_code {
        println!(
            "  rejected {n} × {code}: {}",
            examples.get(code).map(String::as_str).unwrap_or("")
        );
    }
    let r = env
        .engine()?
        .report(
            env.store.as_ref(),
            "doses_by_directorate",
            Some(s.as_of),
            None,
        )
        .map_err(|e| anyhow!("{e}"))?;
    println!();
    print_report(&r, ReportFormat::Table)?;
    let t = r.totals.int("total");
    print_known_that_evening(&env, &s, t)?;
    print_tickets_and_findings(&env, s.as_of)?;
    if let Some(nats) = &cli.nats {
        // With --nats, downstream systems get the whole log too.
        let mut options = campaign_ledger::bus::RelayOptions::new(nats.clone());
        options.follow = false;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let report = runtime
            .block_on(campaign_ledger::bus::relay(
                env.store.clone(),
                options,
                std::future::pending(),
            ))
            .map_err(|e| anyhow!("{e}"))?;
        println!(
            "Relayed to {nats} (JetStream stream {}): {} events published now, positions 1..{} in the stream.",
            campaign_ledger::bus::STREAM,
            report.published,
            report.position
        );
    }
    println!();
    println!(
        "National line, {}: {} doses administered by the OFII in its directorates, {} of them first injections.",
        s.as_of.format("%-d %B %Y"),
        thousands(t),
        thousands(r.totals.int("first"))
    );
    Ok(ExitCode::SUCCESS)
}

/// `demo --serve`: fresh tokens, one per role (agents and supervisors scoped to Lyon, the
/// partner to Lyon's partner centres), then the server.
pub(super) fn demo_serve(cli: &Cli, listen: &str) -> Result<ExitCode> {
    use campaign_ledger::access::Role;
    use campaign_ledger::access::{hash_token, new_token, TokenEntry, TokenFile};
    use campaign_ledger::support::files::write_private;
    let reference = Reference::builtin();
    let s = scenario::ofii_2021(&reference).map_err(|e| anyhow!(e))?;
    let dir = cli.data_dir();
    campaign_ledger::support::files::private_dir_all(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut centres: Vec<String> = s
        .commands
        .iter()
        .filter_map(|c| match &c.command {
            campaign_ledger::domain::Command::IssueTicket(t) if t.directorate == "lyon" => {
                Some(t.partner_centre.clone())
            }
            _ => None,
        })
        .collect();
    centres.sort();
    centres.dedup();
    let mut file = TokenFile::default();
    let mut clear = serde_json::Map::new();
    let mut printed = Vec::new();
    for role in [
        Role::Agent,
        Role::Partner,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ] {
        let token = new_token().map_err(|e| anyhow!(e))?;
        let (directorates, partner_centres, scope) = match role {
            Role::Agent | Role::Supervisor => (vec!["lyon".to_string()], vec![], "lyon".into()),
            Role::Partner => (vec![], centres.clone(), centres.join(", ")),
            _ => (vec![], vec![], "all".into()),
        };
        file.tokens.push(TokenEntry {
            id: format!("demo-{}", role.as_str()),
            role,
            directorates,
            partner_centres,
            sha256: hash_token(&token),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        });
        clear.insert(role.as_str().into(), token.clone().into());
        printed.push((role, scope, token));
    }
    let auth_file = dir.join("demo-auth.json");
    let tokens_file = dir.join("demo-tokens.json");
    write_private(&auth_file, &(serde_json::to_string_pretty(&file)? + "\n"))
        .map_err(|e| anyhow!(e))?;
    write_private(
        &tokens_file,
        &(serde_json::to_string_pretty(&clear)? + "\n"),
    )
    .map_err(|e| anyhow!(e))?;
    // The server follows the file: `auth revoke`/`rotate` on it take effect at once.
    let auth = campaign_ledger::access::LiveTokens::watch(&auth_file, Reference::builtin())
        .map_err(|e| anyhow!(e))?;
    // The demo signs its digests: a key of its own, made once.
    let key_path = cli.key_path(None);
    if !key_path.exists() {
        let key = campaign_ledger::audit::LedgerKey::generate(&key_path).map_err(|e| anyhow!(e))?;
        println!(
            "signing key created at {} (public key {})",
            key_path.display(),
            key.public_hex()
        );
    }
    println!();
    serve(
        cli,
        Endpoint {
            listen: listen.to_string(),
            tls: None,
            witnesses: Vec::new(),
        },
        Some(auth),
        Some(DemoBanner {
            tokens: printed,
            tokens_file,
            as_of: s.as_of,
        }),
        std::time::Duration::from_secs(3600),
        false, // the demo's ledger was just written above
        campaign_ledger::http::DEFAULT_MAX_LIVE,
    )
}

/// The tickets' funnel and the open data-quality findings, as of the published date.
fn print_tickets_and_findings(env: &super::env::Env, as_of: chrono::NaiveDate) -> Result<()> {
    let tickets = env
        .engine()?
        .report(
            env.store.as_ref(),
            "tickets_by_directorate",
            Some(as_of),
            None,
        )
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "Tickets (Lyon, Marseille) as of {}: {} issued, {} redeemed at partner centres, {} expired, {} outstanding.",
        as_of,
        thousands(tickets.totals.int("issued")),
        thousands(tickets.totals.int("redeemed")),
        thousands(tickets.totals.int("expired")),
        thousands(tickets.totals.int("outstanding"))
    );
    let quality = env
        .engine()?
        .report(env.store.as_ref(), "data_quality", Some(as_of), None)
        .map_err(|e| anyhow!("{e}"))?;
    let by_directorate: Vec<String> = quality
        .rows
        .iter()
        .map(|r| {
            let dt = match r.get("directorate") {
                Some(campaign_ledger::projection::Val::Text(t)) => t.clone(),
                _ => "?".into(),
            };
            format!("{dt}: {}", r.int("open"))
        })
        .collect();
    let open = quality.totals.int("open");
    println!(
        "Data quality as of {as_of}: {open} open finding{}{}, where a correction broke a person's series; `campaign-ledger findings` lists them.",
        if open == 1 { "" } else { "s" },
        if by_directorate.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_directorate.join(", "))
        }
    );
    Ok(())
}

/// What the ledger knew on the evening of the published date (when the scenario was recorded
/// on its own clock), against the `total` it counts today.
fn print_known_that_evening(
    env: &super::env::Env,
    s: &campaign_ledger::scenario::Scenario,
    t: i64,
) -> Result<()> {
    let known_at =
        campaign_ledger::domain::Policy::default().end_of_day(s.as_of) - Duration::hours(6);
    let k = env
        .engine()?
        .report(
            env.store.as_ref(),
            "doses_by_directorate",
            Some(s.as_of),
            Some(known_at),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let kt = k.totals.int("total");
    println!();
    // The evening view only means something if the scenario was recorded on its own clock
    // (by demo or `submit --clock business`), not loaded today with the system clock.
    let on_business_clock = env
        .store
        .command(s.commands[0].command_id)
        .map_err(|e| anyhow!("{e}"))?
        .is_some_and(|rec| rec.recorded_at.starts_with("2021"));
    if on_business_clock {
        println!(
            "What the ledger knew at {}: {} doses ({} entered later from paper records, net of corrections).",
            known_at.format("%Y-%m-%d %H:%M %:z"),
            thousands(kt),
            thousands(t - kt)
        );
    } else {
        println!(
            "This store received the scenario on the system clock (submit without --clock business), so --known-at 2021 dates see none of it."
        );
    }
    Ok(())
}
