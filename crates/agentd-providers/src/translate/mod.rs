//! Translation between the OpenAI chat completions and Anthropic Messages wire formats, in
//! both directions, for requests, whole responses and streams.
//!
//! Everything works on `serde_json::Value` so that fields we do not know pass through where the
//! target has a place for them and are dropped (not rejected) where it does not. Problems with
//! the client's request are `ApiError`s (400, with `param`); an upstream answer we cannot make
//! sense of is a [`TranslateError`], which the caller turns into a 502.

mod request;
mod response;
mod stream;

pub use request::{anthropic_to_openai_request, openai_to_anthropic_request};
pub use response::{
    anthropic_error, anthropic_to_openai_response, openai_error, openai_to_anthropic_response,
};
pub use stream::{AnthropicToOpenAiStream, OpenAiToAnthropicStream};

use agentd_core::Usage;
use serde_json::{json, Map, Value};

/// A provider answer we cannot translate (malformed upstream).
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("upstream sent invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("upstream answer is malformed: {0}")]
    Malformed(String),
    /// The upstream answered with an error body (possibly with status 200, or mid-stream).
    #[error("upstream returned an error: {0}")]
    Upstream(agentd_core::ApiError),
}

impl TranslateError {
    fn malformed(what: impl Into<String>) -> Self {
        TranslateError::Malformed(what.into())
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason_from_anthropic(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn (a server tool paused the turn; the client
        // continues it like a finished turn) and reasons added after this was written.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
fn stop_reason_from_openai(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// An Anthropic `usage` object in neutral form. Anthropic's `input_tokens` excludes cached
/// tokens, ours (like OpenAI's `prompt_tokens`) includes them.
fn usage_from_anthropic(u: &Value) -> Usage {
    let read = u64_at(u, "cache_read_input_tokens");
    Usage {
        input_tokens: u64_at(u, "input_tokens") + read + u64_at(u, "cache_creation_input_tokens"),
        output_tokens: u64_at(u, "output_tokens"),
        cached_input_tokens: read,
    }
}

fn usage_from_openai(u: &Value) -> Usage {
    Usage {
        input_tokens: u64_at(u, "prompt_tokens"),
        output_tokens: u64_at(u, "completion_tokens"),
        cached_input_tokens: u
            .get("prompt_tokens_details")
            .map(|d| u64_at(d, "cached_tokens"))
            .unwrap_or(0),
    }
}

fn openai_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total(),
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
    })
}

fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    })
}

/// Anthropic tool ids must match `^[a-zA-Z0-9_-]+$`; some OpenAI-compatible servers use ids
/// such as `functions.get_weather:0`. The mapping is deterministic so a call and its result,
/// translated separately, still pair up.
fn anthropic_tool_id(id: &str) -> String {
    if id.is_empty() {
        return "toolu_empty".to_owned();
    }
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An id for a place the upstream left no id for: unique within the process, and time-based
/// so restarts do not repeat it.
fn fresh_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{nanos:x}{:04x}",
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Insert `key` only when `value` is present (not absent, not null).
fn copy_field(from: &Map<String, Value>, to: &mut Map<String, Value>, key: &str, to_key: &str) {
    if let Some(v) = from.get(key).filter(|v| !v.is_null()) {
        to.insert(to_key.to_owned(), v.clone());
    }
}

/// A data URL `data:<media type>;base64,<data>` split into its parts.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_conversions_agree() {
        let a = json!({"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 7});
        let u = usage_from_anthropic(&a);
        assert_eq!(
            u,
            Usage {
                input_tokens: 115,
                output_tokens: 7,
                cached_input_tokens: 100
            }
        );
        let o = openai_usage(&u);
        assert_eq!(o["total_tokens"], 122);
        assert_eq!(usage_from_openai(&o), u);
        // Back to Anthropic: cache creation is not known to OpenAI, so it counts as input.
        assert_eq!(usage_from_anthropic(&anthropic_usage(&u)), u);
    }

    #[test]
    fn tool_ids_are_made_anthropic_safe() {
        assert_eq!(anthropic_tool_id("call_abc-1"), "call_abc-1");
        assert_eq!(
            anthropic_tool_id("functions.get_weather:0"),
            "functions_get_weather_0"
        );
        assert_eq!(anthropic_tool_id(""), "toolu_empty");
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(parse_data_url("data:image/png,raw"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }
}
