//! Helpers shared by the integration tests: a running mock, an HTTP client and an SSE parser.

#![allow(dead_code)] // each test binary uses a different subset

use agentd_mock::{spawn, MockOptions, MockServer};
use serde_json::Value;

pub(crate) async fn mock() -> MockServer {
    mock_with(MockOptions::default()).await
}

pub(crate) async fn mock_with(opts: MockOptions) -> MockServer {
    spawn(opts).await.expect("mock server starts")
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

/// An OpenAI-style request with a key.
pub(crate) fn openai(server: &MockServer, path: &str) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{path}", server.url()))
        .bearer_auth("sk-test")
}

/// An Anthropic-style request with key and version headers.
pub(crate) fn anthropic(server: &MockServer) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
}

/// One SSE frame: its `event:` name (if any) and `data:` payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|err| panic!("frame data is not JSON ({err}): {}", self.data))
    }
}

/// Parses a complete SSE body, asserting the framing is exactly `field: value\n…\n\n`.
pub(crate) fn parse_sse(body: &str) -> Vec<Frame> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    body.split_terminator("\n\n")
        .map(|raw| {
            let mut frame = Frame {
                event: None,
                data: String::new(),
            };
            for line in raw.lines() {
                if let Some(event) = line.strip_prefix("event: ") {
                    frame.event = Some(event.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    frame.data = data.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            frame
        })
        .collect()
}

pub(crate) async fn recorded(server: &MockServer) -> Vec<Value> {
    let value: Value = client()
        .get(format!("{}/_mock/requests", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    value.as_array().expect("an array").clone()
}
