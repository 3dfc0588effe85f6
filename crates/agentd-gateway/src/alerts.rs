//! Budget alerts: a WARN log event, a metric, and an optional webhook POST per alert.
//!
//! Webhooks are sent by background tasks (tracked, so a drain waits for them) with a few
//! retries; a slow or failing webhook never delays a request.

use agentd_config::{BudgetLimit, Secret};
use agentd_core::Micros;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio_util::task::TaskTracker;

use crate::admission::BUDGET_ALERTS;

const WEBHOOK_ATTEMPTS: u32 = 3;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

type WebhookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub(crate) struct Alerts {
    webhook: Option<(Secret, WebhookClient)>,
    tracker: TaskTracker,
}

impl Alerts {
    pub(crate) fn new(webhook: Option<Secret>) -> Alerts {
        let webhook = webhook.map(|url| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .build();
            (url, Client::builder(TokioExecutor::new()).build(https))
        });
        Alerts {
            webhook,
            tracker: TaskTracker::new(),
        }
    }

    /// Background work that a drain must wait for (settlements, alerts).
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Waits for every tracked task (used on drain).
    pub(crate) async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub(crate) fn budget_alert(&self, budget: &BudgetLimit, what: &str, pct: i64, value: Micros) {
        tracing::warn!(
            budget = %budget.name,
            scope = %what,
            threshold_percent = pct,
            spent_or_reserved = %value,
            limit = %budget.limit,
            "Budget alert"
        );
        metrics::counter!(BUDGET_ALERTS, "budget" => budget.name.clone(), "threshold" => pct.to_string())
            .increment(1);
        let Some((url, client)) = &self.webhook else {
            return;
        };
        let body = serde_json::json!({
            "type": "budget_alert",
            "budget": budget.name,
            "scope": what,
            "threshold_percent": pct,
            "spent_or_reserved_usd": value.to_string(),
            "limit_usd": budget.limit.to_string(),
            "at": chrono::Utc::now().to_rfc3339(),
        });
        let body = Bytes::from(body.to_string());
        let url = url.expose().to_owned();
        let client = client.clone();
        self.tracker.spawn(async move {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=WEBHOOK_ATTEMPTS {
                let req = match http::Request::post(&url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(
                        http::header::USER_AGENT,
                        concat!("agentd/", env!("CARGO_PKG_VERSION")),
                    )
                    .body(Full::new(body.clone()))
                {
                    Ok(req) => req,
                    Err(_) => {
                        tracing::error!("budgets.alert_webhook is not a valid URL; alert not sent");
                        return;
                    }
                };
                match tokio::time::timeout(WEBHOOK_TIMEOUT, client.request(req)).await {
                    Ok(Ok(resp)) if resp.status().is_success() => return,
                    Ok(Ok(resp)) => tracing::warn!(
                        status = resp.status().as_u16(),
                        attempt,
                        "Budget alert webhook answered an error"
                    ),
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, attempt, "Budget alert webhook unreachable")
                    }
                    Err(_) => tracing::warn!(attempt, "Budget alert webhook timed out"),
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            tracing::error!(
                "Budget alert webhook failed {WEBHOOK_ATTEMPTS} times; alert not delivered"
            );
        });
    }
}
