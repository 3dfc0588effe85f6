//! The validated resilience and cost-control settings: routing (retries, breakers, balancing,
//! fallbacks, tiering routers), prices, budgets, rate limits, the counter and cache backends,
//! and the ledger. Raw → validated for these sections lives here too, next to the types, so
//! `validate.rs` keeps the server, store, auth, provider and model basics.

use std::collections::HashSet;
use std::time::Duration;

use agentd_core::{Micros, Price};

use crate::defaults;
use crate::error::{closest, KeyPath};
use crate::raw::{
    RawAmount, RawBudgets, RawCache, RawCounters, RawLedger, RawPrice, RawRateLimits, RawRouter,
    RawRouting,
};
use crate::secret::Secret;
use crate::validate::{non_negative_ms, positive_ms, Env, Sink};

/// How a model picks among its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Random, proportional to the weights.
    Weighted,
    /// Power of two choices on recent latency × requests in flight.
    LeastLatency,
}

/// Failure classes that move a request on to the next deployment or fallback model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FallbackOn {
    /// HTTP 429 from the provider.
    pub rate_limit: bool,
    /// HTTP 5xx, malformed answers, streams cut before the first byte reached the client.
    pub server_error: bool,
    /// Connect, first-token and whole-response timeouts.
    pub timeout: bool,
    /// Refused or reset connections.
    pub connect: bool,
    /// The provider said the prompt is longer than the model's context window.
    pub context_window: bool,
}

impl FallbackOn {
    /// Every class.
    pub const ALL: FallbackOn = FallbackOn {
        rate_limit: true,
        server_error: true,
        timeout: true,
        connect: true,
        context_window: true,
    };
    const NAMES: &'static [&'static str] = &[
        "rate_limit",
        "server_error",
        "timeout",
        "connect",
        "context_window",
    ];
}

/// `[routing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// First retry delay.
    pub retry_backoff: Duration,
    /// Largest retry delay; a longer `Retry-After` moves on instead of waiting.
    pub retry_backoff_max: Duration,
    /// Retries allowed as a fraction of requests, per deployment.
    pub retry_budget_ratio: f64,
    /// Retries per second always allowed per deployment.
    pub retry_min_per_sec: u32,
    /// `[routing.breaker]`.
    pub breaker: BreakerConfig,
}

/// `[routing.breaker]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Whether breakers trip at all.
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Error rate (percent) over `window` that opens it.
    pub error_rate_percent: u32,
    /// Requests in the window before the rate counts.
    pub min_requests: u32,
    /// Sliding window of the error rate.
    pub window: Duration,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Slower first tokens count as failures.
    pub slow_ttft: Option<Duration>,
    /// Concurrent probes while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    /// The documented defaults: on, 5 in a row, 50 % over 30 s after 20 requests, open 30 s,
    /// no slow-TTFT rule, 1 probe.
    fn default() -> Self {
        defaults::breaker()
    }
}

/// `[routers.<name>]`: model tiering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// The public name clients request.
    pub name: String,
    /// The model used when no rule matches.
    pub default: String,
    /// In order; the first match wins.
    pub rules: Vec<RuleConfig>,
}

/// One tiering rule; `None` conditions always hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// The model to use.
    pub use_model: String,
    /// Required caller tier.
    pub tier: Option<String>,
    /// Required presence (or absence) of tools.
    pub tools: Option<bool>,
    /// Lowest estimated prompt tokens.
    pub min_prompt_tokens: Option<u64>,
    /// Highest estimated prompt tokens.
    pub max_prompt_tokens: Option<u64>,
}

/// What a budget is per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// All traffic of this gateway (or of every replica sharing the counters).
    Global,
    /// Per tenant.
    Tenant,
    /// Per user (within a tenant); requests from keys without a user are not counted.
    User,
    /// Per API key.
    Key,
    /// Per session (`x-agentd-session` header); requests without one are not counted.
    Session,
}

impl BudgetScope {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Global => "global",
            BudgetScope::Tenant => "tenant",
            BudgetScope::User => "user",
            BudgetScope::Key => "key",
            BudgetScope::Session => "session",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "global" => Some(BudgetScope::Global),
            "tenant" => Some(BudgetScope::Tenant),
            "user" => Some(BudgetScope::User),
            "key" => Some(BudgetScope::Key),
            "session" => Some(BudgetScope::Session),
            _ => None,
        }
    }
}

