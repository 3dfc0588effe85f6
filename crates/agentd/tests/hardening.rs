//! Black-box tests of the gateway's defences against slow, idle, oversized and too many clients,
//! of its error shapes outside the JSON handlers, and of deny-by-default authentication. Short
//! limits in the configs keep every test within a few seconds; time assertions only bound from
//! below by the configured limit (minus slack) and from above generously.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Header timeout 500 ms, body timeout 500 ms, keep-alive 1500 ms (longer than the header
/// timeout, to tell the two apart), 8 KiB heads, a slow mock model (1.5 s to answer).
fn config(extra_server: &str) -> String {
    format!(
        r#"
[server]
header_read_timeout_ms = 500
body_read_timeout_ms = 500
keep_alive_timeout_ms = 1500
max_header_bytes = 8192
{extra_server}

[providers.local]
kind = "mock"

[providers.slow]
kind = "mock"
ttft_ms = 1500

[models.mock]
provider = "local"

[models.slow]
provider = "slow"
"#
    )
}

fn connect(server: &Server) -> TcpStream {
    let sock = TcpStream::connect(server.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    sock
}

/// Reads until the peer closes (or the read timeout), returning what arrived.
fn read_all(sock: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one response with a `content-length` from a kept-alive connection: (status, body).
fn read_response(sock: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.read(&mut buf).expect("response arrives");
        assert!(n > 0, "connection closed mid-response: {data:?}");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if data.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                return (status, text[end + 4..end + 4 + len].to_owned());
            }
        }
    }
}

/// Waits for the peer to close the connection; how long that took.
fn time_to_close(sock: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let rest = read_all(sock);
    assert!(rest.is_empty(), "nothing more is sent: {rest:?}");
    started.elapsed()
}

fn json_body(answer: &str) -> Value {
    let body = &answer[answer.find("\r\n\r\n").expect("a head") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// Regression: four connections sending their headers slowly stayed open 40 s.
#[test]
fn slow_headers_get_the_connection_closed_after_the_header_timeout() {
    let server = Server::start(Some(&config("")));
    // A head trickled a line every 100 ms never completes.
    let mut sock = connect(&server);
    let mut writer = sock.try_clone().unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n");
        for i in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if writer
                .write_all(format!("x-slow-{i}: y\r\n").as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    let answer = read_all(&mut sock);
    let took = started.elapsed();
    assert_eq!(answer, "", "closed without an answer");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "closed after {took:?}, header timeout 500 ms"
    );
    trickle.join().unwrap();
    // A connection that sends nothing at all is closed the same way.
    let mut silent = connect(&server);
    let took = time_to_close(&mut silent);
    assert!(took < Duration::from_secs(3), "silent connection: {took:?}");
    // The server still serves.
    let mut sock = connect(&server);
    sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut sock).0, 200);
}

/// Regression: a body sent at one byte per second stayed open for 25 s.
#[test]
fn a_trickled_body_gets_408_json_after_the_body_timeout() {
    let server = Server::start(Some(&config("")));
    let key = server.create_key("trickle", None);
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let mut sock = connect(&server);
        let mut writer = sock.try_clone().unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let trickle = std::thread::spawn(move || {
            for _ in 0..100 {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let answer = read_all(&mut sock);
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/json"), "{answer}");
        assert!(lower.contains("connection: close"), "{answer}");
        let body = json_body(&answer);
        if anthropic {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        } else {
            assert_eq!(body["error"]["code"], "body_read_timeout", "{body}");
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        }
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("body_read_timeout_ms"),
            "{body}"
        );
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{path}: answered after {took:?}, body timeout 500 ms"
        );
        trickle.join().unwrap();
    }
}

#[test]
fn oversized_headers_are_refused() {
    let server = Server::start(Some(&config("")));
    let mut sock = connect(&server);
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = sock.write_all(head.as_bytes());
    let answer = read_all(&mut sock);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "refused with 431 or closed: {answer}"
    );
    // A head within the limit is served.
    let mut sock = connect(&server);
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(4_000)
    );
    sock.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_response(&mut sock).0, 200);
}

