//! Admission control: rate limits and hard budgets, on the shared counters.
//!
//! Budgets are enforced by reservation. On admission a request reserves its worst-case cost
//! against every budget it falls under in ONE atomic [`Counters::reserve`] (in-process or a
//! Redis script), so concurrent requests — on one replica or many — can never together pass a
//! budget: each sees the others' reserves. When the call ends the reservation is settled to the
//! real cost (which may be lower, or, when the provider reports more tokens than estimated,
//! slightly higher), and a call that failed before any usage releases it.
//!
//! A counter is `spent + outstanding reserves` for one budget, scope value and window. When a
//! process first touches a counter that does not exist yet (a restart with in-process counters,
//! a flushed Redis), it is rebuilt from the ledger (`init` only sets it if still absent).
//!
//! Alerts fire once per budget, window and threshold (50/80/100 %), also across replicas
//! (`Counters::once`): a WARN log, `agentd_budget_alerts_total` and the optional webhook.

use crate::alerts::Alerts;
use crate::keys::Principal;
use agentd_config::{BudgetLimit, BudgetScope, BudgetWindow, BudgetsConfig, RateLimitsConfig};
use agentd_core::{
    ApiError, Charge, CounterError, Counters, ErrorKind, Micros, Reserve, SpendScope, SpendStore,
};
use agentd_store::Store;
use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BUDGET_ALERTS: &str = "agentd_budget_alerts_total";
pub const BUDGET_REFUSALS: &str = "agentd_budget_refusals_total";
pub const RATE_LIMITED: &str = "agentd_rate_limited_total";

const THRESHOLDS: [i64; 3] = [50, 80, 100];

/// Who is asking, for budgets and rate limits.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub session: Option<&'a str>,
}

pub struct Controls {
    counters: Arc<dyn Counters>,
    budgets: Vec<BudgetLimit>,
    max_request: Option<Micros>,
    rate: RateLimitsConfig,
    store: Arc<Store>,
    alerts: Arc<Alerts>,
    /// Counter keys this process has already rebuilt from the ledger (or found existing).
    initialized: Mutex<HashSet<String>>,
}

/// A budget this request falls under, with its counter.
struct Applied {
    index: usize,
    key: String,
    ttl: Option<Duration>,
    scope: SpendScope,
    since: Option<DateTime<Utc>>,
    /// The scope value (`acme`, `acme/alice`, a key id, `*`), for messages.
    id: String,
}

/// An admitted request's hold on its budgets; settle or release it exactly once.
#[must_use = "settle or release the reservation"]
pub struct Reservation {
    controls: Arc<Controls>,
    /// (budget index, counter key, ttl, scope value) per budget.
    applied: Vec<(usize, String, Option<Duration>, String)>,
    amount: i64,
}

/// A request's draw on its token-per-minute windows, corrected to the real count at the end.
pub struct TokenTicket {
    keys: Vec<(String, Option<Duration>)>,
    estimated: i64,
}

impl Controls {
    pub fn new(
        counters: Arc<dyn Counters>,
        budgets: &BudgetsConfig,
        rate: RateLimitsConfig,
        store: Arc<Store>,
        alerts: Arc<Alerts>,
    ) -> Arc<Controls> {
        Arc::new(Controls {
            counters,
            budgets: budgets.limits.clone(),
            max_request: budgets.max_request,
            rate,
            store,
            alerts,
            initialized: Mutex::new(HashSet::new()),
        })
    }

    pub fn has_budgets(&self) -> bool {
        !self.budgets.is_empty() || self.max_request.is_some()
    }

    pub fn has_rate_limits(&self) -> bool {
        self.rate.any()
    }

    pub fn counters(&self) -> &Arc<dyn Counters> {
        &self.counters
    }

