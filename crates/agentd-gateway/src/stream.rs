//! A provider's stream on its way to the client: metered, batched, and settled when it ends.

use crate::call::{Outcome, Settlement};
use crate::metrics as m;
use crate::models::Deployment;
use crate::resilience::{self, Permit};
use agentd_providers::{error_frame, ApiFormat, ChatStream};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// How many scheduler turns in a row may bring nothing before the gathered events are written.
/// Measured: hyper's client connection task delivers the next chunk only on the second turn
/// (the first wake-up reaches this task before the connection task has run), so one empty turn
/// is normal and two mean the upstream has nothing more for now.
const MAX_EMPTY_YIELDS: u8 = 2;

/// Most bytes gathered into one write.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The provider's stream on its way to the client: times the first event, turns a failure
/// midway into the API's error event, and records usage when the stream ends — also when the
/// client goes away first (drop).
///
/// It also batches writes. hyper's client hands over an upstream body one chunk per wake-up of
/// its connection task, so events that arrived together in one read would leave as one
/// `writev` each (a syscall and a TCP segment per event: half of the gateway's CPU on a fast
/// stream). After the first event — sent at once, for time to first byte — the stream yields
/// to the scheduler while the upstream keeps delivering, and writes what it gathered in one go
/// once [`MAX_EMPTY_YIELDS`] turns brought nothing new. An event that arrives alone waits that
/// many scheduler turns (microseconds).
pub(crate) struct MeteredStream {
    /// `None` once dropped (the count may move to a blocking thread).
    inner: Option<ChatStream>,
    format: ApiFormat,
    deployment: Arc<Deployment>,
    /// The breaker's permit and the time to the first event: recorded when the stream ends
    /// (success when it completes, failure when the provider fails midway; left unrecorded
    /// when the client goes away).
    permit: Option<(Permit, std::time::Duration)>,
    started: Instant,
    first_sent: bool,
    /// The inner stream is over (or failed); what is in `batch` is the last of it.
    ended: bool,
    outcome: Outcome,
    batch: BytesMut,
    /// Frames arrived since the last yield, so more may be coming.
    fresh: bool,
    empty_yields: u8,
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Settles budgets and writes the ledger row when the stream ends (or is dropped).
    finish: Option<Settlement>,
    /// A copy of every byte sent, for the cache; `None` when not caching or over the limit.
    capture: Option<BytesMut>,
    capture_limit: usize,
}

impl MeteredStream {
    pub(crate) fn new(
        inner: ChatStream,
        format: ApiFormat,
        deployment: Arc<Deployment>,
        permit: (Permit, std::time::Duration),
        started: Instant,
        finish: Settlement,
        capture_limit: Option<usize>,
    ) -> Self {
        MeteredStream {
            finish: Some(finish),
            capture: capture_limit.map(|_| BytesMut::new()),
            capture_limit: capture_limit.unwrap_or(0),
            inner: Some(inner),
            format,
            deployment,
            permit: Some(permit),
            started,
            first_sent: false,
            ended: false,
            outcome: Outcome::Ok,
            batch: BytesMut::new(),
            fresh: false,
            empty_yields: 0,
            yielding: None,
        }
    }

    fn take_batch(&mut self) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.empty_yields = 0;
        let out = self.batch.split().freeze();
        self.captured(&out);
        Poll::Ready(Some(Ok(out)))
    }

    fn captured(&mut self, bytes: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            if c.len() + bytes.len() > self.capture_limit {
                self.capture = None;
            } else {
                c.extend_from_slice(bytes);
            }
        }
    }
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return if this.batch.is_empty() {
                    Poll::Ready(None)
                } else {
                    this.take_batch()
                };
            }
            if let Some(yielding) = this.yielding.as_mut() {
                if yielding.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.yielding = None;
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if !this.first_sent {
                        this.first_sent = true;
                        this.deployment.metrics.first_token(this.started.elapsed());
                        this.captured(&frame);
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.batch.extend_from_slice(&frame);
                    this.fresh = true;
                    if this.batch.len() >= MAX_BATCH_BYTES {
                        return this.take_batch();
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.ended = true;
                    this.outcome = Outcome::of(&err);
                    let labels = &this.deployment.metrics;
                    let api = err.to_api_error(&labels.provider);
                    tracing::warn!(provider = %labels.provider, model = %labels.model, error = %err, "Stream failed midway; sent an error event");
                    // A failure midway says as much about the deployment's health as a failed
                    // start (a client-side error says nothing: the permit is dropped).
                    if let Some((permit, _)) = this.permit.take() {
                        if err.is_retryable() {
                            permit.record(resilience::Outcome::Failure);
                        }
                    }
                    metrics::counter!(m::ERRORS, "kind" => api.kind.as_str(), "fault" => api.kind.fault().as_str())
                        .increment(1);
                    this.batch
                        .extend_from_slice(&error_frame(this.format, &api));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    if let Some((permit, ttft)) = this.permit.take() {
                        permit.record(resilience::Outcome::Success { ttft: Some(ttft) });
                    }
                }
                Poll::Pending if this.batch.is_empty() => return Poll::Pending,
                Poll::Pending if this.fresh || this.empty_yields < MAX_EMPTY_YIELDS => {
                    this.empty_yields = if this.fresh { 0 } else { this.empty_yields + 1 };
                    this.fresh = false;
                    this.yielding = Some(Box::pin(tokio::task::yield_now()));
                }
                Poll::Pending => return this.take_batch(),
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        let outcome = if self.ended {
            self.outcome
        } else {
            Outcome::ClientClosed
        };
        let labels = self.deployment.metrics.clone();
        labels.outcome(outcome.as_str(), self.started.elapsed());
        let (Some(inner), Some(finish)) = (self.inner.take(), self.finish.take()) else {
            return;
        };
        let body = self.capture.take();
        // Only what the provider did not report is counted with the tokenizer.
        let needs_count = inner.usage_estimated();
        let settle = move || {
            let usage = inner.usage();
            let estimated = inner.usage_estimated();
            drop(inner);
            labels.tokens(usage);
            finish.finish(usage, estimated, outcome, body.as_deref());
        };
        if !needs_count {
            settle();
        } else {
            // Counting what the provider did not report runs the tokenizer (building it
            // takes ~250 ms once, counting a long stream tens of ms): never on a runtime
            // worker thread, where it would stall every request that thread serves.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(settle);
                }
                Err(_) => settle(),
            }
        }
    }
}
