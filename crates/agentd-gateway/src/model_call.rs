//! In-process model calls for the agent runtime: the same pipeline as `/v1/chat/completions`
//! (routing, fallbacks, breakers, rate limits, budgets, ledger), without an HTTP hop.
//!
//! The one decision to know: a runtime call is always a stream (tokens reach the run's
//! `messages` events as they come), and it reports what it was charged: the settlement sends
//! the usage and cost it recorded, so a run's own budget (`max_run_usd`) counts exactly what the
//! ledger counts. Cancelling (the run was cancelled or timed out) drops the upstream stream: the
//! call is settled as `client_closed` and charged for what was generated.

use crate::call::{self, Answer, Call, Ctx, Work};
use crate::keys::Principal;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Micros, Usage};
use agentd_providers::{ApiFormat, ChatRequest};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One model call of a run.
pub struct ModelCall {
    pub principal: Principal,
    /// The budget `session` (the run's thread).
    pub session: Option<String>,
    /// The ledger's request id (`<run>:<step>`).
    pub request_id: String,
    /// A model or router name of the gateway.
    pub model: String,
    /// `messages` in OpenAI chat shape.
    pub messages: Vec<Value>,
    /// OpenAI `tools` entries (empty: none).
    pub tools: Vec<Value>,
}

/// What a finished call produced.
#[derive(Clone, Debug)]
pub struct ModelReply {
    /// The assistant message, OpenAI shape: `{"role":"assistant","content":..,"tool_calls":[..]}`.
    pub message: Value,
    pub usage: Usage,
    pub cost: Micros,
    /// The public model that answered (for `messages` event metadata).
    pub model: String,
}

/// What the settlement of a call reports back: the charge, and the ledger row for the caller
/// to write durably (so a run never journals a step whose charge is still in a batch that a
/// crash could lose).
#[derive(Debug)]
pub(crate) struct Charged {
    pub usage: Usage,
    pub cost: Micros,
    pub row: Option<agentd_core::SpendRecord>,
}

/// Why a model call ended without a reply.
#[derive(Debug)]
pub enum ModelError {
    /// Refused before any provider was called, or the provider failed.
    Api(ApiError),
    /// The caller cancelled it; it was settled for what was generated.
    Cancelled { cost: Micros },
}

impl AppState {
    /// Writes a runtime call's ledger row now (not batched); on a store error it goes to the
    /// batched writer, which retries. Returns whether a row was handed over.
    async fn write_row(&self, row: Option<agentd_core::SpendRecord>) -> bool {
        use agentd_core::SpendStore;
        let Some(row) = row else { return false };
        if !self.ledger.enabled() {
            return true;
        }
        if let Err(e) = self.store.record_spend(std::slice::from_ref(&row)).await {
            tracing::warn!(error = %e, "Cannot write a run's ledger row now; queued for the batched writer");
            self.ledger.record(row);
        }
        true
    }

    /// The worst-case cost of a call of `model` with this prompt (for a run's own budget), or
    /// `None` when the model is unknown.
    pub fn worst_case(&self, model: &str, prompt_tokens: u64) -> Option<Micros> {
        let route = self.models.get(model)?;
        Some(
            route
                .worst_price
                .worst_case(prompt_tokens, route.max_output_tokens),
        )
    }

    /// Whether `model` names a model or router of this gateway.
    pub fn has_model(&self, model: &str) -> bool {
        self.models.get(model).is_some() || self.models.resolve(model, None, false, 0).is_some()
    }

