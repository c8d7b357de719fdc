//! `witness`: keygen, public-key, serve, evidence.

use super::args::WitnessCmd;
use super::env::shutdown_signal;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::audit::KeySet;
use campaign_ledger::envelope::note::{check_name, VerifierKey, TYPE_COSIGNATURE};
use campaign_ledger::witness::Witness;
use ed25519_dalek::SigningKey;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

fn load_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "cannot read the witness key {}: {e}; create one with `campaign-ledger witness keygen`",
            path.display()
        )
    })?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{} is not a witness key (64 hex digits)", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn cosigner(name: &str, key: &SigningKey) -> Result<VerifierKey> {
    check_name(name).map_err(|e| anyhow!("--name: {e}"))?;
    Ok(VerifierKey::new(
        name,
        TYPE_COSIGNATURE,
        key.verifying_key(),
    ))
}

/// Runs `witness`.
pub(super) fn run(action: &WitnessCmd) -> Result<ExitCode> {
    match action {
        WitnessCmd::Keygen { key, name } => {
            check_name(name).map_err(|e| anyhow!("--name: {e}"))?;
            if key.exists() {
                bail!("{} exists already; a witness keeps its key (cosignatures made with it must stay verifiable)", key.display());
            }
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| anyhow!("no random bytes: {e}"))?;
            campaign_ledger::support::files::write_private(key, &(hex::encode(seed) + "\n"))?;
            println!("{}", cosigner(name, &SigningKey::from_bytes(&seed))?);
            Ok(ExitCode::SUCCESS)
        }
        WitnessCmd::PublicKey { key, name } => {
            println!("{}", cosigner(name, &load_key(key)?)?);
            Ok(ExitCode::SUCCESS)
        }
        WitnessCmd::Serve {
            listen,
            key,
            name,
            logs,
            state,
        } => {
            let logs = KeySet::load(logs).map_err(|e| anyhow!(e))?;
            let witness =
                Arc::new(Witness::open(name, load_key(key)?, logs, state).map_err(|e| anyhow!(e))?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| anyhow!("cannot listen on {listen}: {e}"))?;
                println!(
                    "witness {} listening on http://{}",
                    witness.verifier(),
                    listener.local_addr()?
                );
                campaign_ledger::witness::server::run(listener, witness, shutdown_signal())
                    .await
                    .map_err(|e| anyhow!("{e}"))
            })?;
            Ok(ExitCode::SUCCESS)
        }
        WitnessCmd::Evidence { state } => {
            for e in campaign_ledger::witness::read_evidence(state).map_err(|e| anyhow!(e))? {
                println!("{}", serde_json::to_string(&e)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
