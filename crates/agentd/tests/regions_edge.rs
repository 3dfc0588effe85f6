//! The edges of region routing that the four-region test does not reach, each a defect found
//! by review: a replica that lags behind the primary (a new key), a primary that is down while
//! bogus keys arrive, read-your-writes opened only by state writes, admin reports answered by
//! their own region, and a run made before its tenant was pinned elsewhere.
//!
//! Two instances (cdg primary, nrt) on PostgreSQL schemas, reaching each other through
//! re-pointable TCP links. nrt's `replica_url` is a third schema that never receives anything:
//! a replica as far behind as it gets.

#![cfg(feature = "postgres")]

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A TCP link whose target can be set, or unset: the region is then down — open connections
/// are cut and new ones closed at once.
struct Link {
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Link {
    async fn start() -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let open: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (to, conns) = (target.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(dest) = *to.lock().unwrap() else {
                    continue; // dropped: the region is down
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(dest).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Link { addr, target, open }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn point(&self, to: Option<SocketAddr>) {
        *self.target.lock().unwrap() = to;
        if to.is_none() {
            for conn in self.open.lock().unwrap().drain(..) {
                conn.abort();
            }
        }
    }
}

fn schema_url(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{schema}")
}

fn config(region: &str, store: &str, replica: Option<&str>, other: (&str, &str)) -> String {
    let replica = replica
        .map(|r| format!("replica_url = \"{r}\"\n"))
        .unwrap_or_default();
    format!(
        r#"
[server]
region = "{region}"
shutdown_grace_ms = 1000

[store]
kind = "postgres"
url = "{store}"
max_connections = 4
{replica}
[auth]
admin_key = "{ADMIN_KEY}"
key_cache_ttl_ms = 100

[regions]
list = ["cdg", "nrt"]
primary = "cdg"
routing = "forward"

[regions.urls]
{} = "{}"

[providers.local]
kind = "mock"

[models.mock]
provider = "local"

[agents.echo]
model = "mock"
"#,
        other.0, other.1
    )
}

async fn call(req: reqwest::RequestBuilder) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let served = headers
        .get("agentd-region")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, served, body, headers)
}

async fn key(http: &reqwest::Client, cdg: &Server, tenant: &str) -> String {
    let (status, _, body, _) = call(
        http.post(cdg.url("/admin/keys"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": tenant, "tenant": tenant})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_edges_lagging_replica_primary_down_writes_reports_and_old_runs() {
    let Some(base) = env_url("AGENTD_TEST_POSTGRES_URL") else {
        return;
    };
    let stem = unique("agentd_re");
    let names = [
        format!("{stem}_cdg"),
        format!("{stem}_nrt"),
        format!("{stem}_stale"),
    ];
    for name in &names {
        agentd_store::Store::open_postgres_in_schema(&base, name)
            .await
            .unwrap()
            .close()
            .await;
    }
    let to_cdg = Link::start().await;
    let to_nrt = Link::start().await;
    let cdg_cfg = config(
        "cdg",
        &schema_url(&base, &names[0]),
        None,
        ("nrt", &to_nrt.url()),
    );
    let stale = schema_url(&base, &names[2]);
    let nrt_cfg = config(
        "nrt",
        &schema_url(&base, &names[1]),
        Some(&stale),
        ("cdg", &to_cdg.url()),
    );
    let cdg = Server::start(Some(&cdg_cfg));
    let nrt = Server::start(Some(&nrt_cfg));
    to_cdg.point(Some(cdg.addr));
    to_nrt.point(Some(nrt.addr));
    let http = client();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&base)
        .await
        .unwrap();

    let free = key(&http, &cdg, "free").await;
    let jp = key(&http, &cdg, "jp").await;
    let (status, _, body, _) = call(
        http.put(cdg.url("/admin/tenants/jp"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"home_region": "nrt"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // 1. nrt's replica has no keys: an unpinned tenant's new key is checked (and served) by
    //    the primary; a key of a tenant whose home is nrt comes back as "not replicated yet",
    //    retryable — not 421, and never served in cdg.
    let (status, served, body, _) = call(http.get(nrt.url("/v1/models")).bearer_auth(&free)).await;
    assert_eq!((status, served.as_str()), (200, "cdg"), "{body}");
    let (status, served, body, headers) =
        call(http.get(nrt.url("/v1/models")).bearer_auth(&jp)).await;
    assert_eq!((status, served.as_str()), (503, "cdg"), "{body}");
    assert_eq!(body["error"]["code"], "key_not_replicated", "{body}");
    assert_eq!(headers["retry-after"], "1");

    // 2. The primary down: a bogus key at nrt is a plain 401, not a region outage.
    to_cdg.point(None);
    let (status, served, body, _) = call(
        http.get(nrt.url("/v1/models"))
            .bearer_auth("sk-agentd-not-a-key-0123456789"),
    )
    .await;
    assert_eq!((status, served.as_str()), (401, "nrt"), "{body}");
    to_cdg.point(Some(cdg.addr));

    // 3. Read-your-writes opens on agent-API writes, not on LLM calls (served everywhere).
    let (status, _, body, headers) = call(
        http.post(cdg.url("/v1/chat/completions"))
            .bearer_auth(&free)
            .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!headers.contains_key("agentd-primary-until"), "{headers:?}");
    let (status, _, body, headers) = call(
        http.post(cdg.url("/threads"))
            .bearer_auth(&free)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let until: i64 = headers["agentd-primary-until"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(until > chrono::Utc::now().timestamp_millis());

    // 4. Admin: nrt's own ledger and breakers from nrt, the directory from the primary.
    for (path, region) in [
        ("/admin/spend", "nrt"),
        ("/admin/breakers", "nrt"),
        ("/admin/keys", "cdg"),
        ("/admin/tenants", "cdg"),
    ] {
        let (status, served, body, _) = call(http.get(nrt.url(path)).bearer_auth(ADMIN_KEY)).await;
        assert_eq!((status, served.as_str()), (200, region), "{path}: {body}");
    }

    // 5. A run queued before its tenant was pinned to nrt ends in error in cdg without a
    //    model call: no ledger row of the tenant in cdg.
    let later = key(&http, &cdg, "later").await;
    let (status, _, thread, _) = call(
        http.post(cdg.url("/threads"))
            .bearer_auth(&later)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{thread}");
    let thread_id = thread["thread_id"].as_str().unwrap().to_owned();
    let (status, _, run, _) = call(
        http.post(cdg.url(&format!("/threads/{thread_id}/runs")))
            .bearer_auth(&later)
            .json(&json!({
                "assistant_id": "echo",
                "input": {"messages": [{"role": "user", "content": "hello"}]},
                "after_seconds": 2,
            })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let (status, _, body, _) = call(
        http.put(cdg.url("/admin/tenants/later"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"home_region": "nrt", "residency": "strict"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cdg_schema = &names[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, error) = loop {
        let row: (String, Option<String>) = sqlx::query_as(&format!(
            "select status, error from {cdg_schema}.runs where run_id = $1"
        ))
        .bind(&run_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if row.0 != "pending" && row.0 != "running" {
            break row;
        }
        assert!(Instant::now() < deadline, "run still {}", row.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, "error");
    assert!(
        error.unwrap_or_default().contains("home region"),
        "the run's error names the reason"
    );
    let (spent,): (i64,) = sqlx::query_as(&format!(
        "select count(*) from {cdg_schema}.spend where tenant = 'later'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(spent, 0, "no model call for a tenant pinned elsewhere");

    drop(cdg);
    drop(nrt);
    for name in &names {
        sqlx::query(&format!("drop schema if exists {name} cascade"))
            .execute(&pool)
            .await
            .unwrap();
    }
}
