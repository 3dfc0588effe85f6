//! Prometheus metrics. Labels stay low-cardinality: route, status, model, provider, error
//! kind — never user text or key ids.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const HTTP_REQUESTS: &str = "agentd_http_requests_total";
pub const HTTP_DURATION: &str = "agentd_http_request_duration_seconds";
pub const HTTP_INFLIGHT: &str = "agentd_http_requests_in_flight";
pub const UPSTREAM_REQUESTS: &str = "agentd_upstream_requests_total";
pub const UPSTREAM_DURATION: &str = "agentd_upstream_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "agentd_time_to_first_token_seconds";
pub const TOKENS: &str = "agentd_tokens_total";
pub const ERRORS: &str = "agentd_errors_total";
pub const BUILD_INFO: &str = "agentd_build_info";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders `/metrics`.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // A second gateway in the same process (tests) shares the first recorder.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
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
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which agentd runs"
    );
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
