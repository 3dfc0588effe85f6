//! Black-box tests of the OpenAPI document at `/openapi.json` and of answers the fuzzer
//! (tests/fuzz) checks against it.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_without_a_key_and_every_operation_in_it_is_routed() {
    let server = Server::start(None);
    let key = server.create_key("openapi", None);
    let c = client();
    let resp = c.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    // Each documented operation reaches a handler: neither the unknown-route fallback nor the
    // wrong-method one answers it.
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = server.url(&fill_path_parameters(path));
            let req = match method.as_str() {
                "get" => c.get(&url),
                "post" => c.post(&url).body("{}"),
                "patch" => c.patch(&url).body("{}"),
                "put" => c.put(&url).body("{}"),
                "delete" => c.delete(&url),
                other => panic!("unexpected method {other} for {path}"),
            };
            let req = if path.starts_with("/admin/") {
                req.bearer_auth(ADMIN_KEY)
            } else {
                req.bearer_auth(&key)
            };
            let resp = req
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(
                !body.contains("unknown_route"),
                "{method} {path} is documented but not routed: {status} {body}"
            );
            assert!(status < 500, "{method} {path}: {status} {body}");
            seen += 1;
        }
    }
    assert!(seen >= 16, "only {seen} operations documented");
}

/// `/threads/{thread_id}/runs/{run_id}` → `/threads/some-id/runs/some-id`.
fn fill_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "some-id"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(METHOD, path)` of every `.route(…)` call in `source`: the call's first string literal is
/// the path (`{*rest}` → `{rest}`), and the method routers are the identifiers directly
/// followed by `(` in the call (`get(`, `.patch(`, `axum::routing::delete(`).
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("balanced parentheses");
        let call = &rest[..end];
        let path = call
            .split('"')
            .nth(1)
            .expect("a .route( call starts with a string literal path")
            .replace("{*", "{");
        let mut ident = String::new();
        for c in call.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                ident.push(c);
                continue;
            }
            if c == '(' && METHODS.contains(&ident.as_str()) {
                found.insert((ident.to_uppercase(), path.clone()));
            }
            ident.clear();
        }
    }
    found
}

#[test]
fn the_route_scan_reads_method_chains_and_qualified_routers() {
    let source = r#"Router::new()
        .route("/a/{id}", get(x::get).patch(x::update).delete(x::delete))
        .route("/b", axum::routing::delete(b::drop))
        .route("/c/{*rest}", post(c::post))"#;
    let want: BTreeSet<(String, String)> = [
        ("GET", "/a/{id}"),
        ("PATCH", "/a/{id}"),
        ("DELETE", "/a/{id}"),
        ("DELETE", "/b"),
        ("POST", "/c/{rest}"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(routes_in(source), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_of_the_agent_runtime_is_in_the_document() {
    // Read from the source so that a route added to the runtime's routers without a line in
    // agentd_runtime::api::openapi fails here.
    const RUNTIME_ROUTES: &str = include_str!("../../agentd-runtime/src/api/mod.rs");
    let routes = routes_in(RUNTIME_ROUTES);
    for expected in [
        ("POST", "/threads/{thread_id}/runs/stream"),
        ("PATCH", "/threads/{thread_id}"),
        ("DELETE", "/runs/crons/{cron_id}"),
        ("GET", "/ok"),
    ] {
        assert!(
            routes.contains(&(expected.0.into(), expected.1.into())),
            "the scan of api/mod.rs missed {expected:?}: {routes:?}"
        );
    }
    let server = Server::start(None);
    let doc: Value = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let missing: Vec<_> = routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes of crates/agentd-runtime/src/api/mod.rs missing from /openapi.json (describe \
         them in crates/agentd-runtime/src/api/openapi.rs): {missing:?}"
    );
    // /ok and /info are public; every other agent route names the API key schemes.
    for (method, path) in &routes {
        let op = &doc["paths"][path][method.to_lowercase()];
        let schemes: BTreeSet<&str> = op["security"]
            .as_array()
            .map(|reqs| {
                reqs.iter()
                    .flat_map(|r| r.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<&str> = match path.as_str() {
            "/ok" | "/info" => BTreeSet::new(),
            p if p.starts_with("/admin/") => ["admin_key"].into(),
            _ => ["bearer_api_key", "x_api_key"].into(),
        };
        assert_eq!(schemes, want, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_and_queries_are_refused_as_json() {
    let server = Server::start(None);
    let key = server.create_key("malformed", None);
    let c = client();
    // Regression: axum's own rejections answered these in text/plain, which no SDK parses and
    // the OpenAPI document does not describe.
    let cases = [
        (
            "/admin/keys?tenant=a&tenant=b",
            ADMIN_KEY.to_owned(),
            "invalid_query",
        ),
        ("/admin/keys/%FF", ADMIN_KEY.to_owned(), "invalid_path"),
        (
            "/admin/spend?group_by=a&group_by=b",
            ADMIN_KEY.to_owned(),
            "invalid_query",
        ),
        ("/v1/models/%FF%FE", key.clone(), "invalid_path"),
    ];
    for (path, secret, code) in cases {
        let resp = c
            .get(server.url(path))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(content_type(&resp), "application/json", "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
    let resp = c
        .delete(server.url("/admin/keys/%C3%28"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(content_type(&resp), "application/json");
}
