//! `Tools` end to end: static and agent tools, argument checks, and HTTP tools against local
//! servers (reached with `allow_private`, or with a guard that excepts the first hop's
//! address so the checks on redirects can be seen).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

use super::ssrf::Guard;
use super::*;

const REFUSED: &str =
    "resolves to a private or loopback address (set allow_private = true on the tool to allow it)";

/// A local server: `/echo...` answers with what it received as JSON, `/big` with 10,000
/// bytes, `/slow` after 5 s, `/fail` with a 500, `/redirect?to=URL` with a 302 to URL,
/// `/see-other` with a 303 to `/echo`, `/loop` with a 302 to itself.
struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    async fn start(ip: &str) -> Server {
        let listener = tokio::net::TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                counter.fetch_add(1, Ordering::SeqCst);
                respond(method, uri, headers, body)
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn respond(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    match uri.path() {
        "/big" => "a".repeat(10_000).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late".into_response()
        }
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(1000)).into_response(),
        "/redirect" => {
            let to = query.strip_prefix("to=").unwrap_or_default();
            (StatusCode::FOUND, [("location", to.to_owned())]).into_response()
        }
        "/see-other" => (StatusCode::SEE_OTHER, [("location", "/echo")]).into_response(),
        "/loop" => (StatusCode::FOUND, [("location", "/loop")]).into_response(),
        _ => {
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_string(),
                        Value::String(value.to_str().unwrap_or_default().to_owned()),
                    )
                })
                .collect();
            axum::Json(json!({
                "method": method.as_str(),
                "path": uri.path(),
                "query": query,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }))
            .into_response()
        }
    }
}

fn http_tool(url: String, method: Method, allow_private: bool) -> Tool {
    Tool {
        name: "fetch".into(),
        description: None,
        parameters: Value::Null,
        spec: ToolSpec::Http(HttpSpec {
            url,
            method,
            headers: vec![("Authorization".into(), "Bearer secret".into())],
            timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
            allow_private,
        }),
    }
}

fn echoed(output: &ToolOutput) -> Value {
    assert!(!output.is_error, "{}", output.content);
    serde_json::from_str(&output.content).unwrap()
}

fn static_tool(result: Value) -> Tool {
    Tool {
        name: "weather".into(),
        description: Some("The weather".into()),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
            "additionalProperties": false
        }),
        spec: ToolSpec::Static { result },
    }
}