    /// Requests- and tokens-per-minute limits of the key and its tenant. `tokens` is the
    /// request's estimated prompt tokens; [`TokenTicket::settle`] corrects it afterwards.
    /// Fails open (with a WARN) when the counter backend is down: rate limits protect
    /// capacity, not money.
    pub async fn rate_limit(
        &self,
        caller: &Caller<'_>,
        tokens: u64,
    ) -> Result<Option<TokenTicket>, ApiError> {
        if !self.rate.any() {
            return Ok(None);
        }
        let now = Utc::now();
        let minute = now.timestamp() / 60;
        let ttl = Some(Duration::from_secs(120));
        let p = caller.principal;
        let mut charges = Vec::with_capacity(4);
        let mut names = Vec::with_capacity(4);
        let mut token_keys = Vec::new();
        let mut push = |key: String, amount: u64, limit: Option<u64>, name: &'static str| {
            if let Some(limit) = limit {
                charges.push(Charge {
                    key,
                    amount: amount as i64,
                    limit: limit as i64,
                    ttl,
                });
                names.push((name, limit));
            }
        };
        push(
            format!("rl:k:{}:rpm:{minute}", p.key_id),
            1,
            self.rate.key_rpm,
            "requests per minute for this API key",
        );
        push(
            format!("rl:t:{}:rpm:{minute}", p.tenant),
            1,
            self.rate.tenant_rpm,
            "requests per minute for this tenant",
        );
        let tpm_key = format!("rl:k:{}:tpm:{minute}", p.key_id);
        let tpm_tenant = format!("rl:t:{}:tpm:{minute}", p.tenant);
        if self.rate.key_tpm.is_some() {
            token_keys.push((tpm_key.clone(), ttl));
        }
        if self.rate.tenant_tpm.is_some() {
            token_keys.push((tpm_tenant.clone(), ttl));
        }
        push(
            tpm_key,
            tokens,
            self.rate.key_tpm,
            "tokens per minute for this API key",
        );
        push(
            tpm_tenant,
            tokens,
            self.rate.tenant_tpm,
            "tokens per minute for this tenant",
        );
        match self.counters.reserve(&charges).await {
            Ok(Reserve::Admitted(_)) => Ok((!token_keys.is_empty()).then_some(TokenTicket {
                keys: token_keys,
                estimated: tokens as i64,
            })),
            Ok(Reserve::Refused { index, .. }) => {
                let (what, limit) = names[index];
                metrics::counter!(RATE_LIMITED, "limit" => what).increment(1);
                let wait = 60 - now.second() as u64;
                Err(ApiError::new(
                    ErrorKind::RateLimited,
                    "rate_limit_exceeded",
                    format!("rate limit reached: at most {limit} {what}; retry in {wait} s"),
                )
                .with_retry_after(Duration::from_secs(wait.max(1))))
            }
            Err(err) => {
                tracing::warn!(error = %err, "Rate-limit counters unavailable; admitting without limits");
                Ok(None)
            }
        }
    }

    /// The budgets `caller` falls under right now.
    fn applicable(&self, caller: &Caller<'_>, now: DateTime<Utc>) -> Vec<Applied> {
        let p = caller.principal;
        let mut out = Vec::new();
        for (index, b) in self.budgets.iter().enumerate() {
            let (id, scope) = match b.scope {
                BudgetScope::Global => ("*".to_owned(), SpendScope::Global),
                BudgetScope::Tenant => (p.tenant.to_string(), SpendScope::Tenant(p.tenant.clone())),
                BudgetScope::User => match &p.user {
                    Some(user) => (
                        format!("{}/{}", p.tenant, user),
                        SpendScope::User(p.tenant.clone(), user.clone()),
                    ),
                    None => continue,
                },
                BudgetScope::Key => (p.key_id.to_string(), SpendScope::Key(p.key_id.clone())),
                BudgetScope::Session => match caller.session {
                    Some(s) => (
                        format!("{}/{}", p.tenant, s),
                        SpendScope::Session(p.tenant.clone(), s.to_owned()),
                    ),
                    None => continue,
                },
            };
            if let Some(m) = &b.match_id {
                // Sessions are matched by their id alone; the others by their full id.
                let matches = match b.scope {
                    BudgetScope::Session => caller.session == Some(m.as_str()),
                    BudgetScope::Global
                    | BudgetScope::Tenant
                    | BudgetScope::User
                    | BudgetScope::Key => &id == m,
                };
                if !matches {
                    continue;
                }
            }
            let (window_id, since, ttl) = window(b.window, now);
            out.push(Applied {
                index,
                key: format!("b:{}:{id}:{window_id}", b.name),
                ttl,
                scope,
                since,
                id,
            });
        }
        out
    }

    /// Rebuilds counters this process has not seen yet from the ledger.
    async fn ensure_initialized(&self, applied: &[Applied]) -> Result<(), ApiError> {
        let missing: Vec<&Applied> = {
            let seen = self.initialized.lock().unwrap_or_else(|e| e.into_inner());
            applied.iter().filter(|a| !seen.contains(&a.key)).collect()
        };
        for a in missing {
            let spent = self
                .store
                .spend_sum(&a.scope, a.since)
                .await
                .map_err(|e| unavailable(format!("cannot read the spend ledger: {e}")))?;
            self.counters
                .init(&a.key, spent.0, a.ttl)
                .await
                .map_err(counters_down)?;
            let mut seen = self.initialized.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 100_000 {
                // Old windows' keys; re-checking one costs a ledger query, nothing more.
                seen.clear();
            }
            seen.insert(a.key.clone());
        }
        Ok(())
    }

    /// Reserves `worst` against every applicable budget, or refuses with 402 naming the budget.
    /// Fails closed (503) when the counters are unreachable: budgets are hard.
    pub async fn reserve(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        worst: Micros,
    ) -> Result<Option<Reservation>, ApiError> {
        if let Some(max) = self.max_request {
            if worst > max {
                metrics::counter!(BUDGET_REFUSALS, "budget" => "max_request").increment(1);
                return Err(ApiError::new(
                    ErrorKind::Budget,
                    "request_budget_exceeded",
                    format!(
                        "this request may cost up to ${worst}, more than the per-request budget of ${max} (budgets.max_request_usd); lower max_tokens or shorten the prompt"
                    ),
                ));
            }
        }
        if self.budgets.is_empty() {
            return Ok(None);
        }
        let applied = self.applicable(caller, Utc::now());
        if applied.is_empty() {
            return Ok(None);
        }
        self.ensure_initialized(&applied).await?;
        let charges: Vec<Charge> = applied
            .iter()
            .map(|a| Charge {
                key: a.key.clone(),
                amount: worst.0,
                limit: self.budgets[a.index].limit.0,
                ttl: a.ttl,
            })
            .collect();
        match self
            .counters
            .reserve(&charges)
            .await
            .map_err(counters_down)?
        {
            Reserve::Admitted(after) => {
                for (a, value) in applied.iter().zip(after) {
                    self.check_alerts(a.index, &a.key, &a.id, value, a.ttl);
                }
                Ok(Some(Reservation {
                    controls: self.clone(),
                    applied: applied
                        .into_iter()
                        .map(|a| (a.index, a.key, a.ttl, a.id))
                        .collect(),
                    amount: worst.0,
                }))
            }
            Reserve::Refused { index, current } => {
                let a = &applied[index];
                let b = &self.budgets[a.index];
                metrics::counter!(BUDGET_REFUSALS, "budget" => b.name.clone()).increment(1);
                self.fire(a.index, &a.key, &a.id, 100, current, a.ttl);
                Err(ApiError::new(
                    ErrorKind::Budget,
                    "budget_exceeded",
                    format!(
                        "budget \"{}\" ({}) is exhausted: ${} of ${} spent or reserved, and this request may cost up to ${worst}",
                        b.name,
                        describe(b, &a.id),
                        Micros(current),
                        b.limit
                    ),
                ))
            }
        }
    }

    fn check_alerts(&self, index: usize, key: &str, id: &str, value: i64, ttl: Option<Duration>) {
        let limit = self.budgets[index].limit.0;
        for pct in THRESHOLDS {
            if limit > 0 && value.saturating_mul(100) >= limit.saturating_mul(pct) {
                self.fire(index, key, id, pct, value, ttl);
            }
        }
    }

    /// Sends the alert for `pct` unless some replica already did for this window.
    fn fire(&self, index: usize, key: &str, id: &str, pct: i64, value: i64, ttl: Option<Duration>) {
        let budget = self.budgets[index].clone();
        let counters = self.counters.clone();
        let alerts = self.alerts.clone();
        let once_key = format!("alert:{key}:{pct}");
        let what = describe(&budget, id);
        // Windows without an end still get a bounded dedupe key.
        let ttl = ttl.unwrap_or(Duration::from_secs(400 * 24 * 3600));
        let tracker = alerts.tracker().clone();
        tracker.spawn(async move {
            match counters.once(&once_key, ttl).await {
                Ok(true) => alerts.budget_alert(&budget, &what, pct, Micros(value)),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "Cannot deduplicate a budget alert"),
            }
        });
    }
}