/// A budget's time window (UTC calendar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetWindow {
    /// Resets at 00:00 UTC.
    Day,
    /// Resets on the 1st at 00:00 UTC.
    Month,
    /// Never resets.
    Total,
}

impl BudgetWindow {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetWindow::Day => "day",
            BudgetWindow::Month => "month",
            BudgetWindow::Total => "total",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(BudgetWindow::Day),
            "month" => Some(BudgetWindow::Month),
            "total" => Some(BudgetWindow::Total),
            _ => None,
        }
    }
}

/// One `[[budgets.limits]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimit {
    /// Unique name.
    pub name: String,
    /// What it is per.
    pub scope: BudgetScope,
    /// Its window.
    pub window: BudgetWindow,
    /// The limit.
    pub limit: Micros,
    /// Only this tenant / `tenant/user` / key id / session; `None`: each separately.
    pub match_id: Option<String>,
}

/// `[budgets]`.
#[derive(Debug, Clone, Default)]
pub struct BudgetsConfig {
    /// Largest worst-case cost of one request.
    pub max_request: Option<Micros>,
    /// Alert webhook URL (a secret: it often carries a token).
    pub alert_webhook: Option<Secret>,
    /// The budgets, in file order.
    pub limits: Vec<BudgetLimit>,
}

/// `[rate_limits]`; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitsConfig {
    /// Requests per minute per key.
    pub key_rpm: Option<u64>,
    /// Tokens per minute per key.
    pub key_tpm: Option<u64>,
    /// Requests per minute per tenant.
    pub tenant_rpm: Option<u64>,
    /// Tokens per minute per tenant.
    pub tenant_tpm: Option<u64>,
}

impl RateLimitsConfig {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.key_rpm.is_some()
            || self.key_tpm.is_some()
            || self.tenant_rpm.is_some()
            || self.tenant_tpm.is_some()
    }
}

/// Where counters (budgets, rate limits) live.
#[derive(Debug, Clone)]
pub enum CountersConfig {
    /// In this process.
    Memory,
    /// In Redis, shared by every replica.
    Redis {
        /// `redis://…`.
        url: Secret,
        /// Key prefix.
        prefix: String,
    },
}

/// Where cached answers live.
#[derive(Debug, Clone)]
pub enum CacheBackend {
    /// In this process, bounded by `max_bytes`.
    Memory {
        /// Total size bound.
        max_bytes: u64,
    },
    /// In Redis.
    Redis {
        /// `redis://…`.
        url: Secret,
        /// Key prefix.
        prefix: String,
    },
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `None` when disabled.
    pub backend: Option<CacheBackend>,
    /// Largest stored answer.
    pub max_entry_bytes: usize,
    /// TTL of chat answers.
    pub chat_ttl: Duration,
    /// TTL of embeddings.
    pub embeddings_ttl: Duration,
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Whether rows are written.
    pub enabled: bool,
    /// Flush interval.
    pub flush: Duration,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Queue bound.
    pub queue_rows: usize,
}

pub(crate) fn amount(sink: &mut Sink<'_>, path: &KeyPath, raw: &RawAmount) -> Option<Micros> {
    let parsed = match raw {
        RawAmount::Int(n) if *n >= 0 => n
            .checked_mul(1_000_000)
            .map(Micros)
            .ok_or_else(|| format!("{n} is too large an amount")),
        RawAmount::Int(n) => Err(format!("{n} is negative")),
        RawAmount::Float(f) => Micros::from_dollars_f64(*f),
        RawAmount::Text(s) => Micros::parse_dollars(s),
    };
    match parsed {
        Ok(m) => Some(m),
        Err(e) => {
            sink.error(
                path,
                format!("invalid amount of US$: {e}"),
                "write a non-negative number of dollars, e.g. 2.5 or \"2.50\"",
            );
            None
        }
    }
}