    /// Runs one model call through the gateway's pipeline, calling `on_delta` with each piece
    /// of assistant text as it streams. Cancelling `cancel` stops it promptly.
    pub async fn call_model(
        self: &Arc<Self>,
        call: ModelCall,
        cancel: &CancellationToken,
        mut on_delta: impl FnMut(&str) + Send,
    ) -> Result<ModelReply, ModelError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(call.model.clone()));
        body.insert("messages".into(), Value::Array(call.messages));
        if !call.tools.is_empty() {
            body.insert("tools".into(), Value::Array(call.tools));
        }
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        let json = Value::Object(body);
        let prompt_tokens =
            agentd_providers::tokens::estimate_prompt_tokens(ApiFormat::OpenAi, &json);
        let has_tools = json.get("tools").is_some();
        let tier = call.principal.tier.clone();
        let route = self
            .models
            .resolve(&call.model, tier.as_deref(), has_tools, prompt_tokens)
            .ok_or_else(|| ModelError::Api(crate::routes::chat::model_not_found(&call.model)))?;
        let (report_tx, report_rx) = oneshot::channel();
        let ctx = Ctx {
            principal: call.principal,
            request_id: Arc::from(call.request_id.as_str()),
            session: call.session,
            tier,
            cache_wish: crate::cache::Wish::Off,
            report: Some(report_tx),
        };
        let public_model = route.name.clone();
        let call = Call {
            ctx,
            prompt_tokens,
            max_output_tokens: route.max_output_tokens,
            cache_key: None,
            work: Work::Chat(ChatRequest {
                format: ApiFormat::OpenAi,
                body: Arc::new(json),
                stream: true,
                include_usage: true,
                public_model: public_model.clone(),
                upstream_model: String::new(),
            }),
            route,
        };
        let answer = tokio::select! {
            a = call::run(self.clone(), call) => a.map_err(ModelError::Api)?,
            () = cancel.cancelled() => {
                // The call goes on in its task and is settled at its real cost.
                return Err(ModelError::Cancelled { cost: Micros::ZERO });
            }
        };
        let mut acc = Accumulator::default();
        match answer {
            Answer::Complete { body, .. } => acc.feed(&body, &mut on_delta),
            Answer::Stream { mut stream, .. } => loop {
                tokio::select! {
                    next = stream.next() => match next {
                        Some(Ok(bytes)) => acc.feed(&bytes, &mut on_delta),
                        Some(Err(e)) => {
                            drop(stream);
                            return Err(ModelError::Api(ApiError::new(
                                ErrorKind::Upstream,
                                "stream_cut",
                                format!("the model's stream failed: {e}"),
                            )));
                        }
                        None => break,
                    },
                    () = cancel.cancelled() => {
                        drop(stream);
                        let cost = match report_rx.await {
                            Ok(c) => self.write_row(c.row).await.then_some(c.cost),
                            Err(_) => None,
                        };
                        return Err(ModelError::Cancelled { cost: cost.unwrap_or(Micros::ZERO) });
                    }
                }
            },
        }
        if let Some(error) = acc.error.take() {
            return Err(ModelError::Api(ApiError::new(
                ErrorKind::Upstream,
                "upstream_error",
                error,
            )));
        }
        let charged = report_rx.await.unwrap_or(Charged {
            usage: acc.usage,
            cost: Micros::ZERO,
            row: None,
        });
        self.write_row(charged.row).await;
        Ok(ModelReply {
            message: acc.message(),
            usage: charged.usage,
            cost: charged.cost,
            model: public_model,
        })
    }
}

/// Rebuilds the assistant message from OpenAI stream chunks.
#[derive(Default)]
struct Accumulator {
    pending: Vec<u8>,
    content: String,
    /// By index: id, name, arguments.
    tool_calls: Vec<(String, String, String)>,
    usage: Usage,
    error: Option<String>,
}

impl Accumulator {
    fn feed(&mut self, bytes: &[u8], on_delta: &mut impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" || data.is_empty() {
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            self.chunk(&chunk, on_delta);
        }
    }

    fn chunk(&mut self, chunk: &Value, on_delta: &mut impl FnMut(&str)) {
        if let Some(err) = chunk.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the model failed")
                .to_owned();
            self.error = Some(msg);
            return;
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                input_tokens: n("prompt_tokens"),
                output_tokens: n("completion_tokens"),
                cached_input_tokens: 0,
            };
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for choice in choices {
            // A whole (non-stream) answer carries `message`, a chunk carries `delta`.
            let delta = choice.get("delta").or_else(|| choice.get("message"));
            let Some(delta) = delta else { continue };
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    self.content.push_str(text);
                    on_delta(text);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, tc) in calls.iter().enumerate() {
                    let index = tc
                        .get("index")
                        .and_then(Value::as_u64)
                        .map_or(pos, |i| i as usize);
                    while self.tool_calls.len() <= index {
                        self.tool_calls
                            .push((String::new(), String::new(), String::new()));
                    }
                    let slot = &mut self.tool_calls[index];
                    if let Some(id) = tc.get("id").and_then(Value::as_str) {
                        slot.0.push_str(id);
                    }
                    if let Some(f) = tc.get("function") {
                        if let Some(name) = f.get("name").and_then(Value::as_str) {
                            slot.1.push_str(name);
                        }
                        if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                            slot.2.push_str(args);
                        }
                    }
                }
            }
        }
    }

    fn message(&self) -> Value {
        let mut msg = json!({"role": "assistant", "content": self.content});
        if !self.tool_calls.is_empty() {
            msg["tool_calls"] = Value::Array(
                self.tool_calls
                    .iter()
                    .map(|(id, name, args)| {
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
                    })
                    .collect(),
            );
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::Accumulator;

    #[test]
    fn rebuilds_text_and_tool_calls_from_chunks() {
        let mut acc = Accumulator::default();
        let mut seen = String::new();
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n",
            "\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"lookup\",\"arguments\":\"{\\\"q\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n"
        );
        // Fed in awkward pieces, as a network delivers it.
        for piece in stream.as_bytes().chunks(7) {
            acc.feed(piece, &mut |t: &str| seen.push_str(t));
        }
        assert_eq!(seen, "Hello");
        let m = acc.message();
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "lookup");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"q\":1}");
        assert_eq!(acc.usage.input_tokens, 7);
        assert_eq!(acc.usage.output_tokens, 3);
    }
}
