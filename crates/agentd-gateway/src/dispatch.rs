//! Walking a model's fallback chain: pick a deployment (balancing), ask its breaker, call,
//! retry with backoff on the same deployment while the retry budget allows, move on to the
//! next deployment, then to the fallback models — all before any byte of the answer has
//! reached the client. Providers return a stream only once its first event is ready, so a
//! failure before that is an `Err` here and can still be retried; after it, the stream is the
//! client's and a failure ends it with an error event (see `routes/chat.rs`).

use crate::call::Outcome as CallOutcome;
use crate::models::{Deployment, ModelRoute};
use crate::resilience::{backoff, Outcome, Permit};
use crate::AppState;
use agentd_config::FallbackOn;
use agentd_core::{ApiError, ErrorKind};
use agentd_providers::{ChatRequest, ChatResponse, JsonResponse, ProviderError};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub(crate) const RETRIES: &str = "agentd_retries_total";
pub(crate) const FALLBACKS: &str = "agentd_fallbacks_total";

/// A successful call.
pub(crate) struct Served<T> {
    pub response: T,
    pub deployment: Arc<Deployment>,
    /// When the successful attempt started (time to first token is measured from here).
    pub started: Instant,
    /// The breaker's permit, still to be recorded: at once for a whole answer, when it ends
    /// for a stream (a stream that dies midway is a failure of the deployment, not a success
    /// at its first event).
    pub permit: Permit,
    /// Time to the answer (a whole one) or to the first event (a stream).
    pub ttft: Duration,
}

impl<T> Served<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Served<U> {
        Served {
            response: f(self.response),
            deployment: self.deployment,
            started: self.started,
            permit: self.permit,
            ttft: self.ttft,
        }
    }
}

/// Every option failed, or the failure was not one to retry.
pub(crate) struct Failed {
    pub error: ApiError,
    /// The deployment of the last attempt; `None` when no provider was called at all.
    pub deployment: Option<Arc<Deployment>>,
    /// How the call ended, for the ledger and metrics.
    pub outcome: CallOutcome,
}

/// Which `fallback_on` class a failure belongs to, and whether it says the deployment is
/// unhealthy (a context-window error moves on to a bigger model but is not the deployment's
/// fault). `None`: the client's request is at fault; answer it as is.
fn classify(err: &ProviderError) -> Option<(Class, bool)> {
    if let ProviderError::Status {
        status: 400 | 413 | 422,
        message,
        ..
    } = err
    {
        if is_context_window(message) {
            return Some((Class::ContextWindow, false));
        }
    }
    // Which failures are the provider's and transient is `is_retryable`'s call; here they are
    // only sorted into the `fallback_on` classes.
    if !err.is_retryable() {
        return None;
    }
    let class = match err {
        ProviderError::Connect(_) => Class::Connect,
        ProviderError::Timeout { .. } => Class::Timeout,
        ProviderError::Status { status: 429, .. } => Class::RateLimit,
        ProviderError::Status { .. }
        | ProviderError::Malformed(_)
        | ProviderError::StreamCut(_) => Class::ServerError,
        ProviderError::Unsupported(_)
        | ProviderError::InvalidRequest(_)
        | ProviderError::Config(_) => return None,
    };
    Some((class, true))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    RateLimit,
    ServerError,
    Timeout,
    Connect,
    ContextWindow,
}

impl Class {
    fn allowed(self, on: &FallbackOn) -> bool {
        match self {
            Class::RateLimit => on.rate_limit,
            Class::ServerError => on.server_error,
            Class::Timeout => on.timeout,
            Class::Connect => on.connect,
            Class::ContextWindow => on.context_window,
        }
    }
}

