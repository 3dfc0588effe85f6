//! `agentd serve` and `agentd keys` on the PostgreSQL store selected in the config, against the
//! real server named by `AGENTD_TEST_POSTGRES_URL` (skipped, and saying so, when it is unset;
//! a failure under CI).

mod common;

use common::*;
use serde_json::Value;

fn postgres_url() -> Option<String> {
    match std::env::var("AGENTD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("AGENTD_TEST_POSTGRES_URL must be set under CI (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped: AGENTD_TEST_POSTGRES_URL not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_keys_use_the_postgres_store_from_the_config() {
    let Some(base) = postgres_url() else { return };
    // A schema of our own, so parallel runs never see each other's keys.
    let schema = format!("agentd_gw_{}", std::process::id());
    let store = agentd_store::Store::open_postgres_in_schema(&base, &schema)
        .await
        .unwrap();
    store.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let config = format!(
        "[store]\nkind = \"postgres\"\nurl = \"{url}\"\n\n[providers.local]\nkind = \"mock\"\n\n[models.mock]\nprovider = \"local\"\n"
    );
    let server = Server::start(Some(&config));
    let key = server.create_key("pg", Some("acme"));
    let ready: Value = client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "postgres");
    assert_eq!(ready["status"], "ready");
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(
            &serde_json::json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list = server.cli(&["keys", "list", "--json", "--tenant", "acme"]);
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // The key landed in that schema, hashed.
    let rows = std::process::Command::new("psql")
        .args([
            &base,
            "-qtAc",
            &format!(
                "select count(*) from {schema}.api_keys where hash <> '' and hash not like 'sk-%'"
            ),
        ])
        .output();
    if let Ok(out) = rows {
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        }
    }
    assert!(
        !server.logs().contains("postgres://"),
        "the store URL must not be logged"
    );
    drop(server);
    let _ = std::process::Command::new("psql")
        .args([&base, "-qtAc", &format!("drop schema {schema} cascade")])
        .output();
}
