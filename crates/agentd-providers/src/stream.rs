//! [`ChatStream`]: the provider's event stream turned into SSE frames in the client's format,
//! with token accounting, the first-token and whole-stream timeouts, and cut detection.
//!
//! Each upstream event goes through two stages: an [`Upstream`] tracker that parses just what
//! accounting needs (usage, the generated text, the terminal event, error events) and rejects
//! invalid JSON, then an [`Output`] that either forwards the event as is (same format) or hands
//! it to a translator. Keeping the tracker separate means usage is computed the same way whether
//! or not we translate.
//!
//! Usage is the provider's when it reports it. The tracker also keeps the text generated so far
//! (appending borrowed slices into one `String`), so that a stream without usage, or cut before
//! its usage event, is still accounted: its output is tokenized when [`ChatStream::usage`] is
//! asked, and its input counted from the request, which the stream holds (a reference to the
//! bytes already sent, no copy) until the provider reports the input side.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use agentd_core::Usage;
use bytes::Bytes;
use futures::Stream;
use hyper::body::{Body as _, Incoming};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::{Instant, Sleep};

use crate::http::Deadlines;
use crate::sse::{self, SseEvent, SseParser};
use crate::tokens::{self, Generated};
use crate::translate::{self, AnthropicToOpenAiStream, OpenAiToAnthropicStream};
use crate::{anthropic, openai, ApiFormat, ChatRequest, JsonResponse, ProviderError, TimeoutPhase};

/// How long to wait for the end of the body after the terminal event.
const DRAIN_GRACE: Duration = Duration::from_millis(20);

/// What a tracker saw in one upstream event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A content delta (text, reasoning or tool call); its text went to the tracker's
    /// [`Generated`].
    Content,
    /// Anything else worth forwarding (role chunk, block start/stop, ping, …).
    Other,
    /// OpenAI's usage-only chunk (`choices: []` + `usage`).
    UsageOnly,
    /// The terminal event (`[DONE]` / `message_stop`).
    Done,
    /// An error event; `status` is the HTTP status its error type stands for.
    Error { status: u16, message: String },
}

/// Parses upstream events of one wire format for accounting.
pub(crate) enum Upstream {
    OpenAi(openai::StreamTracker),
    Anthropic(anthropic::StreamTracker),
}

impl Upstream {
    pub(crate) fn new(format: ApiFormat) -> Self {
        match format {
            ApiFormat::OpenAi => Upstream::OpenAi(openai::StreamTracker::default()),
            ApiFormat::Anthropic => Upstream::Anthropic(anthropic::StreamTracker::default()),
        }
    }

    fn observe(&mut self, event: &SseEvent) -> Result<Observed, ProviderError> {
        match self {
            Upstream::OpenAi(t) => t.observe(event),
            Upstream::Anthropic(t) => t.observe(event),
        }
    }

    /// The wire format of the upstream's events (and of the request it was sent).
    fn format(&self) -> ApiFormat {
        match self {
            Upstream::OpenAi(_) => ApiFormat::OpenAi,
            Upstream::Anthropic(_) => ApiFormat::Anthropic,
        }
    }

    /// What the provider reported so far; fields it did not report are 0.
    fn usage(&self) -> Option<Usage> {
        match self {
            Upstream::OpenAi(t) => t.usage(),
            Upstream::Anthropic(t) => t.usage(),
        }
    }

    /// The provider reported the input side.
    fn input_reported(&self) -> bool {
        match self {
            Upstream::OpenAi(t) => t.input_reported(),
            Upstream::Anthropic(t) => t.input_reported(),
        }
    }

    /// The provider reported the final output count (not just Anthropic's opening estimate).
    fn output_reported(&self) -> bool {
        match self {
            Upstream::OpenAi(t) => t.output_reported(),
            Upstream::Anthropic(t) => t.output_reported(),
        }
    }

    fn generated(&self) -> &Generated {
        match self {
            Upstream::OpenAi(t) => t.generated(),
            Upstream::Anthropic(t) => t.generated(),
        }
    }
}