/// A price table entry (US$ per million tokens → micro-dollars per million tokens).
pub(crate) fn price(sink: &mut Sink<'_>, path: &KeyPath, raw: &RawPrice) -> Option<Price> {
    let mut ok = true;
    let mut get = |key: &str, value: &Option<RawAmount>, sink: &mut Sink<'_>| match value {
        Some(v) => {
            let m = amount(sink, &path.key(key), v);
            ok &= m.is_some();
            m
        }
        None => None,
    };
    let input = get("input", &raw.input, sink);
    let output = get("output", &raw.output, sink);
    let cached = get("cached_input", &raw.cached_input, sink);
    for (key, value) in [("input", &raw.input), ("output", &raw.output)] {
        if value.is_none() {
            sink.error(
                &path.key(key),
                format!("the price has no {key}"),
                format!(
                    "add {key} = <US$ per million tokens>, e.g. {{ input = 2.5, output = 10 }}"
                ),
            );
            ok = false;
        }
    }
    let (input, output) = (input?, output?);
    ok.then(|| Price {
        input: input.0,
        output: output.0,
        cached_input: cached.unwrap_or(input).0,
    })
}

pub(crate) fn balance(sink: &mut Sink<'_>, path: &KeyPath, raw: Option<&str>) -> Balance {
    match raw {
        None | Some("weighted") => Balance::Weighted,
        Some("least_latency") => Balance::LeastLatency,
        Some(other) => {
            sink.error(
                path,
                format!("invalid balance \"{other}\""),
                "use one of: weighted, least_latency",
            );
            Balance::Weighted
        }
    }
}

pub(crate) fn fallback_on(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    raw: Option<&Vec<String>>,
) -> FallbackOn {
    let Some(list) = raw else {
        return FallbackOn::ALL;
    };
    let mut on = FallbackOn::default();
    for (i, name) in list.iter().enumerate() {
        match name.as_str() {
            "rate_limit" => on.rate_limit = true,
            "server_error" => on.server_error = true,
            "timeout" => on.timeout = true,
            "connect" => on.connect = true,
            "context_window" => on.context_window = true,
            other => {
                let guess = closest(other, FallbackOn::NAMES)
                    .map(|g| format!("did you mean \"{g}\"? "))
                    .unwrap_or_default();
                sink.error(
                    &path.index(i),
                    format!("unknown failure class \"{other}\""),
                    format!("{guess}use any of: {}", FallbackOn::NAMES.join(", ")),
                );
            }
        }
    }
    on
}

/// A count that must fit `u32` and be at least `min`.
pub(crate) fn count(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    raw: Option<i64>,
    min: i64,
    default: u32,
) -> u32 {
    match raw {
        None => default,
        Some(n) if n >= min && n <= u32::MAX as i64 => n as u32,
        Some(n) => {
            sink.error(
                path,
                format!("must be between {min} and {} (got {n})", u32::MAX),
                format!("use a whole number such as {default}"),
            );
            default
        }
    }
}

