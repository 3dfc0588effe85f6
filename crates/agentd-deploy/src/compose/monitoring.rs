//! Prometheus scraping the agentd services, and Grafana provisioned with a Prometheus data
//! source and the agentd dashboard (`assets/grafana-dashboard.json`).

use crate::yaml::{list, map, v, Node};
use crate::Ctx;

/// The dashboard: requests, latency, providers, spend drivers, queues, workers, runs.
pub(crate) const DASHBOARD: &str = include_str!("../../assets/grafana-dashboard.json");

/// The data source uid the dashboard's panels name.
pub(crate) const DATASOURCE_UID: &str = "prometheus";

/// Where Grafana reads dashboards from inside its container.
pub(crate) const DASHBOARDS_DIR: &str = "/etc/grafana/dashboards";

/// `prometheus.yml`: each agentd service found through Docker's DNS (every replica of a
/// scaled service answers), labelled with its role and region.
pub(crate) fn prometheus_config(ctx: &Ctx<'_>, services: &[(&str, &str)]) -> Node {
    let mut jobs: Vec<Node> = services
        .iter()
        .map(|(service, role)| {
            map([
                ("job_name", v(format!("agentd-{role}"))),
                ("metrics_path", v("/metrics")),
                (
                    "dns_sd_configs",
                    list([map([
                        ("names", list([v((*service).to_owned())])),
                        ("type", v("A")),
                        ("port", v(ctx.port)),
                        ("refresh_interval", v("30s")),
                    ])]),
                ),
                (
                    "relabel_configs",
                    list([
                        map([
                            ("target_label", v("role")),
                            ("replacement", v((*role).to_owned())),
                        ]),
                        map([
                            ("target_label", v("region")),
                            ("replacement", v(ctx.primary.code)),
                        ]),
                    ]),
                ),
            ])
        })
        .collect();
    jobs.push(map([
        ("job_name", v("prometheus")),
        (
            "static_configs",
            list([map([("targets", list([v("localhost:9090")]))])]),
        ),
    ]));
    map([
        (
            "global",
            map([
                ("scrape_interval", v("15s")),
                ("evaluation_interval", v("15s")),
            ]),
        ),
        ("scrape_configs", list(jobs)),
    ])
}

pub(crate) fn datasource() -> Node {
    map([
        ("apiVersion", v(1)),
        (
            "datasources",
            list([map([
                ("name", v("Prometheus")),
                ("uid", v(DATASOURCE_UID)),
                ("type", v("prometheus")),
                ("access", v("proxy")),
                ("url", v("http://prometheus:9090")),
                ("isDefault", v(true)),
                ("editable", v(false)),
            ])]),
        ),
    ])
}

pub(crate) fn dashboard_provider() -> Node {
    map([
        ("apiVersion", v(1)),
        (
            "providers",
            list([map([
                ("name", v("agentd")),
                ("folder", v("agentd")),
                ("type", v("file")),
                ("disableDeletion", v(true)),
                ("allowUiUpdates", v(false)),
                ("updateIntervalSeconds", v(30)),
                ("options", map([("path", v(DASHBOARDS_DIR))])),
            ])]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_is_json_with_the_panels_operators_need() {
        let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
        assert_eq!(d["uid"], "agentd");
        let exprs: Vec<String> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] != "row")
            .flat_map(|p| {
                assert_eq!(p["datasource"]["uid"], DATASOURCE_UID, "{}", p["title"]);
                p["targets"].as_array().unwrap().clone()
            })
            .map(|t| t["expr"].as_str().unwrap().to_owned())
            .collect();
        // Every instance reports every queue stream: each is counted once (max over the
        // instances of a region) before a pool's streams are added; the oldest age is a max.
        for gauge in [
            "agentd_queue_depth",
            "agentd_queue_in_flight",
            "agentd_queue_dead_letters",
        ] {
            let uses: Vec<&String> = exprs.iter().filter(|e| e.contains(gauge)).collect();
            assert!(!uses.is_empty(), "{gauge}");
            for e in uses {
                assert_eq!(
                    *e,
                    format!("sum by (pool) (max by (region, pool, stream) ({gauge}))")
                );
            }
        }
        for e in exprs
            .iter()
            .filter(|e| e.contains("agentd_queue_oldest_age_seconds"))
        {
            assert_eq!(e, "max by (pool) (agentd_queue_oldest_age_seconds)");
        }
        for metric in [
            "agentd_http_requests_total",
            "agentd_http_request_duration_seconds_bucket",
            "agentd_tokens_total",
            "agentd_queue_depth",
            "agentd_workers_busy",
            "agentd_pool_desired_workers",
            "agentd_runs_finished_total",
        ] {
            assert!(exprs.iter().any(|e| e.contains(metric)), "{metric}");
        }
    }
}