/// A text field of a stream event, read leniently: a string (borrowed when it has no escapes),
/// or anything else (number, object, …) taken as no text. Accounting must never fail a stream
/// that the client could read just because a field has an unexpected type.
#[derive(Debug, Default)]
pub(crate) struct Text<'a>(pub(crate) Option<std::borrow::Cow<'a, str>>);

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(std::borrow::Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(std::borrow::Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(std::borrow::Cow::Owned(v))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

/// How upstream events become client frames.
pub(crate) enum Output {
    /// Same format: forward each event (dropping the usage-only chunk if the client did not ask).
    Passthrough { drop_usage_only: bool },
    /// OpenAI upstream, Anthropic client.
    ToAnthropic(Box<OpenAiToAnthropicStream>),
    /// Anthropic upstream, OpenAI client.
    ToOpenAi(Box<AnthropicToOpenAiStream>),
}

impl Output {
    pub(crate) fn new(upstream: ApiFormat, req: &ChatRequest) -> Self {
        match (upstream, req.format) {
            (ApiFormat::OpenAi, ApiFormat::OpenAi) => Output::Passthrough {
                drop_usage_only: !req.include_usage,
            },
            (ApiFormat::Anthropic, ApiFormat::Anthropic) => Output::Passthrough {
                drop_usage_only: false,
            },
            (ApiFormat::OpenAi, ApiFormat::Anthropic) => Output::ToAnthropic(Box::new(
                OpenAiToAnthropicStream::new(&req.public_model).with_input_estimate(
                    crate::tokens::estimate_prompt_tokens(ApiFormat::Anthropic, &req.body),
                ),
            )),
            (ApiFormat::Anthropic, ApiFormat::OpenAi) => Output::ToOpenAi(Box::new(
                AnthropicToOpenAiStream::new(&req.public_model, req.include_usage),
            )),
        }
    }
}

/// Where the bytes come from.
pub(crate) enum Source {
    /// A provider's HTTP response body.
    Http(Incoming),
    /// The in-process mock's planned frames, one complete SSE frame per item.
    Mock(MockFrames),
}

impl Source {
    /// `Err` = the connection broke (text says how).
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
        match self {
            Source::Http(body) => loop {
                match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                    None => return Poll::Ready(None),
                    Some(Ok(frame)) => {
                        // Trailers carry nothing we forward.
                        if let Ok(data) = frame.into_data() {
                            return Poll::Ready(Some(Ok(data)));
                        }
                    }
                    Some(Err(e)) => {
                        return Poll::Ready(Some(Err(format!(
                            "the connection failed mid-stream: {}",
                            crate::error::describe(&e)
                        ))))
                    }
                }
            },
            Source::Mock(frames) => frames.poll_next(cx),
        }
    }

    fn frames_are_events(&self) -> bool {
        match self {
            Source::Http(_) => false,
            Source::Mock(_) => true,
        }
    }
}

/// The mock's frames, each released after its delay; then a simulated cut if planned.
pub(crate) struct MockFrames {
    frames: std::vec::IntoIter<(Duration, Bytes)>,
    waiting: Option<Bytes>,
    timer: Option<Pin<Box<Sleep>>>,
    cut: bool,
    ended: bool,
}

