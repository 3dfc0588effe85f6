//! Command-line interface: one file per noun.

mod check_config;
mod deploy;
mod healthcheck;
mod keys;
mod mock_llm;
mod plan;
mod serve;
mod tenants;

use agentd_config::{Config, Overrides};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for an invalid configuration (EX_CONFIG from sysexits.h).
pub(crate) const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "agentd",
    version,
    about = "Run AI agents in production: LLM gateway, agent runtime and workers in one binary"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (all roles, embedded storage unless the config says otherwise).
    Serve(serve::ServeArgs),
    /// Validate a configuration file; exits 78 and lists every problem if it is invalid.
    CheckConfig(check_config::CheckArgs),
    /// Create, list and revoke API keys.
    Keys(keys::KeysArgs),
    /// Pin tenants to a home region (data residency), list and unpin them.
    Tenants(tenants::TenantsArgs),
    /// Estimate monthly cost and per-city latency on each platform, and recommend one.
    Plan(plan::PlanArgs),
    /// Run the mock LLM provider (OpenAI and Anthropic wire formats, fault injection).
    MockLlm(mock_llm::MockArgs),
    /// Write the Dockerfile and a platform's manifests for the config; list region codes.
    Deploy(deploy::DeployArgs),
    /// GET /healthz of the local agentd; exit 0 if it answers 2xx (container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Options every command that reads the config shares.
#[derive(Args, Clone)]
pub(crate) struct ConfigArgs {
    /// Configuration file (TOML). Without it, built-in defaults (see README).
    #[arg(short = 'c', long = "config", env = "AGENTD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Directory for embedded state (SQLite). Overrides server.data_dir.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the config, or prints every error and returns the exit code to use.
    pub(crate) fn load(&self, listen: Option<SocketAddr>) -> Result<Config, ExitCode> {
        let env = |k: &str| std::env::var(k).ok();
        let overrides = Overrides {
            listen,
            data_dir: self.data_dir.clone(),
        };
        Config::load(self.config.as_deref(), &env, &overrides).map_err(|errors| {
            eprintln!("invalid configuration:\n{errors}");
            ExitCode::from(EXIT_CONFIG)
        })
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::CheckConfig(args) => Ok(check_config::run(args)),
        Command::Keys(args) => keys::run(args),
        Command::Tenants(args) => tenants::run(args),
        Command::MockLlm(args) => mock_llm::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Healthcheck(args) => Ok(healthcheck::run(args)),
    }
}

/// Writes `text` to stdout; a reader that went away (`agentd keys list | head`) is not an
/// error (`println!` would panic on the broken pipe).
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// A tokio runtime for the short-lived commands.
pub(crate) fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
