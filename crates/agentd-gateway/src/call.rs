//! The call pipeline shared by chat (`/v1/chat/completions`, `/v1/messages`) and embeddings:
//! cache → admit (rate limits + budget hold) → dispatch (balancing, retries, fallbacks,
//! breakers) → settle (ledger row, budget settlement, token correction, cache fill).
//! `docs/request-path.md` draws it.
//!
//! The one decision to know: a call runs in its own tracked task, not in the client's request
//! future. The handler hands the call over and waits for the answer; if the client hangs up,
//! only the waiting is dropped. The task still ends in exactly one settlement:
//! - a client gone before the answer's head: the provider attempt in flight is let finish and
//!   recorded at its real cost with outcome `client_closed` (a provider bills a request the
//!   client abandoned, so the budget must see it); no new attempt or retry starts after the
//!   client left (a backoff is cut short);
//! - a client gone after the head of a stream: the upstream stream is dropped (the provider
//!   stops generating) and the call is charged for what was generated so far, counted with the
//!   tokenizer when the provider's usage never arrived, with outcome `client_closed`.
//!
//! So a client cannot leave a budget hold behind, and cannot erase what it spent. Drain waits
//! for these tasks (they are on the alerts' task tracker).

use crate::admission::{Ask, Caller, Ticket};
use crate::cache;
use crate::dispatch;
use crate::keys::Principal;
use crate::middleware::RequestId;
use crate::models::{Deployment, ModelRoute};
use crate::resilience;
use crate::stream::MeteredStream;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Micros, Price, SpendRecord, Usage};
use agentd_providers::{ApiFormat, ChatRequest, ChatResponse, ProviderError};
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How a call ended, for the ledger's `status` and the `outcome` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The client went away before the call ended (see the module docs for what is charged).
    ClientClosed,
    Timeout,
    /// The provider answered 429.
    RateLimited,
    /// The provider answered another error status.
    ErrorStatus,
    ConnectError,
    /// The provider's stream failed midway.
    StreamCut,
    /// The provider answered something unreadable.
    Malformed,
    /// The provider refused the request as invalid, or we could not build it.
    Rejected,
    /// Every deployment's breaker was open: no provider was called.
    BreakerOpen,
    /// The call's task ended without finishing it (a bug: logged).
    Aborted,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientClosed => "client_closed",
            Outcome::Timeout => "timeout",
            Outcome::RateLimited => "rate_limited",
            Outcome::ErrorStatus => "error_status",
            Outcome::ConnectError => "connect_error",
            Outcome::StreamCut => "stream_cut",
            Outcome::Malformed => "malformed",
            Outcome::Rejected => "rejected",
            Outcome::BreakerOpen => "breaker_open",
            Outcome::Aborted => "aborted",
        }
    }

    pub(crate) fn of(err: &ProviderError) -> Outcome {
        match err {
            ProviderError::Timeout { .. } => Outcome::Timeout,
            ProviderError::Status { status: 429, .. } => Outcome::RateLimited,
            ProviderError::Status { .. } => Outcome::ErrorStatus,
            ProviderError::Connect(_) => Outcome::ConnectError,
            ProviderError::StreamCut(_) => Outcome::StreamCut,
            ProviderError::Malformed(_) => Outcome::Malformed,
            ProviderError::InvalidRequest(_)
            | ProviderError::Unsupported(_)
            | ProviderError::Config(_) => Outcome::Rejected,
        }
    }
}

/// A new call id: the time in milliseconds (48 bits) then 80 random bits from a cryptographic
/// generator. Unguessable, so no caller can name another call's ledger row or budget hold; and
/// increasing with time, so the ledger's primary-key index grows at its end (fully random keys
/// scattered the inserts over the whole B-tree: 3× the SQLite writer's CPU, measured).
pub(crate) fn new_call_id() -> Arc<str> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    hex128(((millis & ((1u128 << 48) - 1)) << 80) | random)
}