pub(crate) fn routing(sink: &mut Sink<'_>, raw: &RawRouting) -> RoutingConfig {
    let p = KeyPath::root().key("routing");
    let retry_backoff = non_negative_ms(
        sink,
        &p.key("retry_backoff_ms"),
        raw.retry_backoff_ms,
        defaults::RETRY_BACKOFF,
    );
    let retry_backoff_max = non_negative_ms(
        sink,
        &p.key("retry_backoff_max_ms"),
        raw.retry_backoff_max_ms,
        defaults::RETRY_BACKOFF_MAX,
    );
    if retry_backoff_max < retry_backoff {
        sink.error(
            &p.key("retry_backoff_max_ms"),
            "retry_backoff_max_ms is smaller than retry_backoff_ms",
            "make the maximum at least the first delay",
        );
    }
    let percent = count(
        sink,
        &p.key("retry_budget_percent"),
        raw.retry_budget_percent,
        0,
        defaults::RETRY_BUDGET_PERCENT,
    );
    let retry_min_per_sec = count(
        sink,
        &p.key("retry_min_per_sec"),
        raw.retry_min_per_sec,
        0,
        defaults::RETRY_MIN_PER_SEC,
    );
    let b = raw.breaker.as_ref();
    let bp = p.key("breaker");
    let default_breaker = defaults::breaker();
    let error_rate_percent = count(
        sink,
        &bp.key("error_rate_percent"),
        b.and_then(|b| b.error_rate_percent),
        1,
        default_breaker.error_rate_percent,
    );
    if error_rate_percent > 100 {
        sink.error(
            &bp.key("error_rate_percent"),
            format!("error_rate_percent must be at most 100 (got {error_rate_percent})"),
            "use a percentage such as 50",
        );
    }
    let slow_ttft = non_negative_ms(
        sink,
        &bp.key("slow_ttft_ms"),
        b.and_then(|b| b.slow_ttft_ms),
        Duration::ZERO,
    );
    let breaker = BreakerConfig {
        enabled: b.and_then(|b| b.enabled).unwrap_or(true),
        consecutive_failures: count(
            sink,
            &bp.key("consecutive_failures"),
            b.and_then(|b| b.consecutive_failures),
            1,
            default_breaker.consecutive_failures,
        ),
        error_rate_percent,
        min_requests: count(
            sink,
            &bp.key("min_requests"),
            b.and_then(|b| b.min_requests),
            1,
            default_breaker.min_requests,
        ),
        window: positive_ms(
            sink,
            &bp.key("window_ms"),
            b.and_then(|b| b.window_ms),
            default_breaker.window,
        ),
        open_for: positive_ms(
            sink,
            &bp.key("open_ms"),
            b.and_then(|b| b.open_ms),
            default_breaker.open_for,
        ),
        slow_ttft: (!slow_ttft.is_zero()).then_some(slow_ttft),
        half_open_probes: count(
            sink,
            &bp.key("half_open_probes"),
            b.and_then(|b| b.half_open_probes),
            1,
            default_breaker.half_open_probes,
        ),
    };
    RoutingConfig {
        retry_backoff,
        retry_backoff_max,
        retry_budget_ratio: f64::from(percent) / 100.0,
        retry_min_per_sec,
        breaker,
    }
}

pub(crate) fn router(
    sink: &mut Sink<'_>,
    name: &str,
    raw: &RawRouter,
    models: &[String],
) -> Option<RouterConfig> {
    let p = KeyPath::root().key("routers").key(name);
    let mut ok = true;
    if models.iter().any(|m| m == name) {
        sink.error(
            &p,
            format!("\"{name}\" is both a model and a router"),
            "rename the router; clients request it by name, so it must be unique",
        );
        ok = false;
    }
    let check = |sink: &mut Sink<'_>, path: &KeyPath, target: &str| {
        if models.iter().any(|m| m == target) {
            return true;
        }
        let names: Vec<&str> = models.iter().map(String::as_str).collect();
        let guess = closest(target, &names)
            .map(|g| format!("did you mean \"{g}\"? "))
            .unwrap_or_default();
        sink.error(
            path,
            format!("unknown model \"{target}\""),
            format!("{guess}a router picks one of the [models] tables"),
        );
        false
    };
    let default = match &raw.default {
        Some(d) => {
            ok &= check(sink, &p.key("default"), d);
            d.clone()
        }
        None => {
            sink.error(
                &p.key("default"),
                "the router has no default model",
                "add default = \"<model>\", used when no rule matches",
            );
            return None;
        }
    };
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().flatten().enumerate() {
        let rp = p.key("rules").index(i);
        let Some(use_model) = &r.use_model else {
            sink.error(
                &rp.key("use"),
                "the rule names no model",
                "add use = \"<model>\"",
            );
            ok = false;
            continue;
        };
        ok &= check(sink, &rp.key("use"), use_model);
        let mut tokens = |key: &str, v: Option<i64>, sink: &mut Sink<'_>| match v {
            None => None,
            Some(n) if n >= 0 => Some(n as u64),
            Some(n) => {
                sink.error(
                    &rp.key(key),
                    format!("{key} must not be negative (got {n})"),
                    "use a token count such as 8000",
                );
                ok = false;
                None
            }
        };
        let min_prompt_tokens = tokens("min_prompt_tokens", r.min_prompt_tokens, sink);
        let max_prompt_tokens = tokens("max_prompt_tokens", r.max_prompt_tokens, sink);
        if let Some(tier) = &r.tier {
            if let Err(e) = agentd_core::ids::validate_name("tier", tier) {
                sink.error(&rp.key("tier"), e, "use a short name such as \"fast\"");
                ok = false;
            }
        }
        rules.push(RuleConfig {
            use_model: use_model.clone(),
            tier: r.tier.clone(),
            tools: r.tools,
            min_prompt_tokens,
            max_prompt_tokens,
        });
    }
    ok.then(|| RouterConfig {
        name: name.to_owned(),
        default,
        rules,
    })
}

