use std::path::Path;

use serde_json::{json, Value};

use super::test_support::{config, json, options, GLOBAL};
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
    assert_eq!(cron[0]["name"], "business_hours");
    assert_eq!(
        cron[0]["metadata"],
        json!({
            "timezone": "America/Los_Angeles",
            "start": "0 9 * * 1-5",
            "end": "0 18 * * 1-5",
            "desiredReplicas": "2"
        })
    );
    // The streams are added and the business-hours floor (2 workers of 2 runs) is in the same
    // formula: the HPA sees only the composite metric, target = concurrency per replica.
    assert_eq!(
        spec["advanced"]["scalingModifiers"],
        json!({
            "formula": "max(queue_critical + queue_high + queue_normal + queue_low, business_hours > 1 ? 4.0 : 0.0)",
            "target": "2",
            "activationTarget": "0",
            "metricType": "AverageValue"
        })
    );
    let redis: Vec<&Value> = triggers
        .iter()
        .filter(|t| t["type"] == "redis-streams")
        .collect();
    let names: Vec<&str> = redis.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["queue_critical", "queue_high", "queue_normal", "queue_low"]
    );
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
    // 8 workers of 4 runs each.
    assert_eq!(
        so["spec"]["advanced"]["scalingModifiers"]["formula"],
        "max(queue_critical + queue_high + queue_normal + queue_low, business_hours > 1 ? 32.0 : 0.0)"
    );
    assert_eq!(so["spec"]["advanced"]["scalingModifiers"]["target"], "4");
}

/// The value of `formula` for the trigger values `vars`: the only shapes the renderer writes,
/// `a + b + …` and `max(<sum>, t > 1 ? N : 0.0)`, evaluated as KEDA's expr would.
fn eval_formula(formula: &str, vars: &[(&str, f64)]) -> f64 {
    let var = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name.trim())
            .unwrap_or_else(|| panic!("{name} is not a trigger"))
            .1
    };
    let sum = |text: &str| text.split(" + ").map(var).sum::<f64>();
    match formula
        .strip_prefix("max(")
        .and_then(|f| f.strip_suffix(')'))
    {
        Some(inner) => {
            let (queues, floor) = inner.split_once(", ").unwrap();
            let (cond, branches) = floor.split_once(" ? ").unwrap();
            let (then, otherwise) = branches.split_once(" : ").unwrap();
            let (name, bound) = cond.split_once(" > ").unwrap();
            let floor: f64 = if var(name) > bound.parse::<f64>().unwrap() {
                then.parse().unwrap()
            } else {
                otherwise.parse().unwrap()
            };
            sum(queues).max(floor)
        }
        None => sum(formula),
    }
}

/// Replicas the HPA asks for: ceil(composite / target), within KEDA's bounds (AverageValue).
fn replicas(so: &Value, vars: &[(&str, f64)]) -> u64 {
    let m = &so["spec"]["advanced"]["scalingModifiers"];
    assert_eq!(m["metricType"], "AverageValue");
    let target: f64 = m["target"].as_str().unwrap().parse().unwrap();
    let value = eval_formula(m["formula"].as_str().unwrap(), vars);
    let wanted = (value / target).ceil() as u64;
    wanted.clamp(
        so["spec"]["minReplicaCount"].as_u64().unwrap(),
        so["spec"]["maxReplicaCount"].as_u64().unwrap(),
    )
}