/// `n` as 32 lowercase hex digits (without `format!`'s machinery: ids are made per request).
pub(crate) fn hex128(n: u128) -> Arc<str> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    Arc::from(std::str::from_utf8(&out).unwrap_or_default())
}

/// Who is calling and the request's identity, for admission and the ledger.
pub(crate) struct Ctx {
    pub principal: Principal,
    pub request_id: Arc<str>,
    pub session: Option<String>,
    pub tier: Option<String>,
    pub cache_wish: cache::Wish,
    /// Told what the call was charged when it settles (in-process callers: the runtime).
    pub report: Option<oneshot::Sender<crate::model_call::Charged>>,
}

pub(crate) const SESSION_HEADER: &str = "x-agentd-session";
pub(crate) const TIER_HEADER: &str = "x-agentd-tier";

impl Ctx {
    pub(crate) fn from_parts(
        principal: Principal,
        request_id: Option<RequestId>,
        headers: &HeaderMap,
    ) -> Result<Ctx, ApiError> {
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => {
                    let v = v.to_str().unwrap_or("").trim();
                    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(ApiError::invalid(
                            "invalid_header",
                            format!("the {name} header must be 1 to 128 visible ASCII characters"),
                        ));
                    }
                    Ok(Some(v.to_owned()))
                }
            }
        };
        let session = header(SESSION_HEADER)?;
        let tier = header(TIER_HEADER)?.or_else(|| principal.tier.clone());
        Ok(Ctx {
            request_id: request_id.map(|r| r.0).unwrap_or_else(|| Arc::from("")),
            session,
            tier,
            cache_wish: cache::wish(headers),
            report: None,
            principal,
        })
    }

    pub(crate) fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            session: self.session.as_deref(),
        }
    }

    /// The ledger row of a call, without the outcome fields.
    fn row(&self, call_id: &str, model: &str) -> SpendRecord {
        SpendRecord {
            id: call_id.to_owned(),
            request_id: self.request_id.to_string(),
            at: chrono::Utc::now(),
            key_id: Some(self.principal.key_id.clone()),
            tenant: self.principal.tenant.clone(),
            user: self.principal.user.clone(),
            session: self.session.clone(),
            model: model.to_owned(),
            provider: String::new(),
            deployment: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            usage_estimated: false,
            cost: Micros::ZERO,
            latency_ms: 0,
            cache_hit: false,
            status: String::new(),
        }
    }
}

/// What a call sends upstream.
pub(crate) enum Work {
    Chat(ChatRequest),
    /// An OpenAI embeddings body.
    Embeddings(Value),
}

/// A call, validated and routed, ready to run.
pub(crate) struct Call {
    pub ctx: Ctx,
    pub route: Arc<ModelRoute>,
    /// The prompt's estimated tokens (an upper bound), for admission.
    pub prompt_tokens: u64,
    /// The most output tokens the call may produce (0 for embeddings).
    pub max_output_tokens: u64,
    /// The cache entry to look up and fill, when the call may be cached.
    pub cache_key: Option<String>,
    pub work: Work,
}

impl Call {
    fn kind(&self) -> cache::Kind {
        match &self.work {
            Work::Chat(r) => cache::Kind::Chat(r.format),
            Work::Embeddings(_) => cache::Kind::Embeddings,
        }
    }
}

/// A call's answer, for the handler to send.
pub(crate) enum Answer {
    /// A whole answer: JSON, or a cached stream replayed (`sse`).
    Complete {
        body: Bytes,
        sse: bool,
        cache: &'static str,
    },
    Stream {
        stream: Box<MeteredStream>,
        cache: &'static str,
    },
}

