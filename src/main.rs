use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`report … | head`), as Unix tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    campaign_ledger::cli::init_tracing();
    let result = campaign_ledger::cli::run(campaign_ledger::cli::Cli::parse());
    campaign_ledger::cli::report_peak_rss();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
