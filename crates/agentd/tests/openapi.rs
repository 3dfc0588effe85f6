//! Black-box tests of the OpenAPI document at `/openapi.json` and of answers the fuzzer
//! (tests/fuzz) checks against it.

mod common;

use common::*;
use serde_json::Value;

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
            let url = server.url(&path.replace("{id}", "some-id"));
            let req = match method.as_str() {
                "get" => c.get(&url),
                "post" => c.post(&url).body("{}"),
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
