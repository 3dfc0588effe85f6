//! Admission control: rate limits and hard budgets, on the shared counters.
//!
//! Budgets are enforced by holds. On admission a call places a hold of its worst-case cost on
//! every budget it falls under, and takes its tokens from its rate-limit buckets, in ONE atomic
//! [`Counters::admit`] (in-process or one Redis script), so concurrent calls — on one replica or
//! many — can never together pass a budget: each sees the others' holds. When the call ends its
//! [`Ticket`] is settled exactly once: the hold is replaced by the real cost (which may be lower,
//! or, when the provider reports more tokens than estimated, slightly higher), or by zero when
//! no provider was reached. The ticket lives in the call's task (`call.rs`), not in the client's
//! request future, so a client that hangs up cannot skip the settlement; a ticket dropped
//! unsettled (a panic) releases its hold. A hold also has an owner (the call id) and an expiry
//! (the call's longest possible life): the holds of a replica that was killed stop counting by
//! themselves.
//!
//! A counter that does not exist (first use, a new window, a Redis that lost it) is rebuilt from
//! the ledger before anything is admitted against it: `admit` says which are missing, this
//! module reads their spend from the ledger, `init`s them and admits again.
//!
//! Rate limits are token buckets per key and tenant (requests and tokens per minute), refilled
//! continuously. Tokens per minute are drawn at the prompt estimate and corrected to the real
//! count at settlement; cache hits draw a request but no tokens.
//!
//! Alerts fire once per budget, window and threshold (50/80/100 %), also across replicas
//! (`Counters::once`): a WARN log, `agentd_budget_alerts_total` and the optional webhook.

use crate::alerts::Alerts;
use crate::keys::Principal;
use agentd_config::{BudgetLimit, BudgetScope, BudgetWindow, BudgetsConfig, RateLimitsConfig};
use agentd_core::{
    Admission, Admit, ApiError, Charge, CounterError, Counters, ErrorKind, Hold, Micros,
    RateCharge, SpendScope, SpendStore,
};
use agentd_store::Store;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const BUDGET_ALERTS: &str = "agentd_budget_alerts_total";
pub(crate) const BUDGET_REFUSALS: &str = "agentd_budget_refusals_total";
pub(crate) const RATE_LIMITED: &str = "agentd_rate_limited_total";

const THRESHOLDS: [i64; 3] = [50, 80, 100];
/// Rate limits are per minute.
const RATE_PERIOD: Duration = Duration::from_secs(60);
/// Rebuilds from the ledger before giving up on a counter that keeps disappearing.
const MAX_REBUILDS: usize = 3;

/// Who is asking, for budgets and rate limits.
pub(crate) struct Caller<'a> {
    pub principal: &'a Principal,
    pub session: Option<&'a str>,
}

/// What one call asks for at admission.
pub(crate) struct Ask {
    /// The call's id: the owner of its holds (random, unguessable).
    pub call_id: Arc<str>,
    /// Estimated prompt tokens, drawn from the tokens-per-minute buckets (0 for a cache hit).
    pub tokens: u64,
    /// The worst-case cost to hold against the budgets; `None` for a cache hit (free).
    pub worst: Option<Micros>,
    /// How long the call can live at most: its holds expire after it.
    pub max_life: Duration,
}

/// The rate limits and budgets of this gateway, on its counters.
pub(crate) struct Gatekeeper {
    counters: Arc<dyn Counters>,
    budgets: Vec<BudgetLimit>,
    max_request: Option<Micros>,
    rate: RateLimitsConfig,
    store: Arc<Store>,
    alerts: Arc<Alerts>,
}

/// Most live counters listed per budget by `/admin/budgets`.
const MAX_LISTED: usize = 1000;

/// One budget counter's live state, for reports.
pub(crate) struct LiveCounter {
    /// Index of the budget in the config.
    pub budget: usize,
    pub key: String,
    /// The scope value: `acme`, `acme/alice`, a key id, `*`.
    pub scope_id: String,
    pub window: String,
    /// `None` when the counter does not exist in the backend (not used yet this window).
    pub state: Option<agentd_core::BudgetState>,
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

/// An admitted call's draw on the counters: its budget hold and its token estimate. Settle it
/// exactly once with [`Ticket::settle`]; dropped unsettled, it releases the hold.
#[must_use = "settle the ticket"]
pub(crate) struct Ticket {
    gate: Arc<Gatekeeper>,
    call_id: Arc<str>,
    /// (budget index, counter key, ttl, scope value) per budget held.
    held: Vec<(usize, String, Option<Duration>, String)>,
    amount: i64,
    /// The tokens-per-minute buckets drawn on, with the estimate drawn.
    tpm: Vec<RateCharge>,
    settled: bool,
}

impl Gatekeeper {
    pub(crate) fn new(
        counters: Arc<dyn Counters>,
        budgets: &BudgetsConfig,
        rate: RateLimitsConfig,
        store: Arc<Store>,
        alerts: Arc<Alerts>,
    ) -> Arc<Gatekeeper> {
        Arc::new(Gatekeeper {
            counters,
            budgets: budgets.limits.clone(),
            max_request: budgets.max_request,
            rate,
            store,
            alerts,
        })
    }

