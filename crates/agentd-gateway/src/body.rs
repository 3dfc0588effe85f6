//! Reading a JSON request body with a size limit, a time limit and errors that say what to fix.

use agentd_core::{ApiError, ErrorKind};
use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use std::time::Duration;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "request_too_large",
        format!("request body is larger than the limit of {limit} bytes (server.max_body_bytes)"),
    )
}

fn too_slow(timeout: Duration) -> ApiError {
    ApiError::new(
        ErrorKind::RequestTimeout,
        "body_read_timeout",
        format!(
            "the request body did not arrive within {} ms (server.body_read_timeout_ms)",
            timeout.as_millis()
        ),
    )
}

/// Reads the whole body, refusing more than `limit` bytes (early, from Content-Length, when it
/// is given) and a body that has not all arrived within `timeout`. The timeout is a deadline for
/// the whole body from the moment reading starts (right after the request head and auth), not an
/// idle timeout between chunks, which a client trickling a byte at a time would never trip.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect());
    match read.await.map_err(|_| too_slow(timeout))? {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(err) => Err(ApiError::invalid(
            "body_read_error",
            format!("could not read the request body: {err}"),
        )),
    }
}

/// Parses a JSON object body. Errors name the line and column, as a client needs to fix it.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "invalid_json",
            "request body is empty; send a JSON object with Content-Type: application/json",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            "invalid_json",
            format!(
                "request body is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "invalid_json",
            "request body must be a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_point_at_the_spot() {
        let err = parse_json(b"{\"model\": \n oops}").unwrap_err();
        assert_eq!(err.code, "invalid_json");
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(parse_json(b"[1]")
            .unwrap_err()
            .message
            .contains("JSON object"));
        assert!(parse_json(b"").unwrap_err().message.contains("empty"));
    }

    const SLOW: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let err = read_limited(&HeaderMap::new(), Body::from(vec![b'x'; 11]), 10, SLOW)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PayloadTooLarge);
        let ok = read_limited(&HeaderMap::new(), Body::from(vec![b'x'; 10]), 10, SLOW)
            .await
            .unwrap();
        assert_eq!(ok.len(), 10);
    }

    /// A body trickled a byte at a time never pauses long, so only a deadline for the whole
    /// body stops it. (Real time, short: the gateway does not enable tokio's `test-util`.)
    #[tokio::test]
    async fn a_trickled_body_is_cut_at_the_deadline() {
        let chunks = futures::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        let started = std::time::Instant::now();
        let err = read_limited(
            &HeaderMap::new(),
            Body::from_stream(chunks),
            1 << 20,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RequestTimeout);
        assert_eq!(err.status().as_u16(), 408);
        assert_eq!(err.code, "body_read_timeout");
        assert!(
            err.message.contains("server.body_read_timeout_ms"),
            "{}",
            err.message
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