impl MockFrames {
    pub(crate) fn new(frames: Vec<(Duration, Bytes)>, cut: bool) -> Self {
        Self {
            frames: frames.into_iter(),
            waiting: None,
            timer: None,
            cut,
            ended: false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
        if self.waiting.is_none() {
            match self.frames.next() {
                None if self.ended => return Poll::Ready(None),
                None => {
                    self.ended = true;
                    return Poll::Ready(
                        self.cut
                            .then(|| Err("the connection was reset mid-stream".to_owned())),
                    );
                }
                // The default mock has no delays: no timer at all on that path.
                Some((delay, frame)) if delay.is_zero() => return Poll::Ready(Some(Ok(frame))),
                Some((delay, frame)) => {
                    let at = Instant::now() + delay;
                    match &mut self.timer {
                        Some(timer) => timer.as_mut().reset(at),
                        None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                    self.waiting = Some(frame);
                }
            }
        }
        if let Some(timer) = &mut self.timer {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(self.waiting.take().map(Ok))
    }
}

/// Complete SSE frames in the request's format, ready to write to the client.
///
/// Ends after the terminal frame (`data: [DONE]` / `message_stop`), or after an upstream error
/// event forwarded as an error frame. Yields `Err` once if the upstream fails midway (cut
/// connection, EOF before the terminal event, invalid JSON, timeout), then ends.
pub struct ChatStream {
    source: Source,
    parser: SseParser,
    upstream: Upstream,
    output: Output,
    pending: VecDeque<Bytes>,
    failure: Option<ProviderError>,
    timer: Pin<Box<Sleep>>,
    timer_phase: TimeoutPhase,
    total_deadline: Instant,
    got_bytes: bool,
    /// The terminal (or error) event was seen: EOF after it is normal.
    complete: bool,
    /// Nothing more will be read from the source.
    finished: bool,
    /// Frames handed to the caller so far.
    yielded: usize,
    /// The end of the body was awaited after the terminal event (see `poll_drain`).
    drain_started: bool,
    drained: bool,
    /// The request as sent upstream (a reference to the same bytes, no copy), to count the
    /// prompt if the provider never reports it. Released as soon as it does.
    request: Bytes,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not `usage()`: formatting must not run the tokenizer.
        f.debug_struct("ChatStream")
            .field("reported_usage", &self.upstream.usage())
            .field("usage_estimated", &self.usage_estimated())
            .field("complete", &self.complete)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    pub(crate) fn new(
        source: Source,
        upstream: Upstream,
        output: Output,
        deadlines: &Deadlines,
        request: Bytes,
    ) -> Self {
        let (deadline, phase) = deadlines.before_first_byte();
        Self {
            source,
            parser: SseParser::new(),
            upstream,
            output,
            pending: VecDeque::new(),
            failure: None,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            timer_phase: phase,
            total_deadline: deadlines.total,
            got_bytes: false,
            complete: false,
            finished: false,
            yielded: 0,
            drain_started: false,
            drained: false,
            request,
        }
    }

    /// Token usage so far; final once the stream ended (completed, failed, or dropped when the
    /// client went away). Each side is the provider's own report when it sent one. Otherwise:
    /// the output is the o200k_base count of the text generated so far (or, when the provider
    /// reported an opening count but not the final one, the larger of the two), and the input
    /// the o200k_base count of the prompt plus the chat format's overhead (see [`tokens`]).
    ///
    /// Counting runs the tokenizer (and builds it on first use: about 250 ms and 45 MB, once
    /// per process), so call this once, when the stream is over; a stream whose provider
    /// reported usage costs nothing here.
    pub fn usage(&self) -> Usage {
        let reported = self.upstream.usage().unwrap_or_default();
        let input_tokens = if self.upstream.input_reported() {
            reported.input_tokens
        } else {
            self.prompt_tokens()
        };
        let output_tokens = if self.upstream.output_reported() {
            reported.output_tokens
        } else {
            reported
                .output_tokens
                .max(self.upstream.generated().tokens())
        };
        Usage {
            input_tokens,
            output_tokens,
            cached_input_tokens: reported.cached_input_tokens,
        }
    }

    /// Whether [`usage`](Self::usage) counted or estimated any side itself instead of taking
    /// the provider's numbers: the provider sent no usage, or the stream ended (cut, timed out,
    /// client gone) before the event with the final counts.
    pub fn usage_estimated(&self) -> bool {
        !(self.upstream.input_reported() && self.upstream.output_reported())
    }

    /// The prompt's tokens, counted from the request sent upstream.
    fn prompt_tokens(&self) -> u64 {
        match serde_json::from_slice::<Value>(&self.request) {
            Ok(body) => tokens::count_prompt_tokens(self.upstream.format(), &body),
            // We serialized it ourselves; if it is unreadable anyway, fall back to its size.
            Err(_) => estimate_tokens(self.request.len()),
        }
    }

    /// Whether the stream reached its terminal event (or a forwarded upstream error event).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Reads until the first frame is ready. A failure before it is returned as `Err`, so the
    /// caller can still retry or fall back: nothing has reached the client yet.
    pub(crate) async fn prefetch(mut self) -> Result<Self, ProviderError> {
        futures::future::poll_fn(|cx| self.poll_fill(cx)).await;
        if self.pending.is_empty() {
            if let Some(err) = self.failure.take() {
                return Err(err);
            }
        }
        Ok(self)
    }

    /// Reads the source until a frame or a failure is ready, or the stream is over.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if !self.pending.is_empty() || self.failure.is_some() {
                return Poll::Ready(());
            }
            if self.finished {
                if self.complete && !self.drained {
                    return self.poll_drain(cx);
                }
                return Poll::Ready(());
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                self.fail(ProviderError::Timeout {
                    phase: self.timer_phase,
                });
                continue;
            }
            match self.source.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if !self.got_bytes {
                        self.got_bytes = true;
                        if self.timer_phase != TimeoutPhase::Total {
                            self.timer.as_mut().reset(self.total_deadline);
                            self.timer_phase = TimeoutPhase::Total;
                        }
                    }
                    self.process(chunk);
                }
                Poll::Ready(Some(Err(reason))) => self.fail(ProviderError::StreamCut(reason)),
                Poll::Ready(None) => {
                    self.finished = true;
                    if !self.complete {
                        let reason = if self.parser.has_partial() {
                            "the provider closed the stream in the middle of an event"
                        } else {
                            "the provider closed the stream before its final event"
                        };
                        self.failure = Some(ProviderError::StreamCut(reason.to_owned()));
                    }
                }
            }
        }
    }

    /// After the terminal event, waits briefly for the end of the body. It normally follows
    /// the last event within microseconds; reading it lets the connection go back to the pool
    /// instead of being closed when the response is dropped. The wait is bounded so that a
    /// server which keeps the body open cannot hold the client's stream open too.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.drain_started {
            self.drain_started = true;
            let grace = (Instant::now() + DRAIN_GRACE).min(self.total_deadline);
            self.timer.as_mut().reset(grace);
        }
        loop {
            match self.source.poll_next(cx) {
                // Anything after the terminal event is ignored.
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(_)) | None) => break,
                Poll::Pending => {
                    if self.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        self.drained = true;
        Poll::Ready(())
    }

    fn fail(&mut self, err: ProviderError) {
        self.finished = true;
        self.failure = Some(err);
    }

    fn process(&mut self, chunk: Bytes) {
        let events = self.parser.push(&chunk);
        // A mock frame is exactly one event: forward its bytes instead of re-encoding them.
        let raw = (self.source.frames_are_events() && events.len() == 1).then_some(chunk);
        for event in events {
            if self.complete {
                break;
            }
            let observed = match self.upstream.observe(&event) {
                Ok(observed) => observed,
                Err(err) => return self.fail(err),
            };
            if !self.request.is_empty() && self.upstream.input_reported() {
                // Anthropic reports the input at the start: the prompt is no longer needed.
                self.request = Bytes::new();
            }
            if let Observed::Error { status, message } = &observed {
                self.complete = true;
                self.finished = true;
                if self.yielded == 0 {
                    // Nothing reached the client: report it like the HTTP error it stands for,
                    // so the caller may retry or fall back.
                    self.pending.clear();
                    self.failure = Some(ProviderError::Status {
                        status: *status,
                        message: message.clone(),
                        retry_after: None,
                    });
                    return;
                }
            }
            let translated = match &mut self.output {
                Output::Passthrough { drop_usage_only } => {
                    if !(*drop_usage_only && observed == Observed::UsageOnly) {
                        let frame = match &raw {
                            Some(bytes) => bytes.clone(),
                            None => sse::frame(event.event.as_deref(), &event.data),
                        };
                        self.pending.push_back(frame);
                    }
                    Ok(())
                }
                Output::ToAnthropic(t) => t.push(&event).map(|frames| self.pending.extend(frames)),
                Output::ToOpenAi(t) => t.push(&event).map(|frames| self.pending.extend(frames)),
            };
            if let Err(err) = translated {
                return self.fail(ProviderError::Malformed(err.to_string()));
            }
            match observed {
                Observed::Done | Observed::Error { .. } => {
                    self.complete = true;
                    self.finished = true;
                }
                Observed::Content | Observed::Other | Observed::UsageOnly => {}
            }
        }
    }
}