#[test]
fn connections_beyond_max_connections_wait_until_one_closes() {
    // A long header timeout here, so the two idle connections hold their slots.
    let server = Server::start(Some(&config("max_connections = 2").replace(
        "header_read_timeout_ms = 500",
        "header_read_timeout_ms = 5000",
    )));
    let first = connect(&server);
    let _second = connect(&server);
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect(&server);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    match third.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the third connection was served: {other:?}"),
    }
    let freed = Instant::now();
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let answer = read_all(&mut third);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        freed.elapsed() < Duration::from_secs(3),
        "served once a slot was free"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout() {
    let server = Server::start(Some(&config("")));
    let mut sock = connect(&server);
    sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut sock).0, 200);
    // Idle for longer than the header timeout (500 ms), within the keep-alive (1500 ms): the
    // connection is still there for the next request.
    std::thread::sleep(Duration::from_millis(800));
    sock.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut sock).0, 200);
    let took = time_to_close(&mut sock);
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(5),
        "closed after {took:?} idle, keep-alive 1500 ms"
    );
}

fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

fn load_shed_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("agentd_load_shed_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_concurrent_requests_are_shed_with_503() {
    let server = Server::start(Some(&config("max_concurrent_requests = 2")));
    let key = server.create_key("shed", None);
    let c = client();
    let before = load_shed_count(
        &c.get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let req = c
                .post(server.url("/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&chat_body("slow"));
            tokio::spawn(req.send())
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let resp = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("mock"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "refused at once"
    );
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert_eq!(body["error"]["type"], "service_unavailable", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // Anthropic's shape on /v1/messages.
    let resp = c
        .post(server.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"model": "mock", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    // The operational endpoints are never shed.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.get(server.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(load_shed_count(&metrics), before + 2, "{metrics}");

    for slow in slow {
        let resp = slow.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Slots are given back: new requests pass.
    for _ in 0..3 {
        let resp = c
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("mock"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_timeout_answers_504_json_on_a_slow_call() {
    let server = Server::start(Some(&config("request_timeout_ms = 500")));
    let key = server.create_key("timeout", None);
    let c = client();
    let started = Instant::now();
    let resp = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("slow"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_timeout_ms"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1400),
        "answered after {took:?}, timeout 500 ms, model 1500 ms"
    );
    let resp = c
        .post(server.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"model": "slow", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    // Fast calls are unaffected.
    let resp = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("mock"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Regression: an undecodable path parameter was answered `400 text/plain` by axum.
#[tokio::test(flavor = "multi_thread")]
async fn errors_axum_answers_itself_are_json_in_the_callers_shape() {
    let server = Server::start(Some(&config("")));
    let key = server.create_key("shapes", None);
    let c = client();
    let resp = c
        .get(server.url("/v1/models/%FF%FE"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    // A query string the admin route cannot read.
    let resp = c
        .get(server.url("/admin/keys?tenant=a&tenant=b"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    // Wrong method and unknown route, in the Anthropic shape under /v1/messages.
    let resp = c
        .get(server.url("/v1/messages"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    let resp = c
        .get(server.url("/v1/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_route", "{body}");
}

/// Regression: an unknown model name was echoed whole into the error body and the log line.
#[tokio::test(flavor = "multi_thread")]
async fn a_giant_model_name_is_capped_in_the_error() {
    let server = Server::start(Some(&config("")));
    let key = server.create_key("giant", None);
    let c = client();
    let giant = "m".repeat(60_000);
    let resp = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(&giant))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    assert!(
        message.contains(&format!("\"{}\"…", "m".repeat(64))),
        "{message}"
    );
    // The same through a path parameter.
    let resp = c
        .get(server.url(&format!("/v1/models/{}", "m".repeat(5000))))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().len() < 300,
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.logs().contains(&"m".repeat(200)),
        "the log line repeats the whole name"
    );
}

/// Deny by default: only `/healthz`, `/readyz`, `/metrics` (and `/openapi.json`) answer without
/// a key; an unknown path needs one too (401, where it used to be 404).
#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_the_allow_list_needs_a_key() {
    let server = Server::start(Some(&config("")));
    let key = server.create_key("deny", None);
    let c = client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            c.get(server.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    for path in [
        "/v1/models",
        "/v1/nope",
        "/nope",
        "/",
        "/healthz/",
        "/v1/models/%FF%FE",
    ] {
        let resp = c.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without a key");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "missing_api_key", "{path}: {body}");
    }
    // The admin API wants the admin key, not a client key.
    let resp = c
        .get(server.url("/admin/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        c.get(server.url("/admin/keys"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(server.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
