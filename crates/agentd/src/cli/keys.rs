//! `agentd keys`: manage API keys directly in the configured store.

use super::ConfigArgs;
use agentd_core::{KeyId, KeyStore, TenantId};
use agentd_gateway::keys::issue;
use agentd_store::Store;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints its secret (shown only this once) on stdout.
    Create {
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Tenant the key belongs to.
        #[arg(long, default_value = TenantId::DEFAULT)]
        tenant: String,
        /// User inside the tenant (optional).
        #[arg(long)]
        user: Option<String>,
        /// Default tier (e.g. `fast`, `quality`): the router picks a model from it when a
        /// request through this key declares no tier of its own.
        #[arg(long, value_name = "TIER", value_parser = parse_tier)]
        tier: Option<String>,
        /// Import this secret instead of generating one (migrating clients from another
        /// gateway). Prefer `--secret-env VAR` so the secret stays out of shell history.
        #[arg(long, conflicts_with = "secret_env")]
        secret: Option<String>,
        /// Import the secret held by this environment variable.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        /// Also pin the tenant to this home region (data residency; see `agentd tenants`).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// With --region: `strict` (never served elsewhere) or `preferred`.
        #[arg(long, value_name = "MODE", default_value = "strict", value_parser = ["strict", "preferred"], requires = "region")]
        residency: String,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON document on stdout instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id (`key_…`); it stops working within `auth.key_cache_ttl_ms`.
    Revoke { id: String },
}

/// Checked at parse time, so a bad tier is a usage error (exit 2) before the store is opened.
fn parse_tier(value: &str) -> Result<String, String> {
    agentd_core::ids::validate_name("tier", value)?;
    Ok(value.to_owned())
}

pub(super) async fn open_store(config: &agentd_config::Config) -> anyhow::Result<Store> {
    Ok(match &config.store {
        agentd_config::StoreConfig::Sqlite { path } => Store::open_sqlite(path)
            .await
            .with_context(|| format!("cannot open the SQLite store at {}", path.display()))?,
        #[cfg(feature = "postgres")]
        agentd_config::StoreConfig::Postgres {
            url,
            max_connections,
        } => Store::open_postgres(url.expose(), *max_connections)
            .await
            .context("cannot open the PostgreSQL store")?,
        #[cfg(not(feature = "postgres"))]
        agentd_config::StoreConfig::Postgres { .. } => anyhow::bail!(
            "this agentd was built without PostgreSQL support (cargo feature `postgres`); use store.kind = \"sqlite\" or rebuild with it"
        ),
    })
}

pub(super) fn run(mut args: KeysArgs) -> anyhow::Result<ExitCode> {
    let config = match args.config.load(None) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if let Err(code) = super::tenants::directory_here(&config) {
        return Ok(code);
    }
    if let KeysCommand::Create {
        region: Some(region),
        ..
    } = &mut args.command
    {
        *region = region.trim().to_ascii_lowercase();
        if let Err(code) = super::tenants::check_region(&config, region) {
            return Ok(code);
        }
    }
    super::small_runtime()?.block_on(async move {
        let store = open_store(&config).await?;
        let code = match args.command {
            KeysCommand::Create {
                name,
                tenant,
                user,
                tier,
                secret,
                secret_env,
                region,
                residency,
            } => {
                let imported = match secret_env {
                    Some(var) => Some(
                        std::env::var(&var)
                            .with_context(|| format!("environment variable {var} is not set"))?,
                    ),
                    None => secret,
                };
                let (key, secret) = issue(
                    &store,
                    &name,
                    Some(&tenant),
                    user.as_deref(),
                    tier.as_deref(),
                    imported.as_deref(),
                )
                .await?;
                if let Some(region) = region {
                    super::tenants::pin(&store, &key.tenant, &region, &residency).await?;
                }
                println!("{secret}");
                eprintln!(
                    "Created {} ({}) for tenant {}{}; the secret above is shown only once",
                    key.id,
                    key.name,
                    key.tenant,
                    key.tier
                        .as_deref()
                        .map(|tier| format!(", default tier {tier}"))
                        .unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            KeysCommand::List { tenant, json } => {
                let keys = store.list_keys(tenant.map(TenantId::new).as_ref()).await?;
                let mut out = String::new();
                if json {
                    let data: Vec<_> = keys
                        .iter()
                        .map(agentd_gateway::routes::admin::key_json)
                        .collect();
                    let _ = writeln!(out, "{}", serde_json::to_string_pretty(&data)?);
                } else {
                    let _ = writeln!(
                        out,
                        "{:<22} {:<20} {:<12} {:<12} {:<10} {:<20} {:<25} STATUS",
                        "ID", "NAME", "TENANT", "USER", "TIER", "PREFIX", "CREATED"
                    );
                    for k in &keys {
                        let _ = writeln!(
                            out,
                            "{:<22} {:<20} {:<12} {:<12} {:<10} {:<20} {:<25} {}",
                            // `as_str`: the id types' `Display` ignores width.
                            k.id.as_str(),
                            k.name,
                            k.tenant.as_str(),
                            k.user.as_ref().map(|u| u.as_str()).unwrap_or("-"),
                            k.tier.as_deref().unwrap_or("-"),
                            k.prefix,
                            k.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                            if k.is_active() { "active" } else { "revoked" }
                        );
                    }
                }
                super::print_stdout(&out)?;
                ExitCode::SUCCESS
            }
            KeysCommand::Revoke { id } => {
                if store.revoke_key(&KeyId::new(&id)).await? {
                    eprintln!("Revoked {id}");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("error: no key with id {id:?} ('agentd keys list' shows the ids)");
                    ExitCode::from(1)
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeysArgs,
    }

    fn parse(args: &[&str]) -> Result<KeysCommand, clap::Error> {
        let argv = std::iter::once("keys").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.keys.command)
    }

    #[test]
    fn create_takes_an_optional_checked_tier() {
        match parse(&["create", "--name", "bot", "--tier", "quality"]).unwrap() {
            KeysCommand::Create { tier, .. } => assert_eq!(tier.as_deref(), Some("quality")),
            KeysCommand::List { .. } | KeysCommand::Revoke { .. } => panic!("not create"),
        }
        match parse(&["create", "--name", "bot"]).unwrap() {
            KeysCommand::Create { tier, .. } => assert_eq!(tier, None),
            KeysCommand::List { .. } | KeysCommand::Revoke { .. } => panic!("not create"),
        }
        for bad in ["two words", "", "a/b"] {
            let err = parse(&["create", "--name", "bot", "--tier", bad])
                .err()
                .unwrap_or_else(|| panic!("tier {bad:?} accepted"));
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(err.to_string().contains("tier"), "{err}");
        }
    }
}
