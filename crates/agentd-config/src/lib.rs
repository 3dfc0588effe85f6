//! agentd's configuration: reads `agentd.toml` (or the built-in defaults), layers environment
//! variables and command-line overrides on top, and hands the rest of agentd a validated
//! [`Config`] — `Duration`s instead of `_ms` integers, [`Secret`]s with `${VAR}` already expanded,
//! model routes checked against the providers that exist, agents checked against the models,
//! tools and pools they name (see [`runtime`]).
//!
//! The one decision to know: **loading never stops at the first problem.** The file is parsed
//! once into a `toml_edit` document; each section, provider and model is deserialized on its own
//! into the raw serde mirror ([`raw`], `deny_unknown_fields`), then validated, and every problem
//! becomes a [`ConfigError`] with the file, line, column, dotted key path and a fix. Serde errors
//! are located by their byte span; validation errors by walking the document along the key path
//! (falling back to the enclosing table when the key is missing). Callers get all of them at once
//! as [`ConfigErrors`].
//!
//! Layering, lowest to highest: built-in defaults → the file → `AGENTD_*` environment variables
//! (`AGENTD_LISTEN`, `AGENTD_DATA_DIR`, `AGENTD_LOG_FORMAT`, `AGENTD_DATABASE_URL`; plus
//! `AGENTD_ADMIN_KEY` and `FLY_REGION`, which only fill in what the file leaves unset) →
//! [`Overrides`] from the command line. Empty variables count as unset. Environment lookups go
//! through an injected function so tests never touch the process environment.
//!
//! The reference in `docs/configuration.md` is checked against the raw structs: the test asks
//! serde for each struct's field list (by provoking its `deny_unknown_fields` error, so renames
//! are honoured) and requires the doc's table for that section to list exactly those keys. The
//! crate denies missing docs, so every raw field also carries a doc comment.

#![deny(missing_docs)]

mod config;
mod defaults;
pub mod deploy;
mod error;
mod expand;
mod locate;
pub mod raw;
pub mod routing_and_cost;
pub mod runtime;
mod secret;
mod validate;

pub use config::{
    AuthConfig, Config, DeploymentConfig, LogFormat, MockSettings, ModelConfig, Overrides,
    ProviderConfig, ProviderKind, ServerConfig, StoreConfig,
};
pub use defaults::{ANTHROPIC_MODELS, MOCK_MODELS, OPENAI_MODELS};
pub use deploy::{
    region_by_code, BusinessHours, DeployConfig, PoolSchedule, Region, RegionRouting,
    RegionsConfig, REGIONS,
};
pub use error::{ConfigError, ConfigErrors, ENV_FILE};
pub use routing_and_cost::{
    default_price, Balance, BreakerConfig, BudgetLimit, BudgetScope, BudgetWindow, BudgetsConfig,
    CacheBackend, CacheConfig, CountersConfig, FallbackOn, LedgerConfig, RateLimitsConfig,
    RouterConfig, RoutingConfig, RuleConfig,
};
pub use runtime::{
    url_placeholders, AgentConfig, HttpMethod, PoolConfig, QueueBackend, QueueConfig,
    RuntimeConfig, TaskRoute, ToolConfig, ToolKind,
};
pub use secret::Secret;

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