pub(crate) fn budgets(sink: &mut Sink<'_>, raw: &RawBudgets, env: Env<'_>) -> BudgetsConfig {
    let p = KeyPath::root().key("budgets");
    let max_request = raw
        .max_request_usd
        .as_ref()
        .and_then(|a| amount(sink, &p.key("max_request_usd"), a));
    let alert_webhook = raw.alert_webhook.as_ref().and_then(|url| {
        let path = p.key("alert_webhook");
        let url = sink.expand(&path, url, env)?;
        if url.is_empty() {
            return None;
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            sink.error(
                &path,
                "alert_webhook is not an http:// or https:// URL",
                "use a full URL such as \"https://hooks.example.com/agentd\"",
            );
            return None;
        }
        Some(Secret::new(url))
    });
    let mut names = HashSet::new();
    let mut limits = Vec::new();
    for (i, l) in raw.limits.iter().flatten().enumerate() {
        let lp = p.key("limits").index(i);
        let scope = match l.scope.as_deref() {
            None => {
                sink.error(
                    &lp.key("scope"),
                    "the budget has no scope",
                    "add scope = \"tenant\" (or global, user, key, session)",
                );
                continue;
            }
            Some(s) => match BudgetScope::parse(s) {
                Some(scope) => scope,
                None => {
                    sink.error(
                        &lp.key("scope"),
                        format!("invalid scope \"{s}\""),
                        "use one of: global, tenant, user, key, session",
                    );
                    continue;
                }
            },
        };
        let window = match l.window.as_deref() {
            None if scope == BudgetScope::Session => BudgetWindow::Total,
            None => BudgetWindow::Month,
            Some(w) => match BudgetWindow::parse(w) {
                Some(w) => w,
                None => {
                    sink.error(
                        &lp.key("window"),
                        format!("invalid window \"{w}\""),
                        "use one of: day, month, total",
                    );
                    continue;
                }
            },
        };
        let Some(limit) = (match &l.usd {
            Some(a) => amount(sink, &lp.key("usd"), a),
            None => {
                sink.error(
                    &lp.key("usd"),
                    "the budget has no limit",
                    "add usd = <US$>, e.g. usd = 50",
                );
                None
            }
        }) else {
            continue;
        };
        if let Some(m) = &l.match_id {
            if scope == BudgetScope::Global {
                sink.error(
                    &lp.key("match"),
                    "match does not apply to a global budget",
                    "remove match, or use scope = \"tenant\" / \"user\" / \"key\" / \"session\"",
                );
                continue;
            }
            if scope == BudgetScope::User && !m.contains('/') {
                sink.error(
                    &lp.key("match"),
                    format!("a user budget matches \"tenant/user\" (got \"{m}\")"),
                    format!("write match = \"default/{m}\" for user {m} of tenant default"),
                );
                continue;
            }
        }
        let name = l.name.clone().unwrap_or_else(|| match &l.match_id {
            Some(m) => format!("{}-{}-{m}", scope.as_str(), window.as_str()),
            None => format!("{}-{}", scope.as_str(), window.as_str()),
        });
        if let Err(e) = agentd_core::ids::validate_name("budget name", &name.replace('/', ".")) {
            sink.error(&lp.key("name"), e, "use letters, digits, '.', '_' and '-'");
            continue;
        }
        if !names.insert(name.clone()) {
            sink.error(
                &lp.key("name"),
                format!("two budgets are named \"{name}\""),
                "give each [[budgets.limits]] a distinct name",
            );
            continue;
        }
        limits.push(BudgetLimit {
            name,
            scope,
            window,
            limit,
            match_id: l.match_id.clone(),
        });
    }
    BudgetsConfig {
        max_request,
        alert_webhook,
        limits,
    }
}

