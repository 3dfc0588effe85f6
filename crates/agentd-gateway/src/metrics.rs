//! Prometheus metrics. Labels stay low-cardinality: route, status, model, provider, error
//! kind — never user text or key ids.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub(crate) const HTTP_REQUESTS: &str = "agentd_http_requests_total";
pub(crate) const HTTP_DURATION: &str = "agentd_http_request_duration_seconds";
pub(crate) const HTTP_INFLIGHT: &str = "agentd_http_requests_in_flight";
pub(crate) const UPSTREAM_REQUESTS: &str = "agentd_upstream_requests_total";
pub(crate) const UPSTREAM_DURATION: &str = "agentd_upstream_duration_seconds";
pub(crate) const TIME_TO_FIRST_TOKEN: &str = "agentd_time_to_first_token_seconds";
pub(crate) const TOKENS: &str = "agentd_tokens_total";
pub(crate) const ERRORS: &str = "agentd_errors_total";
pub(crate) const BUILD_INFO: &str = "agentd_build_info";
pub(crate) const LOAD_SHED: &str = "agentd_load_shed_total";
/// `1`, labelled with the instance's region (`-` when unknown) and primary region.
pub(crate) const INSTANCE_INFO: &str = "agentd_instance_info";
/// Requests sent to another region, by region and how (`forward`, `fly-replay`, `failed`).
pub(crate) const REGION_SENT: &str = "agentd_region_sent_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub(crate) fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // A second gateway in the same process (tests) shares the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples pile up in the recorder until something drains them; a
            // gateway nobody scrapes would grow without bound. Drain them periodically.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            // Shown at 0 before the first refusal, so alerts on its rate have a series.
            metrics::counter!(LOAD_SHED).absolute(0);
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route and status");
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to the response head, by route"
    );
    describe_gauge!(HTTP_INFLIGHT, "HTTP requests being served");
    describe_counter!(
        UPSTREAM_REQUESTS,
        "Calls to providers, by provider, model and outcome"
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Whole upstream call duration (to the last byte), by provider and model"
    );
    describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "Time from the request to the first streamed event, by provider and model"
    );
    describe_counter!(
        TOKENS,
        "Tokens by provider, model and direction (input/output)"
    );
    describe_counter!(ERRORS, "Errors answered, by kind and by who caused them");
    describe_counter!(
        LOAD_SHED,
        "Requests refused at once (503 overloaded) because server.max_concurrent_requests were in flight"
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which agentd runs"
    );
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

use metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::sync::RwLock;

/// Handles for the metrics of one (model, provider) pair, resolved once at start-up so the
/// request path does not build label sets and hash them on every call.
pub(crate) struct CallMetrics {
    pub provider: String,
    pub model: String,
    ok: Counter,
    tokens_in: Counter,
    tokens_out: Counter,
    duration: Histogram,
    ttft: Histogram,
}

impl CallMetrics {
    /// Needs the recorder installed first ([`handle`]); handles made before it are no-ops.
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        let (p, m) = (provider.to_owned(), model.to_owned());
        CallMetrics {
            ok: metrics::counter!(UPSTREAM_REQUESTS, "provider" => p.clone(), "model" => m.clone(), "outcome" => "ok"),
            tokens_in: metrics::counter!(TOKENS, "provider" => p.clone(), "model" => m.clone(), "direction" => "input"),
            tokens_out: metrics::counter!(TOKENS, "provider" => p.clone(), "model" => m.clone(), "direction" => "output"),
            duration: metrics::histogram!(UPSTREAM_DURATION, "provider" => p.clone(), "model" => m.clone()),
            ttft: metrics::histogram!(TIME_TO_FIRST_TOKEN, "provider" => p.clone(), "model" => m.clone()),
            provider: p,
            model: m,
        }
    }

    pub(crate) fn outcome(&self, outcome: &'static str, elapsed: Duration) {
        if outcome == "ok" {
            self.ok.increment(1);
        } else {
            metrics::counter!(UPSTREAM_REQUESTS, "provider" => self.provider.clone(), "model" => self.model.clone(), "outcome" => outcome)
                .increment(1);
        }
        self.duration.record(secs(elapsed));
    }

    pub(crate) fn tokens(&self, usage: agentd_core::Usage) {
        self.tokens_in.increment(usage.input_tokens);
        self.tokens_out.increment(usage.output_tokens);
    }

    pub(crate) fn first_token(&self, elapsed: Duration) {
        self.ttft.record(secs(elapsed));
    }
}

/// Request counters and latency histograms per (route, status), made on first use.
/// Per route: each status seen, with its counter and the route's histogram.
type ByRoute = HashMap<Box<str>, Vec<(u16, Counter, Histogram)>>;

#[derive(Default)]
pub(crate) struct HttpMetrics {
    by_route: RwLock<ByRoute>,
}

impl HttpMetrics {
    pub(crate) fn record(&self, route: &str, status: u16, elapsed: Duration) {
        {
            let map = self.by_route.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, c, h)) = map
                .get(route)
                .and_then(|v| v.iter().find(|(s, _, _)| *s == status))
            {
                c.increment(1);
                h.record(secs(elapsed));
                return;
            }
        }
        let counter = metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.to_string());
        let histogram = metrics::histogram!(HTTP_DURATION, "route" => route.to_owned());
        counter.increment(1);
        histogram.record(secs(elapsed));
        // Routes are ours and statuses few, so this map stays small.
        let mut map = self.by_route.write().unwrap_or_else(|e| e.into_inner());
        map.entry(Box::from(route))
            .or_default()
            .push((status, counter, histogram));
    }
}