#[test]
fn backlog_spread_over_priorities_is_added_not_maxed() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "gpu")));
    // Every trigger is named and in the formula: with scalingModifiers KEDA ignores the others.
    let formula = so["spec"]["advanced"]["scalingModifiers"]["formula"]
        .as_str()
        .unwrap();
    for t in so["spec"]["triggers"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name} is not an expr identifier"
        );
        assert!(formula.contains(name), "{name} is not in {formula}");
    }
    // Off hours (the cron trigger reads 0, or 1 before KEDA 2.18), 6 runs in each of the four
    // streams of a pool of concurrency 2: 24 runs need 12 workers, capped at KEDA's 10; the
    // largest stream alone would have asked for 3.
    for outside in [0.0, 1.0] {
        let spread = [
            ("queue_critical", 6.0),
            ("queue_high", 6.0),
            ("queue_normal", 6.0),
            ("queue_low", 6.0),
            ("business_hours", outside),
        ];
        assert_eq!(replicas(&so, &spread), 10);
        let some = [
            ("queue_critical", 1.0),
            ("queue_high", 2.0),
            ("queue_normal", 2.0),
            ("queue_low", 0.0),
            ("business_hours", outside),
        ];
        assert_eq!(replicas(&so, &some), 3);
        // Nothing to do: zero, so KEDA scales to its minimum (activation is composite > 0).
        let idle = [
            ("queue_critical", 0.0),
            ("queue_high", 0.0),
            ("queue_normal", 0.0),
            ("queue_low", 0.0),
            ("business_hours", outside),
        ];
        assert_eq!(eval_formula(formula, &idle), 0.0);
    }
    // Business hours (cron = desiredReplicas): at least the floor of 2 workers, more with work.
    let desired: f64 = so["spec"]["triggers"][4]["metadata"]["desiredReplicas"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hours = |q: f64| {
        [
            ("queue_critical", q),
            ("queue_high", 0.0),
            ("queue_normal", q),
            ("queue_low", 0.0),
            ("business_hours", desired),
        ]
    };
    assert_eq!(replicas(&so, &hours(0.0)), 2);
    assert_eq!(replicas(&so, &hours(5.0)), 5);

    // A floor of one worker: the cron trigger still reads 2 inside (0 or 1 outside cannot be
    // mistaken for it), and the formula holds 1 worker.
    let text = GLOBAL.replace(
        "min_workers = 2
max_workers = 10",
        "min_workers = 1
max_workers = 10",
    );
    let c = config(&text);
    let ctx = context(&c, &options(&text)).unwrap();
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "gpu")));
    let cron = &so["spec"]["triggers"][4];
    assert_eq!(cron["name"], "business_hours");
    assert_eq!(cron["metadata"]["desiredReplicas"], "2");
    let at = |cron: f64| {
        [
            ("queue_critical", 0.0),
            ("queue_high", 0.0),
            ("queue_normal", 0.0),
            ("queue_low", 0.0),
            ("business_hours", cron),
        ]
    };
    assert_eq!(replicas(&so, &at(2.0)), 1);
    assert_eq!(replicas(&so, &at(1.0)), 0);
    assert_eq!(replicas(&so, &at(0.0)), 0);

    // Without business hours the formula is the sum alone.
    let so = json(&keda::scaled_object(&ctx, &names, pool(&c, "cpu")));
    assert_eq!(
        so["spec"]["advanced"]["scalingModifiers"]["formula"],
        "queue_critical + queue_high + queue_normal + queue_low"
    );
    assert_eq!(so["spec"]["triggers"].as_array().unwrap().len(), 4);
}