pub(crate) fn rate_limits(sink: &mut Sink<'_>, raw: &RawRateLimits) -> RateLimitsConfig {
    let p = KeyPath::root().key("rate_limits");
    let mut get = |key: &str, v: Option<i64>| match v {
        None | Some(0) => None,
        Some(n) if n > 0 => Some(n as u64),
        Some(n) => {
            sink.error(
                &p.key(key),
                format!("{key} must not be negative (got {n})"),
                "use a positive number, or 0 for no limit",
            );
            None
        }
    };
    RateLimitsConfig {
        key_rpm: get("key_rpm", raw.key_rpm),
        key_tpm: get("key_tpm", raw.key_tpm),
        tenant_rpm: get("tenant_rpm", raw.tenant_rpm),
        tenant_tpm: get("tenant_tpm", raw.tenant_tpm),
    }
}

fn redis_url(sink: &mut Sink<'_>, path: &KeyPath, raw: &str, env: Env<'_>) -> Option<Secret> {
    let url = sink.expand(path, raw, env)?;
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Some(Secret::new(url))
    } else {
        sink.error(
            path,
            "the url must start with redis:// or rediss://",
            "use a URL like redis://127.0.0.1:6379",
        );
        None
    }
}

pub(crate) fn counters(sink: &mut Sink<'_>, raw: &RawCounters, env: Env<'_>) -> CountersConfig {
    let p = KeyPath::root().key("counters");
    let prefix = raw.prefix.clone().unwrap_or_else(|| "agentd".to_owned());
    match raw.kind.as_deref() {
        None | Some("memory") => {
            if raw.url.is_some() {
                sink.error(
                    &p.key("url"),
                    "url is set but the counters kind is memory",
                    "set kind = \"redis\" to share counters between replicas, or remove url",
                );
            }
            CountersConfig::Memory
        }
        Some("redis") => match &raw.url {
            Some(url) => match redis_url(sink, &p.key("url"), url, env) {
                Some(url) => CountersConfig::Redis { url, prefix },
                None => CountersConfig::Memory,
            },
            None => {
                sink.error(
                    &p.key("url"),
                    "redis counters need a url",
                    "add url = \"redis://127.0.0.1:6379\"",
                );
                CountersConfig::Memory
            }
        },
        Some(other) => {
            sink.error(
                &p.key("kind"),
                format!("invalid counters kind \"{other}\""),
                "use one of: memory, redis",
            );
            CountersConfig::Memory
        }
    }
}

pub(crate) fn cache(
    sink: &mut Sink<'_>,
    raw: &RawCache,
    counters: &RawCounters,
    env: Env<'_>,
) -> CacheConfig {
    let p = KeyPath::root().key("cache");
    let size = |sink: &mut Sink<'_>, key: &str, v: Option<i64>, default: u64| match v {
        None => default,
        Some(n) if n > 0 => n as u64,
        Some(n) => {
            sink.error(
                &p.key(key),
                format!("{key} must be greater than 0 (got {n})"),
                format!("set a size in bytes such as {default}"),
            );
            default
        }
    };
    let max_bytes = size(sink, "max_bytes", raw.max_bytes, defaults::CACHE_MAX_BYTES);
    let max_entry_bytes = size(
        sink,
        "max_entry_bytes",
        raw.max_entry_bytes,
        defaults::CACHE_MAX_ENTRY_BYTES,
    ) as usize;
    let chat_ttl = positive_ms(
        sink,
        &p.key("chat_ttl_ms"),
        raw.chat_ttl_ms,
        defaults::CACHE_CHAT_TTL,
    );
    let embeddings_ttl = positive_ms(
        sink,
        &p.key("embeddings_ttl_ms"),
        raw.embeddings_ttl_ms,
        defaults::CACHE_EMBEDDINGS_TTL,
    );
    let backend = match raw.kind.as_deref() {
        None | Some("memory") => Some(CacheBackend::Memory { max_bytes }),
        Some("redis") => {
            let url = raw.url.as_ref().or(counters.url.as_ref());
            match url {
                Some(url) => {
                    redis_url(sink, &p.key("url"), url, env).map(|url| CacheBackend::Redis {
                        url,
                        prefix: counters
                            .prefix
                            .clone()
                            .unwrap_or_else(|| "agentd".to_owned()),
                    })
                }
                None => {
                    sink.error(
                        &p.key("url"),
                        "a redis cache needs a url",
                        "add url = \"redis://127.0.0.1:6379\" (or set counters.url)",
                    );
                    None
                }
            }
        }
        Some(other) => {
            sink.error(
                &p.key("kind"),
                format!("invalid cache kind \"{other}\""),
                "use one of: memory, redis",
            );
            None
        }
    };
    CacheConfig {
        backend: if raw.enabled.unwrap_or(true) {
            backend
        } else {
            None
        },
        max_entry_bytes,
        chat_ttl,
        embeddings_ttl,
    }
}

