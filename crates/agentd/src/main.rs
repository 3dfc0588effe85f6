//! The `agentd` binary: parse the command line, then hand over to one file per command.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage, 78 invalid configuration.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
