//! The `campaign-ledger` binary: the command line (`cli`, not part of the library's API) over
//! the library.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Die quietly when the reader of our output goes away (`report … | head`), as Unix tools
    // do; but never in a process that holds network connections (see `dies_on_sigpipe`).
    if cli.dies_on_sigpipe() {
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cli::init_tracing(cli.default_log_filter());
    let result = cli::run(cli);
    cli::report_peak_rss();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