impl Stream for ChatStream {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.poll_fill(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(frame) = this.pending.pop_front() {
            this.yielded += 1;
            return Poll::Ready(Some(Ok(frame)));
        }
        Poll::Ready(this.failure.take().map(Err))
    }
}

/// ceil(bytes / 4): the usual rule of thumb for English text and JSON.
pub(crate) fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// A complete (non-stream) answer from a provider speaking `upstream`, in the request's format.
/// Same format: the bytes are returned untouched and only `usage` is parsed (which also
/// validates the JSON). Otherwise the answer is translated.
pub(crate) fn complete(
    upstream: ApiFormat,
    req: &ChatRequest,
    body: Bytes,
    request_len: usize,
) -> Result<JsonResponse, ProviderError> {
    let malformed = |e: serde_json::Error| {
        ProviderError::Malformed(format!("the response body is not valid JSON: {e}"))
    };
    if upstream == req.format {
        let usage = match upstream {
            ApiFormat::OpenAi => openai::usage_from_slice(&body),
            ApiFormat::Anthropic => anthropic::usage_from_slice(&body),
        }
        .map_err(malformed)?;
        let usage = usage.unwrap_or_else(|| estimate_complete(request_len, body.len()));
        return Ok(JsonResponse { body, usage });
    }
    let value: Value = serde_json::from_slice(&body).map_err(malformed)?;
    let usage = match upstream {
        ApiFormat::OpenAi => openai::usage_from_value(&value),
        ApiFormat::Anthropic => anthropic::usage_from_value(&value),
    }
    .unwrap_or_else(|| estimate_complete(request_len, body.len()));
    let translated = match upstream {
        ApiFormat::OpenAi => translate::openai_to_anthropic_response(&value, &req.public_model),
        ApiFormat::Anthropic => translate::anthropic_to_openai_response(&value, &req.public_model),
    }
    .map_err(|e| ProviderError::Malformed(e.to_string()))?;
    let body = serde_json::to_vec(&translated).map_err(malformed)?;
    Ok(JsonResponse {
        body: Bytes::from(body),
        usage,
    })
}

/// A provider that reports no usage in a complete answer: estimate both sides from sizes.
fn estimate_complete(request_len: usize, response_len: usize) -> Usage {
    Usage {
        input_tokens: estimate_tokens(request_len),
        output_tokens: estimate_tokens(response_len),
        cached_input_tokens: 0,
    }
}