#[test]
fn the_header_says_keda_has_one_maximum() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let gpu = file(&files, "k8s/base/keda-gpu.yaml");
    assert!(gpu.contains("KEDA has one maximum, 10, at all hours: the off-hours maximum (3) is only in agentd's desired count"), "{gpu}");
    assert!(gpu.contains("ADDED (advanced.scalingModifiers"), "{gpu}");
    let readme = file(&files, "k8s/README.md");
    assert!(
        readme.contains("KEDA has **one** maximum at all hours"),
        "{readme}"
    );
    assert!(readme.contains("KEDA 2.12 or later"));
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
        for secret in [
            "pw-env-value",
            "redis-env-pw",
            "sk-env-value",
            "admin-env-value",
        ] {
            assert!(
                !f.contents.contains(secret),
                "{} contains a secret value",
                f.path.display()
            );
        }
    }
    let script = file(&files, "k8s/create-secret.sh");
    assert!(script.contains("put DATABASE_URL \"${DATABASE_URL:?"));
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
    assert_eq!(t["name"], "queue_normal");
    assert_eq!(
        so["spec"]["advanced"]["scalingModifiers"]["formula"],
        "queue_critical + queue_high + queue_normal + queue_low"
    );
    assert_eq!(
        so["spec"]["advanced"]["scalingModifiers"]["target"],
        pool(&c, "cpu").concurrency.to_string()
    );
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
    // One work trigger: nothing to add, the HPA's maximum with the cron floor is right.
    assert!(so["spec"]["advanced"].get("scalingModifiers").is_none());
    assert_eq!(
        triggers[0]["metadata"]["query"],
        "max(agentd_pool_desired_workers{pool=\"gpu\"})"
    );
    assert!(keda::trigger_auth(&ctx, &names).is_none());
}

#[test]
fn fly_replay_across_regions_is_refused_off_fly() {
    let text = GLOBAL.replace("routing = \"forward\"", "routing = \"fly-replay\"");
    let c = config(&text);
    for target in [crate::Target::K8s, crate::Target::Compose] {
        match crate::render(&c, target, &options(&text)) {
            Err(RenderError::Invalid(message)) => {
                assert!(message.contains("routing = \"fly-replay\""), "{message}");
                assert!(message.contains("routing = \"forward\""), "{message}");
                assert!(message.contains("[regions.urls]"), "{message}");
            }
            other => panic!("{target:?}: {other:?}"),
        }
    }
    // One region routes nothing: fly-replay never comes into play.
    let one = "[store]\nkind = \"postgres\"\nurl = \"${DB}\"\n[regions]\nlist = [\"cdg\"]\nrouting = \"fly-replay\"\n";
    let c = config(one);
    assert!(crate::render(&c, crate::Target::K8s, &options(one)).is_ok());
}

#[test]
fn a_variable_the_config_reads_is_required_everywhere() {
    let text = GLOBAL.replace(
        "[queue]",
        "[auth]\nadmin_key = \"${AGENTD_ADMIN_KEY}\"\n\n[queue]",
    );
    let c = config(&text);
    let ctx = context(&c, &options(&text)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let api = json(&workload::deployment(&ctx, &names, &Kind::Api));
    let env = api["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let admin = env
        .iter()
        .find(|e| e["name"] == "AGENTD_ADMIN_KEY")
        .unwrap();
    assert_eq!(admin["valueFrom"]["secretKeyRef"]["optional"], false);
    let files = render(&ctx).unwrap();
    let script = file(&files, "k8s/create-secret.sh");
    assert!(
        script.contains("put AGENTD_ADMIN_KEY \"${AGENTD_ADMIN_KEY:?set AGENTD_ADMIN_KEY"),
        "{script}"
    );
    assert!(!script.contains("if [ -n \"${AGENTD_ADMIN_KEY:-}\" ]"));
    let readme = file(&files, "k8s/README.md");
    let required = readme
        .lines()
        .find(|l| l.contains("Required (the config reads them"))
        .unwrap();
    assert!(required.contains("`AGENTD_ADMIN_KEY`"), "{required}");

    // Not read by the config: agentd reads it itself, and it may be left out.
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let script = file(&render(&ctx).unwrap(), "k8s/create-secret.sh").to_owned();
    assert!(script.contains("if [ -n \"${AGENTD_ADMIN_KEY:-}\" ]; then put AGENTD_ADMIN_KEY"));
}

#[test]
fn the_secret_script_keeps_values_off_command_lines_and_runs_on_bash_3() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let script = file(&files, "k8s/create-secret.sh");
    assert!(!script.contains("--from-literal"), "{script}");
    assert!(script.contains("--from-env-file=\"$env_file\""));
    assert!(script.contains("umask 077\n"));
    assert!(script.contains("trap 'rm -f \"$env_file\"' EXIT"));
    assert!(script
        .contains("put DATABASE_URL \"${DATABASE_URL:?set DATABASE_URL in the environment}\""));
    assert!(script.contains("put KEDA_REDIS_TLS \"${KEDA_REDIS_TLS:-disable}\""));
    // No arrays, and no bare "$@" (bash 3.2's `set -u` rejects both when empty).
    assert!(!script.contains("args"), "{script}");
    assert!(!script.contains("kubectl \"$@\""), "{script}");
    assert!(script
        .contains("kubectl ${1+\"$@\"} -n \"$namespace\" create secret generic agentd-secrets"));
}

#[test]
fn every_region_keeps_two_api_replicas_for_drains() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let hpa = file(&files, "k8s/base/hpa-api.yaml");
    assert!(hpa.contains("minReplicas: 2\n"), "{hpa}");
    assert!(file(&files, "k8s/base/pdb.yaml").contains("maxUnavailable: 1\n"));
    for code in ["cdg", "nrt", "sjc", "ewr"] {
        let overlay = file(&files, &format!("k8s/overlays/{code}/kustomization.yaml"));
        // Nothing lowers the base's minimum.
        assert!(!overlay.contains("minReplicas"), "{overlay}");
        assert!(!overlay.contains("HorizontalPodAutoscaler"), "{overlay}");
    }
}

