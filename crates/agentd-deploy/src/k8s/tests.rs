use std::path::Path;

use serde_json::{json, Value};

use super::test_support::{config, json, options, GLOBAL, LITERAL_SECRET};
use super::*;
use crate::context;

fn pool<'a>(c: &'a agentd_config::Config, name: &str) -> &'a agentd_config::PoolConfig {
    c.pool(name).unwrap()
}

fn file<'a>(files: &'a [File], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("no {path} in {:?}", paths(files)))
        .contents
}

fn paths(files: &[File]) -> Vec<String> {
    files.iter().map(|f| f.path.display().to_string()).collect()
}

#[test]
fn gpu_pool_business_hours_become_a_cron_trigger_and_redis_stream_triggers() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "gpu")));
    let spec = &so["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], "agentd-worker-gpu");
    // Off hours 0..3, business hours up to 10: KEDA's bounds are 0 and 10.
    assert_eq!(spec["minReplicaCount"], 0);
    assert_eq!(spec["maxReplicaCount"], 10);
    // Idle shutdown 10 minutes.
    assert_eq!(spec["cooldownPeriod"], 600);
    assert_eq!(
        spec.pointer(
            "/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown/stabilizationWindowSeconds"
        ),
        Some(&json!(600))
    );
    let triggers = spec["triggers"].as_array().unwrap();
    let cron: Vec<&Value> = triggers.iter().filter(|t| t["type"] == "cron").collect();
    assert_eq!(cron.len(), 1);
    assert_eq!(
        cron[0]["metadata"],
        json!({
            "timezone": "America/Los_Angeles",
            "start": "0 9 * * 1-5",
            "end": "0 18 * * 1-5",
            "desiredReplicas": "2"
        })
    );
    let redis: Vec<&Value> = triggers
        .iter()
        .filter(|t| t["type"] == "redis-streams")
        .collect();
    let streams: Vec<&str> = redis
        .iter()
        .map(|t| t["metadata"]["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        streams,
        [
            "acme:q:gpu.critical",
            "acme:q:gpu.high",
            "acme:q:gpu.normal",
            "acme:q:gpu.low"
        ]
    );
    for t in &redis {
        // One replica per `concurrency` runs waiting or running (XLEN). Naming the consumer
        // group would make KEDA read the pending list or the lag instead.
        assert_eq!(t["metadata"]["streamLength"], "2");
        assert!(t["metadata"].get("consumerGroup").is_none(), "{t}");
        assert!(t["metadata"].get("lagCount").is_none(), "{t}");
        assert_eq!(t["metadata"]["databaseIndex"], "0");
        assert_eq!(t["authenticationRef"]["name"], "agentd-queue");
    }
}

#[test]
fn persistent_pool_never_goes_below_its_maximum() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "batch")));
    assert_eq!(so["spec"]["minReplicaCount"], 4);
    assert_eq!(so["spec"]["maxReplicaCount"], 4);
    assert!(!so["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["type"] == "cron"));

    // With business hours a persistent pool holds the business maximum then.
    let text = GLOBAL.replace(
        "persistent = true",
        "persistent = true\n[pools.batch.business_hours]\ntimezone = \"Europe/Paris\"\nstart = \"08:00\"\nend = \"20:00\"\nmin_workers = 2\nmax_workers = 8",
    );
    let c = config(&text);
    let ctx = context(&c, &options(&text)).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "batch")));
    assert_eq!(so["spec"]["minReplicaCount"], 4);
    assert_eq!(so["spec"]["maxReplicaCount"], 8);
    let cron = so["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "cron")
        .unwrap()
        .clone();
    assert_eq!(cron["metadata"]["desiredReplicas"], "8");
    assert_eq!(cron["metadata"]["timezone"], "Europe/Paris");
    assert_eq!(cron["metadata"]["start"], "0 8 * * 1-5");
}