/// Providers word it differently: OpenAI `context_length_exceeded` / "maximum context length",
/// Anthropic "prompt is too long", vLLM "maximum model length".
fn is_context_window(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "maximum model length",
        "too many tokens",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

fn retry_after(err: &ProviderError) -> Option<Duration> {
    match err {
        ProviderError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// Calls `request` through `route`'s chain. No new attempt starts once `client` is cancelled
/// (the client went away); an attempt in flight is let finish (see `call.rs`).
pub(crate) async fn chat(
    state: &AppState,
    route: &Arc<ModelRoute>,
    request: ChatRequest,
    client: &CancellationToken,
) -> Result<Served<ChatResponse>, Failed> {
    run(state, route, client, |d| {
        let mut req = request.clone();
        req.upstream_model.clone_from(&d.model);
        let provider = d.provider.clone();
        async move { provider.chat(req).await }
    })
    .await
}

pub(crate) async fn embeddings(
    state: &AppState,
    route: &Arc<ModelRoute>,
    body: Value,
    client: &CancellationToken,
) -> Result<Served<JsonResponse>, Failed> {
    run(state, route, client, |d| {
        let body = body.clone();
        let provider = d.provider.clone();
        let model = d.model.clone();
        async move { provider.embeddings(&model, body).await }
    })
    .await
}

async fn run<T, F, Fut>(
    state: &AppState,
    route: &Arc<ModelRoute>,
    client: &CancellationToken,
    mut call: F,
) -> Result<Served<T>, Failed>
where
    F: FnMut(&Deployment) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let routing = &state.config.routing;
    let mut last: Option<(ProviderError, Arc<Deployment>)> = None;
    for (hop, r) in state.models.chain(route).iter().enumerate() {
        if hop > 0 {
            metrics::counter!(FALLBACKS, "from" => route.name.clone(), "to" => r.name.clone())
                .increment(1);
        }
        for i in r.order() {
            let d = &r.deployments[i];
            d.retry_budget.deposit();
            let mut attempt = 0u32;
            loop {
                if client.is_cancelled() {
                    return Err(gone(last.take()));
                }
                let Some(permit) = d.breaker.try_acquire() else {
                    break;
                };
                let in_flight = d.latency.start();
                let started = Instant::now();
                let result = call(d).await;
                drop(in_flight);
                let elapsed = started.elapsed();
                let err = match result {
                    Ok(response) => {
                        d.latency.observe(elapsed);
                        return Ok(Served {
                            response,
                            deployment: d.clone(),
                            started,
                            permit,
                            ttft: elapsed,
                        });
                    }
                    Err(err) => err,
                };
                d.metrics.outcome(CallOutcome::of(&err).as_str(), elapsed);
                let Some((class, unhealthy)) = classify(&err) else {
                    // The request itself is wrong: says nothing about the deployment (the
                    // permit is dropped unrecorded) and no other deployment would accept it.
                    drop(permit);
                    return Err(failed(err, d.clone()));
                };
                if unhealthy {
                    d.latency.observe(elapsed);
                    permit.record(Outcome::Failure);
                } else {
                    drop(permit);
                }
                if !class.allowed(&r.fallback_on) {
                    return Err(failed(err, d.clone()));
                }
                let retry = class != Class::ContextWindow
                    && attempt < r.max_retries
                    && d.retry_budget.try_withdraw();
                let wait = if retry {
                    backoff(
                        attempt,
                        routing.retry_backoff,
                        routing.retry_backoff_max,
                        retry_after(&err),
                        &mut rand::thread_rng(),
                    )
                } else {
                    None
                };
                tracing::info!(
                    model = %r.name,
                    deployment = %d.label(),
                    error = %err,
                    retry_in_ms = wait.map(|w| w.as_millis() as u64),
                    "Provider call failed; {}",
                    if wait.is_some() { "retrying" } else { "moving on" }
                );
                last = Some((err, d.clone()));
                match wait {
                    Some(wait) => {
                        metrics::counter!(RETRIES, "model" => r.name.clone(), "provider" => d.provider.name().to_owned())
                            .increment(1);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = client.cancelled() => return Err(gone(last.take())),
                        }
                        attempt += 1;
                    }
                    None => break,
                }
            }
        }
    }
    match last {
        Some((err, d)) => Err(failed(err, d)),
        None => Err(Failed {
            error: ApiError::new(
                ErrorKind::Unavailable,
                "no_deployment_available",
                format!(
                    "every deployment of model {:?} and of its fallbacks is unavailable (circuit breakers open; GET /admin/breakers shows them); retry shortly",
                    route.name
                ),
            )
            .with_retry_after(Duration::from_secs(1)),
            deployment: None,
            outcome: CallOutcome::BreakerOpen,
        }),
    }
}

fn failed(err: ProviderError, d: Arc<Deployment>) -> Failed {
    Failed {
        error: err.to_api_error(d.provider.name()),
        outcome: CallOutcome::of(&err),
        deployment: Some(d),
    }
}

/// The client went away between attempts: stop, naming the last deployment tried (if any).
fn gone(last: Option<(ProviderError, Arc<Deployment>)>) -> Failed {
    Failed {
        error: ApiError::new(
            ErrorKind::InvalidRequest,
            "client_closed",
            "the client closed the connection",
        ),
        deployment: last.map(|(_, d)| d),
        outcome: CallOutcome::ClientClosed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_providers::TimeoutPhase;

    fn status(status: u16, message: &str) -> ProviderError {
        ProviderError::Status {
            status,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    #[test]
    fn failures_are_classified_for_fallback_and_health() {
        assert_eq!(
            classify(&status(429, "slow down")),
            Some((Class::RateLimit, true))
        );
        assert_eq!(
            classify(&status(503, "busy")),
            Some((Class::ServerError, true))
        );
        assert_eq!(classify(&status(501, "no")), None);
        assert_eq!(classify(&status(400, "bad field")), None);
        assert_eq!(classify(&status(401, "key")), None);
        assert_eq!(
            classify(&status(
                400,
                "This model's maximum context length is 128000 tokens"
            )),
            Some((Class::ContextWindow, false))
        );
        assert_eq!(
            classify(&status(
                400,
                "prompt is too long: 210000 tokens > 200000 maximum"
            )),
            Some((Class::ContextWindow, false))
        );
        assert_eq!(
            classify(&ProviderError::Timeout {
                phase: TimeoutPhase::FirstToken
            }),
            Some((Class::Timeout, true))
        );
        assert_eq!(
            classify(&ProviderError::Connect("refused".into())),
            Some((Class::Connect, true))
        );
    }

    #[test]
    fn fallback_on_filters_classes() {
        let only_429 = FallbackOn {
            rate_limit: true,
            ..FallbackOn::default()
        };
        assert!(Class::RateLimit.allowed(&only_429));
        assert!(!Class::ServerError.allowed(&only_429));
        assert!(Class::ContextWindow.allowed(&FallbackOn::ALL));
    }
}