#[tokio::test]
async fn static_results_come_back_as_text() {
    let tools = Tools::new();
    let output = tools
        .call(&static_tool(json!("sunny")), r#"{"city": "Paris"}"#, "r:1")
        .await;
    assert_eq!(output, ToolOutput::ok("sunny"));
    let output = tools
        .call(
            &static_tool(json!({"t": 21})),
            r#"{"city": "Paris"}"#,
            "r:1",
        )
        .await;
    assert_eq!(output, ToolOutput::ok(r#"{"t":21}"#));
}

#[tokio::test]
async fn bad_arguments_are_error_outputs() {
    let tools = Tools::new();
    let tool = static_tool(json!("sunny"));
    for (arguments, expected) in [
        (
            "{\"city\": ",
            "invalid arguments: not valid JSON (EOF while parsing a value at line 1 column 8)",
        ),
        (
            r#"{"city": 3}"#,
            "invalid arguments: /city: expected string, got integer",
        ),
        ("", "invalid arguments: /city: required property is missing"),
        (
            r#"{"city": "Paris", "days": 0}"#,
            "invalid arguments: /days: must be >= 1",
        ),
        (
            r#"{"city": "Paris", "when": "now"}"#,
            "invalid arguments: /when: unexpected property (allowed: city, days)",
        ),
        ("[]", "invalid arguments: expected object, got array"),
    ] {
        assert_eq!(
            tools.call(&tool, arguments, "r:1").await,
            ToolOutput::error(expected),
            "{arguments}"
        );
    }
}

#[tokio::test]
async fn agent_tools_are_validated_but_not_called() {
    let tools = Tools::new();
    let tool = Tool {
        spec: ToolSpec::Agent {
            agent: "researcher".into(),
        },
        ..static_tool(Value::Null)
    };
    assert_eq!(
        tools.validate_args(&tool, r#"{"city": "Oslo"}"#),
        Ok(json!({"city": "Oslo"}))
    );
    assert_eq!(
        tools.validate_args(&tool, "{}"),
        Err("invalid arguments: /city: required property is missing".to_owned())
    );
    let output = tools.call(&tool, r#"{"city": "Oslo"}"#, "r:1").await;
    assert!(output.is_error);
    assert!(output.content.contains("child run"), "{}", output.content);
}

#[test]
fn definitions_are_openai_function_entries() {
    assert_eq!(
        Tools::definition(&static_tool(Value::Null)),
        json!({
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather",
                "parameters": static_tool(Value::Null).parameters,
            }
        })
    );
    let bare = Tool {
        description: None,
        parameters: Value::Null,
        ..static_tool(Value::Null)
    };
    assert_eq!(
        Tools::definition(&bare),
        json!({
            "type": "function",
            "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}
        })
    );
}

#[tokio::test]
async fn get_substitutes_placeholders_and_sends_the_rest_as_query() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let tool = http_tool(server.url("/echo/{city}?units=metric"), Method::GET, true);
    let output = tools
        .call(
            &tool,
            r#"{"city": "São Paulo/x", "days": 3, "tags": ["a", "b c"], "none": null}"#,
            "run-1:3",
        )
        .await;
    let seen = echoed(&output);
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/echo/S%C3%A3o%20Paulo%2Fx");
    assert_eq!(seen["query"], "units=metric&days=3&tags=a&tags=b+c");
    assert_eq!(seen["body"], "");
    assert_eq!(seen["headers"]["authorization"], "Bearer secret");
    assert_eq!(seen["headers"]["idempotency-key"], "run-1:3");
    assert!(seen["headers"].get("content-type").is_none());
}

#[tokio::test]
async fn post_sends_the_rest_as_a_json_body() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let tool = http_tool(server.url("/echo/items/{id}"), Method::POST, true);
    let output = tools
        .call(&tool, r#"{"id": 7, "text": "hi", "n": [1]}"#, "run-1:4")
        .await;
    let seen = echoed(&output);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo/items/7");
    assert_eq!(seen["query"], "");
    assert_eq!(seen["headers"]["content-type"], "application/json");
    assert_eq!(seen["headers"]["idempotency-key"], "run-1:4");
    let body: Value = serde_json::from_str(seen["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"text": "hi", "n": [1]}));
}

#[tokio::test]
async fn bodies_are_capped() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let mut tool = http_tool(server.url("/big"), Method::GET, true);
    let ToolSpec::Http(spec) = &mut tool.spec else {
        unreachable!()
    };
    spec.max_response_bytes = 100;
    let output = tools.call(&tool, "{}", "r:1").await;
    assert_eq!(
        output,
        ToolOutput::ok(format!("{}\n[truncated at 100 bytes]", "a".repeat(100)))
    );
}

#[tokio::test]
async fn slow_endpoints_time_out() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let mut tool = http_tool(server.url("/slow"), Method::GET, true);
    let ToolSpec::Http(spec) = &mut tool.spec else {
        unreachable!()
    };
    spec.timeout = Duration::from_millis(200);
    let output = tools.call(&tool, "{}", "r:1").await;
    assert_eq!(output, ToolOutput::error("timed out after 200ms"));
}

#[tokio::test]
async fn error_statuses_are_error_outputs_with_the_start_of_the_body() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let output = tools
        .call(
            &http_tool(server.url("/fail"), Method::GET, true),
            "{}",
            "r:1",
        )
        .await;
    assert_eq!(
        output,
        ToolOutput::error(format!("HTTP 500: {}", "x".repeat(512)))
    );
}

#[tokio::test]
async fn connection_failures_are_error_outputs_without_secrets() {
    // A port nothing listens on: bind, note the port, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let tools = Tools::new();
    let tool = http_tool(
        format!("http://127.0.0.1:{port}/x?key=topsecret"),
        Method::GET,
        true,
    );
    let output = tools.call(&tool, "{}", "r:1").await;
    assert!(output.is_error);
    assert!(
        output
            .content
            .starts_with(&format!("request to 127.0.0.1:{port} failed: ")),
        "{}",
        output.content
    );
    assert!(!output.content.contains("topsecret"), "{}", output.content);
}

#[tokio::test]
async fn private_destinations_are_refused_by_default() {
    let server = Server::start("127.0.0.1").await;
    let port = server.addr.port();
    let tools = Tools::new();
    for (url, host) in [
        (format!("http://127.0.0.1:{port}/echo"), "127.0.0.1"),
        (format!("http://[::1]:{port}/echo"), "[::1]"),
        ("http://10.1.2.3/".to_owned(), "10.1.2.3"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "169.254.169.254",
        ),
        (format!("http://localhost:{port}/echo"), "localhost"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/echo"),
            // The URL parser writes IPv4-mapped addresses in hex.
            "[::ffff:7f00:1]",
        ),
        // Decimal and short IPv4 forms are normalised by the URL parser.
        (format!("http://2130706433:{port}/echo"), "127.0.0.1"),
        (format!("http://127.1:{port}/echo"), "127.0.0.1"),
        (
            "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
            "metadata.google.internal",
        ),
    ] {
        let output = tools
            .call(&http_tool(url.clone(), Method::GET, false), "{}", "r:1")
            .await;
        assert_eq!(
            output,
            ToolOutput::error(format!("refused: {host} {REFUSED}")),
            "{url}"
        );
    }
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn names_are_checked_after_resolution() {
    // 127.0.0.2 excepted lets `localhost` through the by-name check; its addresses are then
    // refused by the resolver, before any connection.
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::with_guard(Guard::allowing(["127.0.0.2".parse().unwrap()]));
    let url = format!("http://localhost:{}/echo", server.addr.port());
    let output = tools
        .call(&http_tool(url, Method::GET, false), "{}", "r:1")
        .await;
    assert_eq!(
        output,
        ToolOutput::error(format!("refused: localhost {REFUSED}"))
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn redirects_are_checked_at_every_hop() {
    // The first hop's address is excepted; what it redirects to is not.
    let first = Server::start("127.0.0.2").await;
    let inside = Server::start("127.0.0.1").await;
    let tools = Tools::with_guard(Guard::allowing(["127.0.0.2".parse().unwrap()]));
    let redirect =
        |to: String| http_tool(first.url(&format!("/redirect?to={to}")), Method::GET, false);

    for (to, host) in [
        (inside.url("/echo"), "127.0.0.1".to_owned()),
        ("http://10.0.0.1/".to_owned(), "10.0.0.1".to_owned()),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "169.254.169.254".to_owned(),
        ),
        // A name whose addresses are refused by the resolver.
        (
            format!("http://localhost:{}/echo", inside.addr.port()),
            "localhost".to_owned(),
        ),
    ] {
        let output = tools.call(&redirect(to.clone()), "{}", "r:1").await;
        assert_eq!(
            output,
            ToolOutput::error(format!("refused: {host} {REFUSED}")),
            "{to}"
        );
    }
    assert_eq!(inside.hits(), 0);

    // Redirects within the allowed host are followed.
    let output = tools
        .call(&redirect(first.url("/echo/after")), "{}", "r:1")
        .await;
    assert_eq!(echoed(&output)["path"], "/echo/after");

    let output = tools
        .call(
            &http_tool(first.url("/loop"), Method::GET, false),
            "{}",
            "r:1",
        )
        .await;
    assert_eq!(
        output,
        ToolOutput::error("too many redirects (more than 5)")
    );
}

#[tokio::test]
async fn redirects_to_other_origins_drop_the_configured_headers() {
    let first = Server::start("127.0.0.1").await;
    let other = Server::start("127.0.0.2").await;
    let tools = Tools::new();
    let tool = http_tool(
        first.url(&format!("/redirect?to={}", other.url("/echo"))),
        Method::GET,
        true,
    );
    let seen = echoed(&tools.call(&tool, "{}", "r:9").await);
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert_eq!(seen["headers"]["idempotency-key"], "r:9");

    // Same origin: kept.
    let tool = http_tool(
        first.url(&format!("/redirect?to={}", first.url("/echo"))),
        Method::GET,
        true,
    );
    let seen = echoed(&tools.call(&tool, "{}", "r:9").await);
    assert_eq!(seen["headers"]["authorization"], "Bearer secret");
}

#[tokio::test]
async fn see_other_after_post_becomes_a_get_without_body() {
    let server = Server::start("127.0.0.1").await;
    let tools = Tools::new();
    let tool = http_tool(server.url("/see-other"), Method::POST, true);
    let seen = echoed(&tools.call(&tool, r#"{"a": 1}"#, "r:1").await);
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/echo");
    assert_eq!(seen["body"], "");
    assert!(seen["headers"].get("content-type").is_none());
}

#[tokio::test]
async fn only_http_urls_are_allowed() {
    let tools = Tools::new();
    let output = tools
        .call(
            &http_tool("file:///etc/passwd".into(), Method::GET, true),
            "{}",
            "r:1",
        )
        .await;
    assert_eq!(
        output,
        ToolOutput::error("refused: only http and https URLs are allowed, not file")
    );
}

#[tokio::test]
async fn webhooks_post_json_through_the_guard() {
    let server = Server::start("127.0.0.2").await;
    let body = json!({"run_id": "r"});
    let timeout = Duration::from_secs(5);
    let refused = Tools::new()
        .post_json(&server.url("/echo"), &body, timeout)
        .await;
    assert_eq!(refused, Err(format!("refused: 127.0.0.2 {REFUSED}")));
    assert_eq!(server.hits(), 0);

    let tools = Tools::with_guard(Guard::allowing(["127.0.0.2".parse().unwrap()]));
    assert_eq!(
        tools.post_json(&server.url("/echo"), &body, timeout).await,
        Ok(())
    );
    assert_eq!(server.hits(), 1);
    let failed = tools.post_json(&server.url("/fail"), &body, timeout).await;
    assert!(failed.unwrap_err().starts_with("HTTP 500: "));
}