#[test]
fn grace_period_covers_pre_stop_and_drain() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    assert_eq!(ctx.drain_seconds, 45);
    let names = Names::new(&ctx).unwrap();
    let api = json(&workload::deployment(&ctx, &names, &Kind::Api));
    let pod = &api["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let pre_stop = pod
        .pointer("/containers/0/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_u64)
        .unwrap();
    assert!(grace > pre_stop + ctx.drain_seconds, "{grace}");
    assert_eq!(grace, 55);
    let worker = json(&workload::deployment(
        &ctx,
        &names,
        &Kind::Worker(pool(&c, "cpu")),
    ));
    let grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(grace > ctx.drain_seconds);
    assert!(worker
        .pointer("/spec/template/spec/containers/0/lifecycle")
        .is_none());
}

#[test]
fn deployments_are_locked_down_and_gpu_workers_get_a_gpu() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let gpu = json(&workload::deployment(
        &ctx,
        &names,
        &Kind::Worker(pool(&c, "gpu")),
    ));
    let pod = &gpu["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    let env = container["env"].as_array().unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(value("AGENTD_ROLE")["value"], "worker");
    assert_eq!(value("AGENTD_POOLS")["value"], "gpu");
    assert_eq!(value("AGENTD_REGION")["value"], "cdg");
    // Secrets by name, from the Secret the user creates.
    let key = value("DATABASE_URL");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "agentd-secrets");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["key"], "DATABASE_URL");
    assert_eq!(key["valueFrom"]["secretKeyRef"]["optional"], false);
    assert_eq!(
        value("AGENTD_ADMIN_KEY")["valueFrom"]["secretKeyRef"]["optional"],
        true
    );
    let cpu = json(&workload::deployment(
        &ctx,
        &names,
        &Kind::Worker(pool(&c, "cpu")),
    ));
    assert!(cpu["spec"]["template"]["spec"]
        .get("nodeSelector")
        .is_none());
    assert!(cpu
        .pointer("/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu")
        .is_none());
}

#[test]
fn renders_every_file_and_one_overlay_per_region() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    for path in [
        "k8s/base/kustomization.yaml",
        "k8s/base/agentd.toml",
        "k8s/base/serviceaccount.yaml",
        "k8s/base/deployment-api.yaml",
        "k8s/base/deployment-worker-cpu.yaml",
        "k8s/base/deployment-worker-gpu.yaml",
        "k8s/base/deployment-worker-batch.yaml",
        "k8s/base/service.yaml",
        "k8s/base/pdb.yaml",
        "k8s/base/hpa-api.yaml",
        "k8s/base/keda-auth.yaml",
        "k8s/base/keda-cpu.yaml",
        "k8s/base/keda-gpu.yaml",
        "k8s/base/keda-batch.yaml",
        "k8s/base/ingress.yaml",
        "k8s/create-secret.sh",
        "k8s/prometheus-adapter.yaml",
        "k8s/README.md",
    ] {
        file(&files, path);
    }
    let overlays: Vec<String> = paths(&files)
        .into_iter()
        .filter(|p| p.starts_with("k8s/overlays/") && p.ends_with("/kustomization.yaml"))
        .collect();
    assert_eq!(
        overlays,
        [
            "k8s/overlays/cdg/kustomization.yaml",
            "k8s/overlays/nrt/kustomization.yaml",
            "k8s/overlays/sjc/kustomization.yaml",
            "k8s/overlays/ewr/kustomization.yaml"
        ]
    );
    let cdg = file(&files, "k8s/overlays/cdg/kustomization.yaml");
    assert!(cdg.contains("PRIMARY"), "{cdg}");
    assert!(cdg.contains("namespace: agentd-cdg"));
    assert!(cdg.contains("agentd/primary: \"true\""));
    assert!(cdg.contains("value: cdg"));
    assert!(!cdg.contains("$patch"), "the primary keeps its workers");
    let nrt = file(&files, "k8s/overlays/nrt/kustomization.yaml");
    assert!(nrt.contains("namespace: agentd-nrt"));
    assert!(nrt.contains("value: nrt"));
    assert!(nrt.contains("asia-northeast1"));
    assert!(nrt.contains("agentd/primary: \"false\""));
    // Every region keeps its workers: the runs of the tenants pinned there live in its store.
    assert!(!nrt.contains("$patch"), "{nrt}");
    assert!(nrt.contains("workers for the tenants whose home region this is"));
    assert!(file(&files, "k8s/create-secret.sh").contains("cdg|nrt|sjc|ewr"));
    assert_eq!(
        files
            .iter()
            .find(|f| f.path == Path::new("k8s/create-secret.sh"))
            .unwrap()
            .mode,
        0o755
    );
    // The config ships verbatim; the kustomization generates the ConfigMap from it.
    assert_eq!(file(&files, "k8s/base/agentd.toml"), GLOBAL);
    let kustomization = file(&files, "k8s/base/kustomization.yaml");
    assert!(kustomization.contains("configMapGenerator"));
    assert!(kustomization.contains("- keda-gpu.yaml"));
    let hpa = file(&files, "k8s/base/hpa-api.yaml");
    assert!(hpa.contains("agentd_http_requests_in_flight"));
    assert!(hpa.contains("averageUtilization: 70"));
    assert!(file(&files, "k8s/base/ingress.yaml").contains("host: agents.example.com"));
}