/// Runs `call` in its own tracked task and waits for its answer (see the module docs).
pub(crate) async fn run(state: Arc<AppState>, call: Call) -> Result<Answer, ApiError> {
    let (tx, rx) = oneshot::channel();
    let client = CancellationToken::new();
    // Dropped with this future: the client went away (or the answer was delivered).
    let _gone = client.clone().drop_guard();
    let tracker = state.alerts.tracker().clone();
    tracker.spawn(async move {
        let answer = execute(&state, call, &client).await;
        deliver(tx, answer);
    });
    rx.await.unwrap_or_else(|_| {
        Err(ApiError::internal(
            "the call ended unexpectedly; see the gateway log",
        ))
    })
}

/// What the task hands the waiting handler: the answer, or — when the client is gone — the
/// settlement the answer still carries.
type Delivery = Result<(Answer, Option<Settlement>), ApiError>;

fn deliver(tx: oneshot::Sender<Result<Answer, ApiError>>, delivery: Delivery) {
    match delivery {
        Ok((answer, settlement)) => match tx.send(Ok(answer)) {
            Ok(()) => {
                if let Some(s) = settlement {
                    s.finish_complete(Outcome::Ok);
                }
            }
            Err(unsent) => {
                // The client left before the head: a whole answer is recorded as closed at
                // its real cost; a stream is dropped here (its own settlement says
                // client_closed and counts what was generated).
                drop(unsent);
                if let Some(s) = settlement {
                    s.finish_complete(Outcome::ClientClosed);
                }
            }
        },
        Err(err) => {
            let _ = tx.send(Err(err));
        }
    }
}

async fn execute(state: &Arc<AppState>, mut call: Call, client: &CancellationToken) -> Delivery {
    let started = Instant::now();
    let report = call.ctx.report.take();
    let call_id = new_call_id();
    let kind = call.kind();
    let gate = state.gate.as_ref();
    let max_life = call.route.max_life;

    // 1. The cache: a hit costs nothing and draws only a request from the rate limits.
    if let (Some(key), Some(cache)) = (call.cache_key.as_ref(), state.cache.as_ref()) {
        if let Some((usage, body)) = cache.get(key).await {
            let ticket = match gate {
                Some(g) => {
                    g.admit(
                        &call.ctx.caller(),
                        &Ask {
                            call_id: call_id.clone(),
                            tokens: 0,
                            worst: None,
                            max_life,
                        },
                    )
                    .await?
                }
                None => None,
            };
            let mut s = Settlement::new(state, &call, call_id, ticket, started);
            s.report = report;
            s.row.cache_hit = true;
            s.usage = usage;
            let sse = matches!(&call.work, Work::Chat(r) if r.stream);
            return Ok((
                Answer::Complete {
                    body,
                    sse,
                    cache: "hit",
                },
                Some(s),
            ));
        }
    }
    let cache_state = if call.cache_key.is_some() {
        "miss"
    } else {
        "skip"
    };

    // 2. Admission: rate limits and the budget hold, in one atomic step.
    let ticket = match gate {
        Some(g) => {
            let worst = g.has_budgets().then(|| {
                call.route
                    .worst_price
                    .worst_case(call.prompt_tokens, call.max_output_tokens)
            });
            g.admit(
                &call.ctx.caller(),
                &Ask {
                    call_id: call_id.clone(),
                    tokens: call.prompt_tokens,
                    worst,
                    max_life,
                },
            )
            .await?
        }
        None => None,
    };
    let mut s = Settlement::new(state, &call, call_id, ticket, started);
    s.report = report;
    if client.is_cancelled() {
        // Gone while waiting for admission: nothing was sent anywhere.
        s.row_wanted = false;
        s.finish(Usage::default(), false, Outcome::ClientClosed, None);
        return Err(client_gone());
    }

    // 3. Dispatch: balancing, retries, fallbacks, breakers.
    let route = &call.route;
    let result = match call.work {
        Work::Chat(request) => dispatch::chat(state, route, request, client)
            .await
            .map(|served| served.map(Reply::Chat)),
        Work::Embeddings(body) => dispatch::embeddings(state, route, body, client)
            .await
            .map(|served| served.map(Reply::Embeddings)),
    };

    // 4. Settle (now for whole answers and failures; streams when they end).
    match result {
        Ok(served) => {
            let d = served.deployment;
            s.served_by(&d);
            match served.response {
                Reply::Chat(ChatResponse::Complete(done)) | Reply::Embeddings(done) => {
                    served.permit.record(resilience::Outcome::Success {
                        ttft: Some(served.ttft),
                    });
                    d.metrics.outcome("ok", served.started.elapsed());
                    d.metrics.tokens(done.usage);
                    s.usage = done.usage;
                    if s.cache.is_some() {
                        s.body = Some(done.body.clone());
                    }
                    Ok((
                        Answer::Complete {
                            body: done.body,
                            sse: false,
                            cache: cache_state,
                        },
                        Some(s),
                    ))
                }
                Reply::Chat(ChatResponse::Stream(stream)) => {
                    let format = match kind {
                        cache::Kind::Chat(f) => f,
                        cache::Kind::Embeddings => ApiFormat::OpenAi,
                    };
                    let capture = state
                        .cache
                        .as_ref()
                        .filter(|_| s.cache.is_some())
                        .map(|c| c.max_entry_bytes);
                    Ok((
                        Answer::Stream {
                            stream: Box::new(MeteredStream::new(
                                stream,
                                format,
                                d,
                                (served.permit, served.ttft),
                                served.started,
                                s,
                                capture,
                            )),
                            cache: cache_state,
                        },
                        None,
                    ))
                }
            }
        }
        Err(failed) => {
            if let Some(d) = failed.deployment.as_deref() {
                s.served_by(d);
                // Nothing billable came back from a failed attempt.
                s.price = None;
            }
            let reached = failed.deployment.is_some();
            if !reached {
                s.row_wanted = false;
            }
            s.finish(Usage::default(), false, failed.outcome, None);
            Err(failed.error)
        }
    }
}