#[test]
fn a_moving_image_tag_is_always_pulled() {
    let c = config(GLOBAL);
    let ctx = context(&c, &options(GLOBAL)).unwrap();
    let names = Names::new(&ctx).unwrap();
    let api = json(&workload::deployment(&ctx, &names, &Kind::Api));
    let container = &api["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/acme/agentd:1.2.3");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");

    let text = GLOBAL.replace("image = \"ghcr.io/acme/agentd:1.2.3\"\n", "");
    let c = config(&text);
    let ctx = context(&c, &options(&text)).unwrap();
    let worker = json(&workload::deployment(
        &ctx,
        &names,
        &Kind::Worker(pool(&c, "gpu")),
    ));
    let container = &worker["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "agentd:latest");
    assert_eq!(container["imagePullPolicy"], "Always");
}

#[test]
fn the_readme_matches_the_manifests() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let readme = file(&files, "k8s/README.md");
    // Applied through an overlay, never the base (no namespace).
    assert!(!readme.contains("`kubectl apply -k base` runs"), "{readme}");
    assert!(readme.contains("Do not apply it on its own: it sets no namespace"));
    assert!(file(&files, "k8s/base/kustomization.yaml").contains("Apply an overlay"));
    // The CPU limit it describes is the one the Deployments set.
    let api = file(&files, "k8s/base/deployment-api.yaml");
    assert!(api.contains("limits:\n            cpu: \"2\"\n"), "{api}");
    assert!(readme.contains("Every container has a CPU limit of 2 cores"));
    assert!(!readme.contains("There is no tight CPU limit"));
    assert!(
        readme.contains("the api 250m CPU and 256Mi (limit 512Mi)"),
        "{readme}"
    );
    assert!(readme.contains("2 replicas minimum in every region"));
    // The Ingress's class and controller-specific timeouts.
    let ingress = file(&files, "k8s/base/ingress.yaml");
    assert!(ingress.contains("# No ingressClassName"), "{ingress}");
    assert!(ingress.contains("GKE: 30 s, AWS ALB: 60 s"), "{ingress}");
    assert!(!ingress
        .lines()
        .any(|l| !l.starts_with('#') && l.contains("ingressClassName")));
    assert!(readme.contains("## Ingress"));
    assert!(readme.contains("BackendConfig"));
    assert!(readme.contains("idle_timeout.timeout_seconds=3600"));
}
