//! `agentd plan`: the monthly cost and per-city latency of running agentd on each platform of
//! the global platforms guide, which one to pick and why (docs/plan.md).

use super::EXIT_CONFIG;
use agentd_plan::{
    plan, plan_phases, render_phases, render_text, Needs, PlanError, Prices, Workload,
    BUILTIN_PRICES,
};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for a usage error, as clap uses for its own.
const EXIT_USAGE: u8 = 2;

#[derive(Args)]
pub(crate) struct PlanArgs {
    /// Requests a day (agent runs and gateway calls), split evenly over a platform's deployments.
    #[arg(long, value_name = "N", required_unless_present = "print_prices")]
    requests_per_day: Option<u64>,
    /// Comma-separated region codes (Fly.io's: cdg, nrt, sjc, ewr, lhr, fra, ...).
    #[arg(
        long,
        value_name = "CODES",
        value_delimiter = ',',
        required_unless_present_any = ["phases", "print_prices"]
    )]
    regions: Vec<String>,
    /// Database size in GB.
    #[arg(long, value_name = "GB", default_value_t = 2.0, value_parser = non_negative, allow_negative_numbers = true)]
    db_gb: f64,
    /// GPU hours a month, priced at the prices file's GPU rate (Lambda Labs, $2/h built in).
    #[arg(long, value_name = "HOURS", default_value_t = 0.0, value_parser = non_negative, allow_negative_numbers = true)]
    gpu_hours: f64,
    /// Prices and latency table (TOML). Default: the built-in one (`--print-prices` shows it).
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Plan for the LLM gateway alone: no long-running agent runs, no WebSockets.
    #[arg(long)]
    gateway_only: bool,
    /// Each area's data must stay in that area: drop platforms that cannot keep it there.
    #[arg(long)]
    residency: bool,
    /// Plan the guide's phases (Paris → + Tokyo → global) instead of `--regions`, beside the
    /// guide's own figures.
    #[arg(long, conflicts_with = "regions")]
    phases: bool,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Print the built-in prices file (to copy and edit) and exit.
    #[arg(long, exclusive = true)]
    print_prices: bool,
}

/// Checked at parse time, so a bad number is a usage error (exit 2).
fn non_negative(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a number >= 0, got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Prints the error and picks the exit code: a bad prices file or an unknown region code is a
/// configuration error (78, as `deploy render` and `check-config` answer an unknown region), a
/// bad number is a usage error (2).
fn fail(error: &PlanError) -> ExitCode {
    eprintln!("error: {error}");
    match error {
        PlanError::Read { .. } | PlanError::Prices(_) | PlanError::UnknownRegion { .. } => {
            ExitCode::from(EXIT_CONFIG)
        }
        PlanError::NoRegions | PlanError::InvalidWorkload { .. } => ExitCode::from(EXIT_USAGE),
    }
}

pub(crate) fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    if args.print_prices {
        print!("{BUILTIN_PRICES}");
        return Ok(ExitCode::SUCCESS);
    }
    let prices = match &args.prices {
        Some(path) => match Prices::from_file(path) {
            Ok(p) => p,
            Err(e) => return Ok(fail(&e)),
        },
        None => Prices::builtin(),
    };
    let regions: Vec<&str> = args.regions.iter().map(String::as_str).collect();
    let mut workload = Workload::new(
        args.requests_per_day.unwrap_or_default(),
        &regions,
        args.db_gb,
    );
    workload.gpu_hours_per_month = args.gpu_hours;
    workload.needs = Needs {
        long_running: !args.gateway_only,
        websockets: !args.gateway_only,
        residency: args.residency,
    };

    let out = if args.phases {
        let plans = match plan_phases(&prices, &workload) {
            Ok(p) => p,
            Err(e) => return Ok(fail(&e)),
        };
        if args.json {
            serde_json::to_string_pretty(&plans).context("cannot encode the plans as JSON")? + "\n"
        } else {
            render_phases(&plans)
        }
    } else {
        let plan = match plan(&prices, &workload) {
            Ok(p) => p,
            Err(e) => return Ok(fail(&e)),
        };
        if args.json {
            serde_json::to_string_pretty(&plan).context("cannot encode the plan as JSON")? + "\n"
        } else {
            render_text(&plan)
        }
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