impl Reservation {
    /// Replaces the reserve by the real cost, in the background (tracked, so drain waits for
    /// it): it is called from stream drops.
    pub fn settle(self, actual: Micros) {
        let tracker = self.controls.alerts.tracker().clone();
        tracker.spawn(self.settle_now(actual));
    }

    /// Gives the whole reserve back (the call failed without usage).
    pub fn release(self) {
        self.settle(Micros::ZERO);
    }

    async fn settle_now(self, actual: Micros) {
        let delta = actual.0 - self.amount;
        if delta == 0 {
            return;
        }
        let controls = &self.controls;
        let keys: Vec<(String, Option<Duration>)> = self
            .applied
            .iter()
            .map(|(_, k, ttl, _)| (k.clone(), *ttl))
            .collect();
        match controls.counters.adjust(&keys, delta).await {
            Ok(after) => {
                if delta > 0 {
                    for ((index, key, ttl, id), value) in self.applied.iter().zip(after) {
                        controls.check_alerts(*index, key, id, value, *ttl);
                    }
                }
            }
            Err(err) => tracing::error!(
                error = %err,
                reserved = %Micros(self.amount),
                actual = %actual,
                "Cannot settle a budget reservation; the budget keeps the full reserve"
            ),
        }
    }
}

impl TokenTicket {
    /// Corrects the token-per-minute windows from the estimate to the real count.
    pub fn settle(self, controls: &Arc<Controls>, actual_tokens: u64) {
        let counters = controls.counters.clone();
        controls
            .alerts
            .tracker()
            .spawn(async move { self.settle_now(&counters, actual_tokens).await });
    }

