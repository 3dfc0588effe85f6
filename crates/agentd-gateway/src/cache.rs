//! The exact-match response cache: which requests may be answered from it, the key, and the
//! stored value's layout.
//!
//! A request is cached only when its answer is deterministic (`temperature` 0 with a single
//! choice; embeddings) or the caller opts in with `x-agentd-cache: on`; `x-agentd-cache: off`
//! bypasses the cache. The key is a SHA-256 of the API format, the route kind and the request
//! JSON with the fields that do not change the answer removed (`user`, `metadata`, …). JSON
//! objects serialise with sorted keys, so the key does not depend on field order. `stream` is
//! part of the key: a streamed request is answered from a stored stream, replayed byte for byte.

use agentd_core::{ResponseCache, Usage};
use agentd_providers::ApiFormat;
use axum::http::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const CACHE_HEADER: &str = "x-agentd-cache";
pub(crate) const CACHE_LOOKUPS: &str = "agentd_cache_lookups_total";

/// What the caller asked of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wish {
    /// No header: cache if deterministic.
    Auto,
    On,
    Off,
}

pub(crate) fn wish(headers: &HeaderMap) -> Wish {
    match headers.get(CACHE_HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("true") => Wish::On,
        Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("false") => Wish::Off,
        _ => Wish::Auto,
    }
}

/// The route a cached answer belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Chat(ApiFormat),
    Embeddings,
}

/// Fields that do not change the answer.
const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls_hint",
];

/// Whether this chat request's answer can be reused.
pub(crate) fn chat_is_deterministic(body: &Value) -> bool {
    let temperature_zero = body
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    let single = body.get("n").and_then(Value::as_u64).unwrap_or(1) <= 1;
    temperature_zero && single
}

/// The cache key of a request, or `None` when it must not be cached.
pub(crate) fn key(kind: Kind, body: &Value, wish: Wish, public_model: &str) -> Option<String> {
    let eligible = match (wish, kind) {
        (Wish::Off, _) => false,
        (Wish::On, _) => true,
        (Wish::Auto, Kind::Embeddings) => true,
        (Wish::Auto, Kind::Chat(_)) => chat_is_deterministic(body),
    };
    if !eligible {
        return None;
    }
    let mut normalized = body.clone();
    if let Some(obj) = normalized.as_object_mut() {
        for field in IGNORED {
            obj.remove(*field);
        }
        // The router may have picked the model: key on what was served.
        obj.insert("model".to_owned(), Value::String(public_model.to_owned()));
    }
    let mut hasher = Sha256::new();
    hasher.update(match kind {
        Kind::Chat(ApiFormat::OpenAi) => b"chat/openai\n".as_slice(),
        Kind::Chat(ApiFormat::Anthropic) => b"chat/anthropic\n".as_slice(),
        Kind::Embeddings => b"embeddings\n".as_slice(),
    });
    hasher.update(normalized.to_string().as_bytes());
    Some(format!("c:{}", hex::encode(hasher.finalize())))
}

/// A stored answer: the usage it was served with, then the exact bytes the client received.
pub(crate) fn encode(usage: Usage, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(24 + body.len());
    buf.put_u64_le(usage.input_tokens);
    buf.put_u64_le(usage.output_tokens);
    buf.put_u64_le(usage.cached_input_tokens);
    buf.put_slice(body);
    buf.freeze()
}

pub(crate) fn decode(mut value: Bytes) -> Option<(Usage, Bytes)> {
    if value.len() < 24 {
        return None;
    }
    let head = value.split_to(24);
    let n = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    Some((
        Usage {
            input_tokens: n(0),
            output_tokens: n(8),
            cached_input_tokens: n(16),
        },
        value,
    ))
}

/// The cache with its limits, as the handlers use it.
pub(crate) struct Cache {
    pub store: Arc<dyn ResponseCache>,
    pub max_entry_bytes: usize,
    pub chat_ttl: Duration,
    pub embeddings_ttl: Duration,
}

impl Cache {
    pub(crate) fn ttl(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Chat(_) => self.chat_ttl,
            Kind::Embeddings => self.embeddings_ttl,
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<(Usage, Bytes)> {
        let hit = self.store.get(key).await.and_then(decode);
        metrics::counter!(CACHE_LOOKUPS, "result" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    /// Stores in the background; answers over `max_entry_bytes` are not stored.
    pub(crate) fn put(self: &Arc<Self>, key: String, kind: Kind, usage: Usage, body: &[u8]) {
        if body.len() > self.max_entry_bytes {
            return;
        }
        let value = encode(usage, body);
        let cache = self.clone();
        tokio::spawn(async move {
            let ttl = cache.ttl(kind);
            cache.store.put(&key, value, ttl).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_deterministic_or_opted_in_requests_are_cached() {
        let k = Kind::Chat(ApiFormat::OpenAi);
        let det = json!({"model": "m", "messages": [], "temperature": 0});
        let random = json!({"model": "m", "messages": []});
        assert!(key(k, &det, Wish::Auto, "m").is_some());
        assert!(key(k, &random, Wish::Auto, "m").is_none());
        assert!(key(k, &random, Wish::On, "m").is_some());
        assert!(key(k, &det, Wish::Off, "m").is_none());
        let n2 = json!({"model": "m", "messages": [], "temperature": 0, "n": 2});
        assert!(key(k, &n2, Wish::Auto, "m").is_none());
        assert!(key(Kind::Embeddings, &random, Wish::Auto, "m").is_some());
    }

    #[test]
    fn keys_ignore_field_order_and_user_but_not_content_or_stream() {
        let k = Kind::Chat(ApiFormat::OpenAi);
        let a: Value = serde_json::from_str(r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],"user":"u1"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"messages":[{"content":"hi","role":"user"}],"temperature":0,"model":"m","user":"u2"}"#).unwrap();
        assert_eq!(key(k, &a, Wish::Auto, "m"), key(k, &b, Wish::Auto, "m"));
        let mut c = a.clone();
        c["messages"][0]["content"] = json!("ho");
        assert_ne!(key(k, &a, Wish::Auto, "m"), key(k, &c, Wish::Auto, "m"));
        let mut s = a.clone();
        s["stream"] = json!(true);
        assert_ne!(key(k, &a, Wish::Auto, "m"), key(k, &s, Wish::Auto, "m"));
        assert_ne!(
            key(k, &a, Wish::Auto, "m"),
            key(Kind::Chat(ApiFormat::Anthropic), &a, Wish::Auto, "m")
        );
    }

    #[test]
    fn values_round_trip() {
        let usage = Usage {
            input_tokens: 12,
            output_tokens: 34,
            cached_input_tokens: 5,
        };
        let (u, body) = decode(encode(usage, b"data: x\n\n")).unwrap();
        assert_eq!(u, usage);
        assert_eq!(&body[..], b"data: x\n\n");
        assert!(decode(Bytes::from_static(b"short")).is_none());
    }
}
