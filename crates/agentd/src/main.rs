//! The `agentd` binary: parse the command line, then hand over to one file per command.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad usage, 78 invalid configuration.

mod cli;

// glibc malloc showed up at ~15 % of the gateway's CPU under load (many small, short-lived
// allocations per request); with mimalloc, bench/profile.sh json measured 55 instead of 73 µs
// of CPU per request. `--no-default-features` builds with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
