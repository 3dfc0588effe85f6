//! `agentd deploy`: `render` writes what a platform needs to run the config (Dockerfile,
//! manifests, scripts); `regions` lists the region codes.
//!
//! Rendering reads the config file, not the shell: `${VAR}`s get stand-ins of the right shape
//! (see `agentd_deploy::render_env`), so no secret is needed to render and none can leak into
//! the output. Every problem with the input (an unknown target or region, a config that does
//! not load, a region list without the primary) exits 78 with nothing written.

use std::path::PathBuf;
use std::process::ExitCode;

use agentd_config::{Config, Overrides, REGIONS};
use agentd_deploy::{Options, Target};
use anyhow::Context;
use clap::{Args, Subcommand};

use super::{ConfigArgs, EXIT_CONFIG};

#[derive(Args)]
pub(super) struct DeployArgs {
    #[command(subcommand)]
    command: DeployCommand,
}

#[derive(Subcommand)]
enum DeployCommand {
    /// Write the Dockerfile and a platform's manifests for the config under --out.
    Render(RenderArgs),
    /// List the region codes --regions and [regions] list accept.
    Regions {
        /// One JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RenderArgs {
    /// The platform: fly, k8s, compose, cloudrun or systemd.
    #[arg(long, value_name = "TARGET")]
    target: String,
    /// Regions to deploy, comma-separated codes (`agentd deploy regions`); default: the config's
    /// [regions] list. The config's primary region must be one of them.
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    regions: Vec<String>,
    /// Output directory: the Dockerfile at its root, the target's files under <DIR>/<target>/.
    /// Existing files of the same names are replaced, others left alone.
    #[arg(long, value_name = "DIR", default_value = "deploy")]
    out: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

pub(super) fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeployCommand::Render(args) => render(args),
        DeployCommand::Regions { json } => {
            regions(json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn targets() -> String {
    Target::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(args: RenderArgs) -> anyhow::Result<ExitCode> {
    let Some(target) = Target::parse(args.target.trim()) else {
        eprintln!(
            "unknown target \"{}\"; use one of: {}",
            args.target,
            targets()
        );
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let text = match &args.config.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("cannot read the config file {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => None,
    };
    let stand_ins = agentd_deploy::render_env(text.as_deref(), target);
    let env = |name: &str| stand_ins.get(name).cloned();
    let overrides = Overrides {
        listen: None,
        data_dir: args.config.data_dir.clone(),
    };
    let loaded = match (&args.config.config, &text) {
        (Some(path), Some(text)) => Config::from_str(text, path, &env, &overrides),
        _ => Config::load(None, &env, &overrides),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("invalid configuration:\n{errors}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let options = Options {
        regions: args.regions.clone(),
        config_text: text,
    };
    let files = match agentd_deploy::render(&config, target, &options) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("cannot render {}: {e}", target.as_str());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    agentd_deploy::write_atomically(&args.out, &files)
        .with_context(|| format!("cannot write to {}", args.out.display()))?;
    for file in &files {
        println!("{}", args.out.join(&file.path).display());
    }
    eprintln!("{}", next_steps(target, &args.out, &config));
    Ok(ExitCode::SUCCESS)
}

/// What to run next, on stderr.
fn next_steps(target: Target, out: &std::path::Path, config: &Config) -> String {
    let out = out.display();
    let image = config
        .deploy
        .image
        .clone()
        .unwrap_or_else(|| format!("{}:latest", config.deploy.app));
    let build = format!(
        "The image, from the repository root (the build context; Docker with BuildKit, no daemon needed to render):\n  docker build -f {out}/Dockerfile -t {image} ."
    );
    let then = match target {
        Target::Fly => format!(
            "Fly.io, from the repository root: bash {out}/fly/setup.sh once, then: fly deploy --config {out}/fly/fly.toml"
        ),
        Target::K8s => format!("Kubernetes: see {out}/k8s/README.md"),
        Target::Compose => format!("Compose: see {out}/compose/README.md"),
        Target::CloudRun => format!(
            "Cloud Run: PROJECT_ID=<project> bash {out}/cloudrun/deploy.sh (builds and pushes the image itself)"
        ),
        Target::Systemd => format!(
            "systemd: see {out}/systemd/README.md (no image: the unit runs the binary)"
        ),
    };
    if target == Target::Systemd {
        then
    } else {
        format!("{build}\n{then}")
    }
}

fn regions(json: bool) {
    if json {
        let list: Vec<serde_json::Value> = REGIONS
            .iter()
            .map(|r| {
                serde_json::json!({
                    "code": r.code,
                    "city": r.city,
                    "country": r.country,
                    "gcp": r.gcp,
                    "aws": r.aws,
                    "timezone": r.timezone,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    println!(
        "{:<5} {:<14} {:<8} {:<24} {:<15} TIMEZONE",
        "CODE", "CITY", "COUNTRY", "GCP", "AWS"
    );
    for r in REGIONS {
        println!(
            "{:<5} {:<14} {:<8} {:<24} {:<15} {}",
            r.code, r.city, r.country, r.gcp, r.aws, r.timezone
        );
    }
}