#[test]
fn no_secret_value_in_any_file() {
    let c = config(GLOBAL);
    let files = crate::render(&c, crate::Target::K8s, &options(GLOBAL)).unwrap();
    for f in &files {
        if f.path == Path::new("k8s/base/agentd.toml") {
            // The user's own file, shipped as written (its ConfigMap is theirs to protect).
            continue;
        }
        for secret in [LITERAL_SECRET, "pw-env-value", "redis-env-pw"] {
            assert!(
                !f.contents.contains(secret),
                "{} contains a secret value",
                f.path.display()
            );
        }
    }
    let script = file(&files, "k8s/create-secret.sh");
    assert!(script.contains("--from-literal=\"DATABASE_URL=${DATABASE_URL:?"));
    assert!(script.contains("KEDA_REDIS_ADDRESS"));
}

#[test]
fn sqlite_runs_one_replica_with_a_volume_and_no_autoscaling() {
    let text = "[server]\nshutdown_grace_ms = 20000\n[pools.gpu.business_hours]\ntimezone = \"Europe/Paris\"\nstart = \"09:00\"\nend = \"18:00\"\nmin_workers = 1\n";
    let c = config(text);
    let ctx = context(&c, &options(text)).unwrap();
    assert!(!ctx.split_roles);
    let files = render(&ctx).unwrap();
    let all = paths(&files);
    assert!(all.contains(&"k8s/base/deployment.yaml".to_owned()));
    assert!(all.contains(&"k8s/base/pvc.yaml".to_owned()));
    for absent in [
        "hpa-api.yaml",
        "pdb.yaml",
        "keda-gpu.yaml",
        "deployment-api.yaml",
    ] {
        assert!(!all.contains(&format!("k8s/base/{absent}")), "{absent}");
    }
    let d = file(&files, "k8s/base/deployment.yaml");
    assert!(d.contains("replicas: 1"));
    assert!(d.contains("type: Recreate"));
    assert!(d.contains("claimName: agentd-data"));
    assert!(d.contains("terminationGracePeriodSeconds: 30"));
    // One region (cdg by default).
    assert!(all.contains(&"k8s/overlays/cdg/kustomization.yaml".to_owned()));
}

#[test]
fn nats_and_store_queues_get_their_scalers() {
    let nats = "[store]\nkind = \"postgres\"\nurl = \"postgres://a@db/x\"\n[queue]\nkind = \"nats\"\nurl = \"nats://nats:4222\"\n";
    let c = config(nats);
    let ctx = context(&c, &options(nats)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "cpu")));
    let t = &so["spec"]["triggers"][2];
    assert_eq!(t["type"], "nats-jetstream");
    assert_eq!(t["metadata"]["stream"], "agentd_work");
    assert_eq!(t["metadata"]["consumer"], "q_cpu_2enormal");
    assert_eq!(t["metadata"]["account"], "$G");
    assert_eq!(t["metadata"]["lagThreshold"], "16");

    let store = "[store]\nkind = \"postgres\"\nurl = \"postgres://a@db/x\"\n";
    let c = config(store);
    let ctx = context(&c, &options(store)).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "gpu")));
    let triggers = so["spec"]["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["type"], "prometheus");
    assert_eq!(
        triggers[0]["metadata"]["query"],
        "max(agentd_pool_desired_workers{pool=\"gpu\"})"
    );
    assert!(keda::trigger_auth(&ctx, &names).is_none());
}
