//! `submit`: run a file of commands, one outcome per line.

use super::args::*;
use super::output::*;
use anyhow::{anyhow, bail, Context as _, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Runs `submit`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Submit {
            file,
            format,
            clock,
        } => {
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(file).with_context(|| {
                    format!(
                        "cannot read the command file {}; check the path",
                        file.display()
                    )
                })?;
                if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                    bail!(
                        "{} is a directory; give a file of JSON lines (or - for standard input)",
                        file.display()
                    );
                }
                Box::new(std::io::BufReader::new(f))
            };
            if *clock == ClockChoice::Business {
                cli.refuse_business_clock_after_checkpoint()?;
            }
            let env = cli.open(*clock == ClockChoice::Business, true)?;
            let mut read_error = None;
            // Set when the outcomes cannot be written: no further line is read.
            let output_failed = std::rc::Rc::new(std::cell::Cell::new(false));
            let stop_reading = output_failed.clone();
            let lines = reader.split(b'\n').enumerate().map_while(|(i, l)| match l {
                _ if stop_reading.get() => None,
                Ok(mut bytes) => {
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                    Some((i + 1, bytes))
                }
                Err(e) => {
                    read_error = Some(e);
                    None
                }
            });
            let format = *format;
            let mut out = std::io::stdout().lock();
            // On a terminal, count the lines first so that the progress bar has a length.
            let total = (std::io::stderr().is_terminal() && file.as_os_str() != "-")
                .then(|| count_lines(file))
                .flatten();
            // A standard output that cannot be written (a closed pipe, a full disk) stops the
            // run with that error: the outcomes would be lost. What ran before stays recorded.
            let mut write_error: Option<std::io::Error> = None;
            let failed = output_failed.clone();
            let summary = run_lines(&env, lines, total, |o| {
                if write_error.is_some() {
                    return;
                }
                let written = match format {
                    SubmitFormat::Json => {
                        writeln!(out, "{}", serde_json::to_string(o).unwrap_or_default())
                    }
                    SubmitFormat::Table => writeln!(
                        out,
                        "line {:<6} {:<9} {:<36}{}",
                        o.line,
                        o.outcome,
                        o.command_id
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        o.error
                            .as_ref()
                            .map(|e| format!("  {}: {}", e.code, e.message))
                            .unwrap_or_default()
                    ),
                }
                .and_then(|()| out.flush());
                if let Err(e) = written {
                    write_error = Some(e);
                    failed.set(true);
                }
            })?;
            if let Some(e) = write_error {
                bail!(
                    "cannot write the outcomes to standard output ({e}); no further line was run. The lines before are recorded: run the file again to see every outcome (those are reported as duplicates)"
                );
            }
            if let Some(e) = read_error {
                bail!(
                    "reading {} failed after some lines: {e}; the lines before were run",
                    file.display()
                );
            }
            match env.engine() {
                Ok(engine) => {
                    engine
                        .catch_up(env.store.as_ref())
                        .map_err(|e| anyhow!("{e}"))?;
                }
                Err(e) => eprintln!(
                    "warning: the commands are stored, but the projections were not updated: {e}"
                ),
            }
            print_summary(&summary);
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}
