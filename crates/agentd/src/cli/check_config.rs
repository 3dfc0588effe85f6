//! `agentd check-config`: validate a config file without starting anything.

use super::ConfigArgs;
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(super) fn run(args: CheckArgs) -> ExitCode {
    match args.config.load(None) {
        Ok(config) => {
            let origin = config
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into());
            eprintln!(
                "{origin}: ok ({} providers, {} models)",
                config.providers.len(),
                config.models.len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
