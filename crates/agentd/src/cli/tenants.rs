//! `agentd tenants`: tenant home regions (data residency), directly in the configured store.
//! Like keys, they live in the primary region's database.

use super::{ConfigArgs, EXIT_CONFIG};
use agentd_core::{Residency, TenantId, TenantPin, TenantStore};
use agentd_store::Store;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Pin a tenant to a home region: its requests are served, and its data stored, only there.
    Set {
        tenant: String,
        /// A region of `[regions] list`, such as `cdg`.
        #[arg(long)]
        region: String,
        /// `strict` (data residency: refused when the region is down) or `preferred` (latency:
        /// served elsewhere when it is down).
        #[arg(long, default_value = "strict", value_parser = ["strict", "preferred"])]
        residency: String,
    },
    /// Show a tenant's home region.
    Get { tenant: String },
    /// List pinned tenants.
    List {
        /// One JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant's home region: it is served in every region again.
    Unset { tenant: String },
}

/// Keys and home regions are kept in the primary region's database: refuse to write them from
/// an instance of another region (whose store is its own).
pub(super) fn directory_here(config: &agentd_config::Config) -> Result<(), ExitCode> {
    let regions = &config.regions;
    if regions.list.len() < 2 {
        return Ok(());
    }
    let (Some(me), Some(primary)) = (&config.server.region, &regions.primary) else {
        return Ok(());
    };
    if me != primary {
        eprintln!(
            "error: this config is region {me}'s, but API keys and tenant home regions are kept in the primary region's database ({primary}).\n\
             fix: run this command with the primary region's config (or AGENTD_REGION={primary} and its store URL), or use the admin API (/admin/keys, /admin/tenants) of any region: it forwards to the primary"
        );
        return Err(ExitCode::from(EXIT_CONFIG));
    }
    Ok(())
}

/// The region must be one the deployment serves: exit 78 naming it otherwise.
pub(super) fn check_region(config: &agentd_config::Config, region: &str) -> Result<(), ExitCode> {
    agentd_gateway::routes::tenants::check_home_region(config, region).map_err(|message| {
        eprintln!("error: {message}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub(super) async fn pin(
    store: &Store,
    tenant: &TenantId,
    region: &str,
    residency: &str,
) -> anyhow::Result<()> {
    let residency = Residency::parse(residency)
        .ok_or_else(|| anyhow::anyhow!("residency must be strict or preferred"))?;
    store
        .set_tenant_pin(&TenantPin {
            tenant: tenant.clone(),
            home_region: region.to_owned(),
            residency,
            updated_at: chrono::Utc::now(),
        })
        .await?;
    eprintln!(
        "Pinned tenant {tenant} to region {region} ({}); instances pick it up within auth.key_cache_ttl_ms",
        residency.as_str()
    );
    Ok(())
}

fn valid_tenant(tenant: &str) -> Result<TenantId, ExitCode> {
    agentd_core::ids::validate_name("tenant", tenant)
        .map(|()| TenantId::new(tenant))
        .map_err(|m| {
            eprintln!("error: {m}");
            ExitCode::from(2)
        })
}

pub(super) fn run(args: TenantsArgs) -> anyhow::Result<ExitCode> {
    let config = match args.config.load(None) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Err(code) = directory_here(&config) {
        return Ok(code);
    }
    let tenant_arg = match &args.command {
        TenantsCommand::Set { tenant, .. }
        | TenantsCommand::Get { tenant }
        | TenantsCommand::Unset { tenant } => Some(tenant.clone()),
        TenantsCommand::List { .. } => None,
    };
    let tenant = match tenant_arg.as_deref().map(valid_tenant).transpose() {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    if let TenantsCommand::Set { region, .. } = &args.command {
        if let Err(code) = check_region(&config, &region.to_ascii_lowercase()) {
            return Ok(code);
        }
    }
    super::small_runtime()?.block_on(async move {
        let store = super::keys::open_store(&config).await?;
        let code = match (args.command, tenant) {
            (
                TenantsCommand::Set {
                    region, residency, ..
                },
                Some(tenant),
            ) => {
                pin(&store, &tenant, &region.to_ascii_lowercase(), &residency).await?;
                ExitCode::SUCCESS
            }
            (TenantsCommand::Get { .. }, Some(tenant)) => match store.tenant_pin(&tenant).await? {
                Some(p) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&agentd_gateway::routes::tenants::pin_json(
                            &p
                        ))?
                    );
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("tenant {tenant} has no home region (served in every region)");
                    ExitCode::from(1)
                }
            },
            (TenantsCommand::Unset { .. }, Some(tenant)) => {
                if store.delete_tenant_pin(&tenant).await? {
                    eprintln!("Tenant {tenant} is served in every region again");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("error: tenant {tenant} has no home region");
                    ExitCode::from(1)
                }
            }
            (TenantsCommand::List { json }, _) => {
                let pins = store.list_tenant_pins().await?;
                let mut out = String::new();
                if json {
                    let data: Vec<_> = pins
                        .iter()
                        .map(agentd_gateway::routes::tenants::pin_json)
                        .collect();
                    let _ = writeln!(out, "{}", serde_json::to_string_pretty(&data)?);
                } else {
                    let _ = writeln!(
                        out,
                        "{:<24} {:<8} {:<10} UPDATED",
                        "TENANT", "REGION", "RESIDENCY"
                    );
                    for p in &pins {
                        let _ = writeln!(
                            out,
                            "{:<24} {:<8} {:<10} {}",
                            p.tenant.as_str(),
                            p.home_region,
                            p.residency.as_str(),
                            p.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
                        );
                    }
                }
                super::print_stdout(&out)?;
                ExitCode::SUCCESS
            }
            _ => unreachable!("every command but list names a tenant"),
        };
        store.close().await;
        Ok(code)
    })
}