fn client_gone() -> ApiError {
    ApiError::new(
        ErrorKind::InvalidRequest,
        "client_closed",
        "the client closed the connection",
    )
}

/// What the provider sent back, before it is an [`Answer`].
#[allow(clippy::large_enum_variant)] // Lives for one match, never stored.
enum Reply {
    Chat(ChatResponse),
    Embeddings(agentd_providers::JsonResponse),
}

/// The end of an admitted call, whatever happens: settles the budget hold and the token draw,
/// writes the ledger row, fills the cache. Exactly once: [`Settlement::finish`] consumes it, and
/// a settlement dropped unfinished (a panic unwinding the call's task) finishes itself as
/// `aborted` with no cost, releasing the hold.
pub(crate) struct Settlement {
    state: Arc<AppState>,
    row: SpendRecord,
    price: Option<Price>,
    ticket: Option<Ticket>,
    started: Instant,
    cache: Option<(String, cache::Kind)>,
    /// A whole answer's usage and body, recorded when it is delivered.
    usage: Usage,
    body: Option<Bytes>,
    /// False when the call reached no provider and was no cache hit: no ledger row.
    row_wanted: bool,
    finished: bool,
    /// Told the usage and cost once settled (see `Ctx::report`).
    report: Option<oneshot::Sender<crate::model_call::Charged>>,
}

impl Settlement {
    fn new(
        state: &Arc<AppState>,
        call: &Call,
        call_id: Arc<str>,
        ticket: Option<Ticket>,
        started: Instant,
    ) -> Settlement {
        Settlement {
            state: state.clone(),
            row: call.ctx.row(&call_id, &call.route.name),
            price: None,
            ticket,
            started,
            cache: call.cache_key.clone().map(|k| (k, call.kind())),
            usage: Usage::default(),
            body: None,
            row_wanted: true,
            finished: false,
            report: None,
        }
    }

    fn served_by(&mut self, d: &Deployment) {
        self.row.provider = d.provider.name().to_owned();
        self.row.deployment.clone_from(&d.model);
        self.price = d.price;
    }

