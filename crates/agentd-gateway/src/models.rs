//! The table of public model names, the deployments behind each, and the tiering routers.
//!
//! Built once from the config. Each deployment carries its own health: a circuit breaker, a
//! latency EWMA (for least-latency balancing) and a retry budget. Each model carries its
//! fallback chain, resolved at start-up (the model itself, then its fallbacks and theirs, each
//! once), and the highest price anywhere on that chain, which budget reservations use as the
//! worst case.

use crate::metrics::CallMetrics;
use crate::resilience::{self, Breaker, LatencyEwma, RetryBudget};
use agentd_config::{Balance, Config, FallbackOn, RouterConfig};
use agentd_core::Price;
use agentd_providers::{Provider, ProviderError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const BREAKER_STATE: &str = "agentd_breaker_state";
pub(crate) const BREAKER_TRANSITIONS: &str = "agentd_breaker_transitions_total";

pub(crate) struct Deployment {
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    pub price: Option<Price>,
    /// Metric handles labelled with this deployment's provider and the public model name.
    pub metrics: Arc<CallMetrics>,
    pub breaker: Arc<Breaker>,
    pub latency: Arc<LatencyEwma>,
    pub retry_budget: RetryBudget,
}

impl Deployment {
    /// `provider/model`, as the admin API and logs name it.
    pub(crate) fn label(&self) -> String {
        format!("{}/{}", self.provider.name(), self.model)
    }
}

pub(crate) struct ModelRoute {
    pub name: String,
    pub owned_by: String,
    pub deployments: Vec<Arc<Deployment>>,
    pub balance: Balance,
    pub fallback_on: FallbackOn,
    pub max_retries: u32,
    pub max_output_tokens: u64,
    /// The highest input, output and cached-input prices over the whole fallback chain.
    pub worst_price: Price,
    /// The longest a call to this model can take: every attempt on every deployment of the
    /// chain timing out, with the longest backoffs, plus a margin. Budget holds expire after
    /// it (they are settled long before, unless the replica died).
    pub max_life: Duration,
}

impl ModelRoute {
    /// Deployment indices in the order to try them.
    pub(crate) fn order(&self) -> Vec<usize> {
        let candidates: Vec<resilience::Candidate> = self
            .deployments
            .iter()
            .map(|d| resilience::Candidate {
                weight: d.weight,
                score: d.latency.score(),
                // True also for an open breaker whose period is over: that is the probe.
                available: d.breaker.is_available(),
            })
            .collect();
        resilience::order(self.balance, &candidates)
    }
}

pub(crate) struct Models {
    by_name: HashMap<String, Arc<ModelRoute>>,
    /// Config order, for `/v1/models`.
    pub ordered: Vec<Arc<ModelRoute>>,
    /// Tiering routers, config order.
    pub routers: Vec<RouterConfig>,
    /// For each model, itself followed by its fallback models (transitively, each once).
    chains: HashMap<String, Vec<Arc<ModelRoute>>>,
    /// Unix time the table was built, reported as `created`.
    pub created: i64,
}

impl Models {
    pub(crate) fn from_config(config: &Config) -> Result<Models, ProviderError> {
        let mut providers: HashMap<&str, Arc<Provider>> = HashMap::new();
        for p in &config.providers {
            providers.insert(p.name.as_str(), Arc::new(Provider::from_config(p)?));
        }
        let routing = &config.routing;
        let mut by_name = HashMap::new();
        let mut ordered = Vec::new();
        for m in &config.models {
            let mut deployments = Vec::with_capacity(m.deployments.len());
            for d in &m.deployments {
                let shared = providers.get(d.provider.as_str()).cloned().ok_or_else(|| {
                    // Config validation guarantees this; keep a clear error if it ever doesn't.
                    ProviderError::Config(format!(
                        "model {:?} names unknown provider {:?}",
                        m.name, d.provider
                    ))
                })?;
                // Timeouts overridden for this deployment: it gets its own client (and pool).
                let provider = if d.connect_timeout.is_some()
                    || d.first_token_timeout.is_some()
                    || d.timeout.is_some()
                {
                    let base = config.provider(&d.provider).ok_or_else(|| {
                        ProviderError::Config(format!("unknown provider {:?}", d.provider))
                    })?;
                    let mut cfg = base.clone();
                    cfg.connect_timeout = d.connect_timeout.unwrap_or(cfg.connect_timeout);
                    cfg.first_token_timeout =
                        d.first_token_timeout.unwrap_or(cfg.first_token_timeout);
                    cfg.timeout = d.timeout.unwrap_or(cfg.timeout);
                    Arc::new(Provider::from_config(&cfg)?)
                } else {
                    shared
                };
                let label = format!("{}/{}", provider.name(), d.model);
                let gauge = metrics::gauge!(BREAKER_STATE, "deployment" => label.clone(), "model" => m.name.clone());
                gauge.set(0.0);
                let (log_label, model_name) = (label.clone(), m.name.clone());
                let breaker = Breaker::new(routing.breaker.clone()).on_transition(move |t| {
                    gauge.set(t.to.gauge_value());
                    metrics::counter!(BREAKER_TRANSITIONS, "deployment" => log_label.clone(), "to" => t.to.as_str())
                        .increment(1);
                    tracing::warn!(
                        deployment = %log_label,
                        model = %model_name,
                        from = t.from.as_str(),
                        to = t.to.as_str(),
                        reason = t.reason.as_str(),
                        "Circuit breaker changed state"
                    );
                });
                deployments.push(Arc::new(Deployment {
                    metrics: Arc::new(CallMetrics::new(provider.name(), &m.name)),
                    provider,
                    model: d.model.clone(),
                    weight: d.weight.max(1),
                    price: d.price,
                    breaker: Arc::new(breaker),
                    latency: Arc::new(LatencyEwma::new()),
                    retry_budget: RetryBudget::new(
                        routing.retry_budget_ratio,
                        routing.retry_min_per_sec,
                        100,
                    ),
                }));
            }
            let route = Arc::new(ModelRoute {
                name: m.name.clone(),
                owned_by: m.owned_by.clone(),
                deployments,
                balance: m.balance,
                fallback_on: m.fallback_on,
                max_retries: m.max_retries,
                max_output_tokens: m.max_output_tokens,
                worst_price: worst_price(&chain_of(config, &m.name), config),
                max_life: max_life(&chain_of(config, &m.name), config),
            });
            by_name.insert(m.name.clone(), route.clone());
            ordered.push(route);
        }
        let chains = config
            .models
            .iter()
            .map(|m| {
                let chain = chain_of(config, &m.name)
                    .iter()
                    .filter_map(|name| by_name.get(*name).cloned())
                    .collect();
                (m.name.clone(), chain)
            })
            .collect();
        Ok(Models {
            by_name,
            ordered,
            routers: config.routers.clone(),
            chains,
            created: chrono::Utc::now().timestamp(),
        })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.by_name.get(name)
    }

    /// The model a request is served by: `name` itself, or what the router named `name` picks
    /// from the caller's tier, the presence of tools and the estimated prompt size.
    pub(crate) fn resolve(
        &self,
        name: &str,
        tier: Option<&str>,
        tools: bool,
        prompt_tokens: u64,
    ) -> Option<Arc<ModelRoute>> {
        if let Some(route) = self.by_name.get(name) {
            return Some(route.clone());
        }
        let router = self.routers.iter().find(|r| r.name == name)?;
        let picked = router
            .rules
            .iter()
            .find(|rule| {
                rule.tier.as_deref().is_none_or(|t| Some(t) == tier)
                    && rule.tools.is_none_or(|t| t == tools)
                    && rule
                        .min_prompt_tokens
                        .is_none_or(|min| prompt_tokens >= min)
                    && rule
                        .max_prompt_tokens
                        .is_none_or(|max| prompt_tokens <= max)
            })
            .map_or(router.default.as_str(), |rule| rule.use_model.as_str());
        self.by_name.get(picked).cloned()
    }

    /// The model followed by its fallbacks.
    pub(crate) fn chain(&self, route: &ModelRoute) -> &[Arc<ModelRoute>] {
        self.chains.get(&route.name).map_or(&[], Vec::as_slice)
    }
}

/// The names of `model` and its fallback models, transitively, each once. Depth-first in
/// declaration order: a's fallbacks [b, c] with b → d gives a, b, d, c.
fn chain_of<'a>(config: &'a Config, model: &'a str) -> Vec<&'a str> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![model];
    while let Some(name) = stack.pop() {
        let Some(m) = config.model(name) else {
            continue;
        };
        if !seen.insert(name) {
            continue;
        }
        stack.extend(m.fallbacks.iter().rev().map(String::as_str));
        chain.push(name);
    }
    chain
}

