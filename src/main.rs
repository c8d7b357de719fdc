use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = campaign_ledger::cli::Cli::parse();
    // Die quietly when the reader of our output goes away (`report … | head`), as Unix tools
    // do; but never in a process that holds network connections (see `dies_on_sigpipe`).
    if cli.dies_on_sigpipe() {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    campaign_ledger::cli::init_tracing();
    let result = campaign_ledger::cli::run(cli);
    campaign_ledger::cli::report_peak_rss();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