    /// Finishes a whole answer (or a cache hit) with the usage and body it carries.
    fn finish_complete(mut self, outcome: Outcome) {
        let usage = self.usage;
        let body = self.body.take();
        // A cache hit is already in the cache; a whole answer goes in.
        if self.row.cache_hit {
            self.cache = None;
        }
        self.finish(usage, false, outcome, body.as_deref());
    }

    /// `usage` is what the call consumed (zero when it failed before any answer).
    pub(crate) fn finish(
        mut self,
        usage: Usage,
        estimated: bool,
        outcome: Outcome,
        body: Option<&[u8]>,
    ) {
        self.finished = true;
        let cost = self.price.map(|p| p.cost(&usage)).unwrap_or(Micros::ZERO);
        if let Some(ticket) = self.ticket.take() {
            ticket.settle(cost, if self.row.cache_hit { 0 } else { usage.total() });
        }
        if let (Some(body), Some((key, kind)), Some(cache), Outcome::Ok | Outcome::ClientClosed) =
            (body, self.cache.take(), self.state.cache.as_ref(), outcome)
        {
            cache.put(key, kind, usage, body);
        }
        let report = self.report.take();
        if !self.row_wanted {
            if let Some(report) = report {
                let _ = report.send(crate::model_call::Charged {
                    usage,
                    cost,
                    row: None,
                });
            }
            return;
        }
        let mut row = std::mem::replace(&mut self.row, placeholder_row());
        row.at = chrono::Utc::now();
        row.input_tokens = usage.input_tokens;
        row.output_tokens = usage.output_tokens;
        row.cached_input_tokens = usage.cached_input_tokens;
        row.usage_estimated = estimated;
        row.cost = cost;
        row.latency_ms = self.started.elapsed().as_millis() as u64;
        row.status = outcome.as_str().to_owned();
        if outcome == Outcome::ClientClosed {
            metrics::counter!(CLIENT_CLOSED).increment(1);
        }
        // An in-process caller (a run's model step) writes its row itself, durably, before it
        // journals the step; if it is gone, the row goes the batched way.
        let row = match report {
            Some(report) => match report.send(crate::model_call::Charged {
                usage,
                cost,
                row: Some(row),
            }) {
                Ok(()) => return,
                Err(unsent) => unsent.row,
            },
            None => Some(row),
        };
        if let Some(row) = row {
            self.state.ledger.record(row);
        }
    }
}

/// Calls whose client went away before they ended.
pub(crate) const CLIENT_CLOSED: &str = "agentd_calls_client_closed_total";

fn placeholder_row() -> SpendRecord {
    SpendRecord {
        id: String::new(),
        request_id: String::new(),
        at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        key_id: None,
        tenant: agentd_core::TenantId::new(""),
        user: None,
        session: None,
        model: String::new(),
        provider: String::new(),
        deployment: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cached_input_tokens: 0,
        usage_estimated: false,
        cost: Micros::ZERO,
        latency_ms: 0,
        cache_hit: false,
        status: String::new(),
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        tracing::error!(call_id = %self.row.id, "A call ended without settling; recording it as aborted");
        let this = Settlement {
            state: self.state.clone(),
            row: std::mem::replace(&mut self.row, placeholder_row()),
            price: None,
            ticket: self.ticket.take(),
            started: self.started,
            cache: None,
            usage: Usage::default(),
            body: None,
            row_wanted: self.row_wanted,
            finished: false,
            report: self.report.take(),
        };
        self.finished = true;
        this.finish(Usage::default(), false, Outcome::Aborted, None);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn call_ids_grow_with_time_and_differ() {
        let a = super::new_call_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::new_call_id();
        let c = super::new_call_id();
        assert!(a < b, "{a} {b}");
        assert_ne!(b, c);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn hex128_matches_format() {
        for n in [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ] {
            assert_eq!(&*super::hex128(n), format!("{n:032x}"));
        }
    }
}