    pub(crate) fn has_budgets(&self) -> bool {
        !self.budgets.is_empty() || self.max_request.is_some()
    }

    pub(crate) fn counters(&self) -> &Arc<dyn Counters> {
        &self.counters
    }

    /// Admits a call or refuses it: 429 (rate limit, with Retry-After), 402 (budget), 503
    /// (budgets configured but the counters unreachable: budgets are hard, so this fails
    /// closed). Rate limits alone fail open (a WARN): they protect capacity, not money.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        ask: &Ask,
    ) -> Result<Option<Ticket>, ApiError> {
        if let (Some(max), Some(worst)) = (self.max_request, ask.worst) {
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
        let (rates, rate_names, tpm) = self.rate_charges(caller, ask.tokens);
        let applied = match ask.worst {
            Some(_) => self.applicable(caller, Utc::now()),
            None => Vec::new(),
        };
        if rates.is_empty() && applied.is_empty() {
            return Ok(None);
        }
        let worst = ask.worst.unwrap_or(Micros::ZERO);
        let charges: Vec<Charge> = applied
            .iter()
            .map(|a| Charge {
                key: a.key.clone(),
                amount: worst.0,
                limit: self.budgets[a.index].limit.0,
                ttl: a.ttl,
            })
            .collect();
        let hold = Hold {
            id: ask.call_id.to_string(),
            ttl: ask.max_life,
        };
        let admission = Admission {
            rates: &rates,
            hold: (!charges.is_empty()).then_some(&hold),
            budgets: &charges,
        };
        let mut rebuilds = 0;
        let answer = loop {
            let answer = match self.counters.admit(&admission).await {
                Ok(answer) => answer,
                Err(err) if charges.is_empty() => {
                    tracing::warn!(error = %err, "Rate-limit counters unavailable; admitting without limits");
                    return Ok(None);
                }
                Err(err) => return Err(counters_down(err)),
            };
            match answer {
                Admit::Missing(missing) if rebuilds < MAX_REBUILDS => {
                    rebuilds += 1;
                    for i in missing {
                        self.rebuild(&applied[i]).await?;
                    }
                }
                Admit::Missing(_) => {
                    return Err(unavailable(
                        "budget counters keep disappearing from the counter backend (is Redis evicting keys? use maxmemory-policy noeviction); the request was not sent to any provider".into(),
                    ))
                }
                other => break other,
            }
        };
        match answer {
            Admit::Admitted(after) => {
                for (a, value) in applied.iter().zip(after) {
                    self.check_alerts(a.index, &a.key, &a.id, value, a.ttl);
                }
                Ok(Some(Ticket {
                    gate: self.clone(),
                    call_id: ask.call_id.clone(),
                    held: applied
                        .into_iter()
                        .map(|a| (a.index, a.key, a.ttl, a.id))
                        .collect(),
                    amount: worst.0,
                    tpm,
                    settled: false,
                }))
            }
            Admit::RateLimited { index, retry_after } => {
                let (what, limit) = rate_names[index];
                metrics::counter!(RATE_LIMITED, "limit" => what).increment(1);
                let wait = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                Err(ApiError::new(
                    ErrorKind::RateLimited,
                    "rate_limit_exceeded",
                    format!("rate limit reached: at most {limit} {what}; retry in {wait} s"),
                )
                .with_retry_after(Duration::from_secs(wait)))
            }
            Admit::OverBudget { index, current } => {
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
            Admit::Missing(_) => unreachable!("the loop above returns on Missing"),
        }
    }

    /// The key's and tenant's buckets; the tokens-per-minute ones also returned apart (they
    /// are corrected at settlement).
    #[allow(clippy::type_complexity)]
    fn rate_charges(
        &self,
        caller: &Caller<'_>,
        tokens: u64,
    ) -> (Vec<RateCharge>, Vec<(&'static str, u64)>, Vec<RateCharge>) {
        let mut rates = Vec::new();
        let mut names = Vec::new();
        let mut tpm = Vec::new();
        if !self.rate.any() {
            return (rates, names, tpm);
        }
        let p = caller.principal;
        let mut push =
            |key: String, amount: u64, limit: Option<u64>, name: &'static str, is_tpm: bool| {
                let Some(limit) = limit else { return };
                if is_tpm && amount == 0 {
                    return;
                }
                let charge = RateCharge {
                    key,
                    amount: amount as i64,
                    capacity: limit as i64,
                    period: RATE_PERIOD,
                };
                if is_tpm {
                    tpm.push(charge.clone());
                }
                rates.push(charge);
                names.push((name, limit));
            };
        push(
            format!("bucket:k:{}:rpm", p.key_id),
            1,
            self.rate.key_rpm,
            "requests per minute for this API key",
            false,
        );
        push(
            format!("bucket:t:{}:rpm", p.tenant),
            1,
            self.rate.tenant_rpm,
            "requests per minute for this tenant",
            false,
        );
        push(
            format!("bucket:k:{}:tpm", p.key_id),
            tokens,
            self.rate.key_tpm,
            "tokens per minute for this API key",
            true,
        );
        push(
            format!("bucket:t:{}:tpm", p.tenant),
            tokens,
            self.rate.tenant_tpm,
            "tokens per minute for this tenant",
            true,
        );
        (rates, names, tpm)
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
                key: budget_key(&b.name, &id, &window_id),
                ttl,
                scope,
                since,
                id,
            });
        }
        out
    }

    /// Rebuilds a counter the backend does not have from the ledger (`init` sets it only if
    /// another replica has not just done so).
    async fn rebuild(&self, a: &Applied) -> Result<(), ApiError> {
        let spent = self
            .store
            .spend_sum(&a.scope, a.since)
            .await
            .map_err(|e| unavailable(format!("cannot read the spend ledger: {e}")))?;
        let created = self
            .counters
            .init(&a.key, spent.0, a.ttl)
            .await
            .map_err(counters_down)?;
        if created {
            tracing::info!(counter = %a.key, spent = %spent, "Budget counter rebuilt from the ledger");
        }
        Ok(())
    }

    /// Every budget's live counters in the current window, for the scope values the ledger has
    /// seen in it (sessions only when the budget names one with `match`), at most
    /// [`MAX_LISTED`] per budget.
    pub(crate) async fn live_counters(
        &self,
        tenant: Option<agentd_core::TenantId>,
    ) -> Result<Vec<LiveCounter>, ApiError> {
        use agentd_core::{SpendGroup, SpendQuery};
        let now = Utc::now();
        let mut out = Vec::new();
        for (index, b) in self.budgets.iter().enumerate() {
            let (window_id, since, _) = window(b.window, now);
            let group = match b.scope {
                BudgetScope::Global => None,
                BudgetScope::Tenant => Some(SpendGroup::Tenant),
                BudgetScope::User => Some(SpendGroup::User),
                BudgetScope::Key => Some(SpendGroup::Key),
                BudgetScope::Session => None,
            };
            let mut ids: Vec<String> = match (b.scope, group, &tenant) {
                (BudgetScope::Global, _, _) => vec!["*".to_owned()],
                // The tenant asked about: its counter whether or not it has spent yet.
                (BudgetScope::Tenant, _, Some(t)) => vec![t.to_string()],
                (_, Some(group_by), _) => self
                    .store
                    .spend_totals(&SpendQuery {
                        group_by,
                        tenant: tenant.clone(),
                        since,
                        until: None,
                    })
                    .await
                    .map_err(crate::keys::store_error)?
                    .into_iter()
                    .map(|t| t.group)
                    .filter(|g| !g.is_empty())
                    .collect(),
                (_, None, _) => Vec::new(),
            };
            if let Some(m) = &b.match_id {
                ids.retain(|id| id == m);
                if ids.is_empty() && b.scope != BudgetScope::Session {
                    ids.push(m.clone());
                }
                if b.scope == BudgetScope::Session {
                    if let Some(t) = &tenant {
                        ids.push(format!("{t}/{m}"));
                    }
                }
            }
            ids.truncate(MAX_LISTED);
            for id in ids {
                out.push(LiveCounter {
                    budget: index,
                    key: budget_key(&b.name, &id, &window_id),
                    scope_id: id,
                    window: window_id.clone(),
                    state: None,
                });
            }
        }
        let keys: Vec<String> = out.iter().map(|c| c.key.clone()).collect();
        if !keys.is_empty() {
            let states = self
                .counters
                .budget_state(&keys)
                .await
                .map_err(counters_down)?;
            for (c, state) in out.iter_mut().zip(states) {
                c.state = state;
            }
        }
        Ok(out)
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

impl Ticket {
    /// Replaces the hold by the real cost and corrects the token draw to the real count, in
    /// the background (tracked: a drain waits for it).
    pub(crate) fn settle(mut self, cost: Micros, tokens: u64) {
        self.spawn_settle(cost, tokens);
    }

    /// Settles in a tracked background task; marks the ticket settled.
    fn spawn_settle(&mut self, cost: Micros, tokens: u64) {
        self.settled = true;
        let gate = self.gate.clone();
        let call_id = self.call_id.clone();
        let held = std::mem::take(&mut self.held);
        let tpm = std::mem::take(&mut self.tpm);
        let amount = self.amount;
        gate.alerts.tracker().clone().spawn(async move {
            settle_now(&gate, &call_id, held, amount, tpm, cost, tokens).await;
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Only reached when the call's task unwound: give the hold back; the ledger row (if
        // any) is the call's own business. The token draw stays at its estimate.
        tracing::warn!(call_id = %self.call_id, "A call ended without settling its budget hold; releasing it");
        let estimate = self.tpm.first().map_or(0, |t| t.amount as u64);
        self.spawn_settle(Micros::ZERO, estimate);
    }
}

async fn settle_now(
    gate: &Gatekeeper,
    call_id: &str,
    held: Vec<(usize, String, Option<Duration>, String)>,
    amount: i64,
    tpm: Vec<RateCharge>,
    cost: Micros,
    tokens: u64,
) {
    if !held.is_empty() {
        let keys: Vec<(String, Option<Duration>)> = held
            .iter()
            .map(|(_, k, ttl, _)| (k.clone(), *ttl))
            .collect();
        match gate.counters.settle(call_id, &keys, cost.0).await {
            Ok(after) => {
                if cost.0 > amount {
                    for ((index, key, ttl, id), value) in held.iter().zip(after) {
                        if let Some(value) = value {
                            gate.check_alerts(*index, key, id, value, *ttl);
                        }
                    }
                }
            }
            Err(err) => tracing::error!(
                error = %err,
                held = %Micros(amount),
                actual = %cost,
                "Cannot settle a budget hold; it counts until it expires, and the real cost is in the ledger"
            ),
        }
    }
    if !tpm.is_empty() {
        let corrections: Vec<RateCharge> = tpm
            .into_iter()
            .filter(|c| c.amount != tokens as i64)
            .map(|c| RateCharge {
                amount: tokens as i64 - c.amount,
                ..c
            })
            .collect();
        if !corrections.is_empty() {
            if let Err(err) = gate.counters.correct(&corrections).await {
                tracing::warn!(error = %err, "Cannot correct token-per-minute buckets");
            }
        }
    }
}

/// A budget counter's key. (Named `budget:`, not the `b:` of the string counters before
/// holds existed: an old counter left in Redis must not be read as the new kind.)
fn budget_key(name: &str, id: &str, window_id: &str) -> String {
    format!("budget:{name}:{id}:{window_id}")
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
                digits(&[
                    (now.year(), 4),
                    (now.month() as i32, 2),
                    (now.day() as i32, 2),
                ]),
                start,
                Some(Duration::from_secs(2 * 24 * 3600)),
            )
        }
        BudgetWindow::Month => {
            let start = Utc
                .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                .single();
            (
                digits(&[(now.year(), 4), (now.month() as i32, 2)]),
                start,
                Some(Duration::from_secs(32 * 24 * 3600)),
            )
        }
        BudgetWindow::Total => ("all".to_owned(), None, None),
    }
}

/// Zero-padded numbers side by side (`20261123`), without chrono's format machinery: window
/// ids are made for every budget of every request.
fn digits(parts: &[(i32, usize)]) -> String {
    let mut out = String::with_capacity(8);
    for &(value, width) in parts {
        let value = value.unsigned_abs();
        for i in (0..width).rev() {
            let d = (value / 10u32.pow(i as u32)) % 10;
            out.push(char::from(b'0' + d as u8));
        }
    }
    out
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