    async fn settle_now(self, counters: &Arc<dyn Counters>, actual_tokens: u64) {
        let delta = actual_tokens as i64 - self.estimated;
        if delta == 0 {
            return;
        }
        if let Err(err) = counters.adjust(&self.keys, delta).await {
            tracing::warn!(error = %err, "Cannot update token-per-minute counters");
        }
    }
}

/// Settles a finished call's budget reservation and token draw in ONE background task (a task
/// per counter update was a measurable share of the gateway's CPU per request).
pub fn settle(
    controls: &Arc<Controls>,
    reservation: Option<Reservation>,
    tokens: Option<TokenTicket>,
    cost: Micros,
    total_tokens: u64,
) {
    if reservation.is_none() && tokens.is_none() {
        return;
    }
    let counters = controls.counters.clone();
    controls.alerts.tracker().spawn(async move {
        if let Some(r) = reservation {
            r.settle_now(cost).await;
        }
        if let Some(t) = tokens {
            t.settle_now(&counters, total_tokens).await;
        }
    });
}

/// What a budget counter is of, for messages and alerts: `tenant acme, day window`.
fn describe(b: &BudgetLimit, id: &str) -> String {
    match b.scope {
        BudgetScope::Global => format!("{} window", b.window.as_str()),
        BudgetScope::Tenant | BudgetScope::User | BudgetScope::Key | BudgetScope::Session => {
            format!("{} {id}, {} window", b.scope.as_str(), b.window.as_str())
        }
    }
}

/// The window's id (part of the counter key), its start, and how long its counter must live.
fn window(
    w: BudgetWindow,
    now: DateTime<Utc>,
) -> (String, Option<DateTime<Utc>>, Option<Duration>) {
    match w {
        BudgetWindow::Day => {
            let start = Utc
                .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
                .single();
            (
                now.format("%Y%m%d").to_string(),
                start,
                Some(Duration::from_secs(2 * 24 * 3600)),
            )
        }
        BudgetWindow::Month => {
            let start = Utc
                .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .single();
            (
                now.format("%Y%m").to_string(),
                start,
                Some(Duration::from_secs(32 * 24 * 3600)),
            )
        }
        BudgetWindow::Total => ("all".to_owned(), None, None),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "budget_unavailable", message)
}

fn counters_down(err: CounterError) -> ApiError {
    unavailable(format!(
        "budgets cannot be checked right now ({err}); the request was not sent to any provider"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_calendar_periods() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 17, 5, 9).unwrap();
        let (id, since, ttl) = window(BudgetWindow::Day, now);
        assert_eq!(id, "20261123");
        assert_eq!(
            since,
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap())
        );
        assert!(ttl.unwrap() > Duration::from_secs(24 * 3600));
        let (id, since, _) = window(BudgetWindow::Month, now);
        assert_eq!(id, "202611");
        assert_eq!(
            since,
            Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
        assert_eq!(
            window(BudgetWindow::Total, now),
            ("all".to_owned(), None, None)
        );
    }
}