pub(crate) fn ledger(sink: &mut Sink<'_>, raw: &RawLedger) -> LedgerConfig {
    let p = KeyPath::root().key("ledger");
    LedgerConfig {
        enabled: raw.enabled.unwrap_or(true),
        flush: positive_ms(
            sink,
            &p.key("flush_ms"),
            raw.flush_ms,
            defaults::LEDGER_FLUSH,
        ),
        batch_rows: count(sink, &p.key("batch_rows"), raw.batch_rows, 1, 500) as usize,
        queue_rows: count(sink, &p.key("queue_rows"), raw.queue_rows, 1, 100_000) as usize,
    }
}

/// Built-in prices (US$ per million tokens: input, output, cached input), for well-known
/// models. Looked up by the deployment's upstream model name: exactly, else the longest entry
/// that the name starts with followed by `-` (dated snapshots such as `gpt-4o-2024-08-06`).
/// Checked on 2025-11; override with `[prices]` when providers change them.
pub const DEFAULT_PRICES: &[(&str, &str, &str, &str)] = &[
    ("gpt-5", "1.25", "10", "0.125"),
    ("gpt-5-mini", "0.25", "2", "0.025"),
    ("gpt-5-nano", "0.05", "0.4", "0.005"),
    ("gpt-4.1", "2", "8", "0.5"),
    ("gpt-4.1-mini", "0.4", "1.6", "0.1"),
    ("gpt-4.1-nano", "0.1", "0.4", "0.025"),
    ("gpt-4o", "2.5", "10", "1.25"),
    ("gpt-4o-mini", "0.15", "0.6", "0.075"),
    ("o3", "2", "8", "0.5"),
    ("o4-mini", "1.1", "4.4", "0.275"),
    ("text-embedding-3-small", "0.02", "0", "0.02"),
    ("text-embedding-3-large", "0.13", "0", "0.13"),
    ("claude-opus-4-1", "15", "75", "1.5"),
    ("claude-opus-4", "15", "75", "1.5"),
    ("claude-sonnet-4-5", "3", "15", "0.3"),
    ("claude-sonnet-4", "3", "15", "0.3"),
    ("claude-haiku-4-5", "1", "5", "0.1"),
    ("claude-3-5-haiku", "0.8", "4", "0.08"),
];

/// The built-in price of an upstream model, if it is a well-known one.
pub fn default_price(model: &str) -> Option<Price> {
    let entry = DEFAULT_PRICES
        .iter()
        .filter(|(name, ..)| {
            model == *name
                || model
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|(name, ..)| name.len())?;
    let m = |s: &str| Micros::parse_dollars(s).expect("built-in prices parse").0;
    Some(Price {
        input: m(entry.1),
        output: m(entry.2),
        cached_input: m(entry.3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_prices_match_snapshots_by_longest_prefix() {
        let mini = default_price("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(mini.input, 150_000);
        let big = default_price("gpt-4o-2024-08-06").unwrap();
        assert_eq!(big.input, 2_500_000);
        assert_eq!(default_price("gpt-4o").unwrap().output, 10_000_000);
        assert!(default_price("gpt-4oo").is_none());
        assert!(default_price("mock").is_none());
        assert_eq!(
            default_price("claude-sonnet-4-5-20250929").unwrap().output,
            15_000_000
        );
    }
}
