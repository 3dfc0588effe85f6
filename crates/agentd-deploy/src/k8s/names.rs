//! Object names, labels and the queue names KEDA's scalers must target.
//!
//! The queue names are written by `agentd-queue` (`RedisQueue::stream_key`, the NATS backend's
//! `consumer_name`) for the stream `<pool>.<priority>` the runtime enqueues to
//! (`Runtime::stream_name`). They are repeated here rather than imported: this crate must not
//! pull in the Redis and NATS clients to print a name. A change there must change these too.

use crate::{Ctx, RenderError};

/// Run priorities, as the runtime names their streams (`agentd_core::Priority::ALL`).
pub(crate) const PRIORITIES: [&str; 4] = ["critical", "high", "normal", "low"];

/// The label every object carries, with the app name.
pub(crate) const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `api`, `worker` or `all`.
pub(crate) const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The worker pool of a worker Deployment.
pub(crate) const POOL_LABEL: &str = "agentd/pool";
/// Region code, set by each overlay.
pub(crate) const REGION_LABEL: &str = "agentd/region";

/// The name of the container in every Deployment (overlays patch it by this name).
pub(crate) const CONTAINER: &str = "agentd";

/// The queue stream of `pool` at `priority` (`Runtime::stream_name`).
pub(crate) fn queue_stream(pool: &str, priority: &str) -> String {
    format!("{pool}.{priority}")
}

/// The Redis stream key of a queue stream (`RedisQueue::stream_key`).
pub(crate) fn redis_stream_key(prefix: &str, stream: &str) -> String {
    format!("{prefix}:q:{stream}")
}

/// The JetStream stream holding every queue stream (`NatsQueue::work_stream`).
pub(crate) fn nats_work_stream(prefix: &str) -> String {
    format!("{prefix}_work")
}

/// The durable consumer of a queue stream (`consumer_name` in the NATS backend): every byte
/// other than ASCII letters, digits and `-` written `_xx`.
pub(crate) fn nats_consumer(stream: &str) -> String {
    let mut out = String::from("q_");
    for byte in stream.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// Kubernetes object names of one render.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) app: String,
}

impl Names {
    pub(crate) fn new(ctx: &Ctx<'_>) -> Result<Names, RenderError> {
        let names = Names {
            app: ctx.app.clone(),
        };
        // Every name must stay a DNS label (63 characters), the longest being a worker's.
        let mut seen: Vec<String> = Vec::new();
        for pool in ctx.pools() {
            let name = names.worker(&pool.name);
            if name.len() > 63 {
                return Err(RenderError::Invalid(format!(
                    "the Kubernetes name \"{name}\" of pool \"{}\" is longer than 63 characters; shorten [deploy] app or the pool name",
                    pool.name
                )));
            }
            if seen.contains(&name) {
                return Err(RenderError::Invalid(format!(
                    "pools \"{}\" and another pool map to the same Kubernetes name \"{name}\" (names are lower-cased, '_' becomes '-'); rename one",
                    pool.name
                )));
            }
            seen.push(name);
        }
        Ok(names)
    }

    /// The api Deployment, its HPA and PDB.
    pub(crate) fn api(&self) -> String {
        format!("{}-api", self.app)
    }

    /// The worker Deployment (and ScaledObject) of `pool`.
    pub(crate) fn worker(&self, pool: &str) -> String {
        format!("{}-worker-{}", self.app, dns_label(pool))
    }

    /// The Service (and Ingress) clients reach.
    pub(crate) fn service(&self) -> String {
        self.app.clone()
    }

    /// The ConfigMap holding agentd.toml (kustomize appends a content hash).
    pub(crate) fn config(&self) -> String {
        format!("{}-config", self.app)
    }

    /// The Secret the user creates (never rendered).
    pub(crate) fn secret(&self) -> String {
        format!("{}-secrets", self.app)
    }

    /// KEDA's TriggerAuthentication for the queue.
    pub(crate) fn queue_auth(&self) -> String {
        format!("{}-queue", self.app)
    }

    /// The namespace of a region's overlay.
    pub(crate) fn namespace(&self, region: &str) -> String {
        format!("{}-{region}", self.app)
    }
}

/// `s` as a DNS label: lower case, `_` and other characters become `-`.
pub(crate) fn dns_label(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches('-').to_owned()
}

/// Whether a pool's workers need a GPU: the built-in `gpu` pool and any pool named with `gpu`.
pub(crate) fn is_gpu_pool(pool: &str) -> bool {
    pool.to_ascii_lowercase().contains("gpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_match_the_backends() {
        let stream = queue_stream("gpu", "normal");
        assert_eq!(stream, "gpu.normal");
        assert_eq!(redis_stream_key("agentd", &stream), "agentd:q:gpu.normal");
        assert_eq!(nats_work_stream("agentd"), "agentd_work");
        // '.' is 0x2e.
        assert_eq!(nats_consumer(&stream), "q_gpu_2enormal");
        assert_eq!(nats_consumer("a_b-c.d"), "q_a_5fb-c_2ed");
    }

    #[test]
    fn labels_are_dns_safe() {
        assert_eq!(dns_label("GPU_heavy"), "gpu-heavy");
        assert!(is_gpu_pool("gpu") && is_gpu_pool("embed-gpu") && !is_gpu_pool("cpu"));
    }
}