/// The highest input, output and cached-input prices over every deployment of `chain`
/// (deployments without a price count as free).
/// Margin on top of the computed longest call: settlement runs after the call's end.
const MAX_LIFE_MARGIN: Duration = Duration::from_secs(5);

fn max_life(chain: &[&str], config: &Config) -> Duration {
    let routing = &config.routing;
    let mut total = MAX_LIFE_MARGIN;
    for m in chain.iter().filter_map(|name| config.model(name)) {
        let attempts = m.max_retries.saturating_add(1);
        for d in &m.deployments {
            let Some(p) = config.provider(&d.provider) else {
                continue;
            };
            let connect = d.connect_timeout.unwrap_or(p.connect_timeout);
            let whole = d.timeout.unwrap_or(p.timeout);
            let one = connect
                .saturating_add(whole)
                .saturating_add(routing.retry_backoff_max);
            total = total.saturating_add(one.saturating_mul(attempts));
        }
    }
    total
}

fn worst_price(chain: &[&str], config: &Config) -> Price {
    let mut worst = Price::FREE;
    for d in chain
        .iter()
        .filter_map(|name| config.model(name))
        .flat_map(|m| &m.deployments)
    {
        let p = d.price.unwrap_or(Price::FREE);
        worst.input = worst.input.max(p.input);
        worst.output = worst.output.max(p.output);
        worst.cached_input = worst.cached_input.max(p.cached_input);
    }
    worst
}
