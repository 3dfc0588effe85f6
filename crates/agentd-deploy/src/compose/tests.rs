use std::path::Path;

use super::*;
use crate::k8s::test_support::{config, options, GLOBAL};
use crate::{context, Target};

fn file<'a>(files: &'a [File], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("no {path}"))
        .contents
}

/// The services of compose.yaml with their bodies (two-space indented blocks under
/// `services:`).
fn services(compose: &str) -> Vec<(String, String)> {
    let body = compose
        .split("\nservices:\n")
        .nth(1)
        .unwrap()
        .split("\nvolumes:\n")
        .next()
        .unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            out.push((name.trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

#[test]
fn the_stack_has_every_service_with_a_healthcheck_in_dependency_order() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let compose = file(&files, "compose/compose.yaml");
    let services = services(compose);
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "redis",
            "nats",
            "agentd-api",
            "agentd-worker",
            "prometheus",
            "grafana"
        ]
    );
    for (name, body) in &services {
        assert!(
            body.contains("    healthcheck:\n"),
            "{name} has no healthcheck"
        );
    }
    let body = |name: &str| &services.iter().find(|(n, _)| n == name).unwrap().1;
    let api = body("agentd-api");
    // The Redis queue: the api waits for PostgreSQL and Redis, not for the idle NATS.
    assert!(api.contains("      postgres:\n        condition: service_healthy\n"));
    assert!(api.contains("      redis:\n        condition: service_healthy\n"));
    assert!(!api.contains("      nats:\n"));
    assert!(api.contains("- \"8080:8080\""));
    assert!(api.contains("- /usr/local/bin/agentd\n      - healthcheck\n      - \"--url\"\n      - \"http://127.0.0.1:8080/readyz\""));
    assert!(api.contains("AGENTD_ROLE: api"));
    assert!(api.contains("read_only: true"));
    // Drain 45 s + 5.
    assert!(api.contains("stop_grace_period: 50s"));
    // The config's ${DATABASE_URL} and ${REDIS_URL} go to the bundled services.
    assert!(api.contains(
        "DATABASE_URL: \"postgres://agentd:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (see .env.example)}@postgres:5432/agentd\""
    ));
    assert!(api.contains("REDIS_URL: \"redis://redis:6379\""));
    assert!(api.contains("AGENTD_ADMIN_KEY: \"${AGENTD_ADMIN_KEY:-}\""));
    let worker = body("agentd-worker");
    // The image is built from the repository, never pulled (`agentd:latest` is in no
    // registry): the context is the repository root from deploy/compose.
    for agentd in [api, worker] {
        assert!(
            agentd.starts_with(
                "    build:\n      context: \"../..\"\n      dockerfile: deploy/Dockerfile\n    image: \"ghcr.io/acme/agentd:1.2.3\"\n    pull_policy: build\n"
            ),
            "{agentd}"
        );
    }
    for other in ["postgres", "redis", "nats", "prometheus", "grafana"] {
        assert!(!body(other).contains("build:"), "{other}");
    }
    assert!(worker.contains("AGENTD_ROLE: worker"));
    assert!(worker.contains("      agentd-api:\n        condition: service_healthy\n"));
    assert!(!worker.contains("ports:"));
    assert!(body("nats").contains("- \"-js\""));
    assert!(body("nats").contains(":8222/healthz"));
    assert!(body("grafana").contains("./grafana/dashboards:/etc/grafana/dashboards:ro"));
    assert!(compose.contains("\nvolumes:\n  postgres-data: {}\n"));
    let env = file(&files, "compose/.env.example");
    assert!(env.contains("\nPOSTGRES_PASSWORD=\n"));
    assert!(env.contains("\nAGENTD_ADMIN_KEY=\n"));
    // Wired to the bundled services: nothing to fill in.
    assert!(!env.contains("DATABASE_URL="));
    assert!(!env.contains("REDIS_URL="));
    assert_eq!(file(&files, "compose/agentd.toml"), GLOBAL);
}

#[test]
fn sqlite_config_still_splits_on_the_bundled_postgres() {
    let text = "[server]\nshutdown_grace_ms = 10000\n[providers.openai]\nkind = \"openai\"\napi_key = \"${OPENAI_API_KEY}\"\n";
    let c = config(text);
    let ctx = context(&c, &options(text)).unwrap();
    assert!(!ctx.postgres());
    let files = render(&ctx).unwrap();
    let compose = file(&files, "compose/compose.yaml");
    let names: Vec<String> = services(compose).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"agentd-api".to_owned()) && names.contains(&"agentd-worker".to_owned())
    );
    assert!(compose.contains("which says SQLite"));
    assert!(compose.contains("AGENTD_DATABASE_URL: \"postgres://agentd:"));
    assert!(compose.contains(
        "OPENAI_API_KEY: \"${OPENAI_API_KEY:?set OPENAI_API_KEY in .env (see .env.example)}\""
    ));
    assert!(compose.contains("stop_grace_period: 15s"));
    assert!(file(&files, "compose/.env.example").contains("\nOPENAI_API_KEY=\n"));
}

#[test]
fn no_secret_value_in_any_file() {
    let c = config(GLOBAL);
    let files = crate::render(&c, Target::Compose, &options(GLOBAL)).unwrap();
    for f in &files {
        if f.path == Path::new("compose/agentd.toml") {
            continue; // the user's own file, as written
        }
        for secret in [
            "pw-env-value",
            "redis-env-pw",
            "sk-env-value",
            "admin-env-value",
        ] {
            assert!(!f.contents.contains(secret), "{}", f.path.display());
        }
    }
}

#[test]
fn literal_queue_urls_are_flagged_and_whole_variables_wired() {
    let text = "[store]\nkind = \"postgres\"\nurl = \"${DB}\"\n[queue]\nkind = \"nats\"\nurl = \"nats://10.0.0.9:4222\"\n";
    let c = config(text);
    let ctx = context(&c, &options(text)).unwrap();
    assert_eq!(wiring(&ctx), [("DB".to_owned(), Wired::Postgres)]);
    assert!(literal_backend_urls(&ctx));
    let compose = file(&render(&ctx).unwrap(), "compose/compose.yaml").to_owned();
    assert!(compose.contains("NOTE: agentd.toml names a queue"));
    assert!(compose.contains("      nats:\n        condition: service_healthy\n"));
}

#[test]
fn the_readme_builds_the_image_before_starting() {
    let c = config(GLOBAL);
    let files = render(&context(&c, &options(GLOBAL)).unwrap()).unwrap();
    let readme = file(&files, "compose/README.md");
    assert!(readme.contains("From this directory (`deploy/compose` in the repository)"));
    // The commands are an indented (code) block, every line of it.
    assert!(readme.contains(
        ":\n\n    cp .env.example .env      # then fill in every value\n    docker compose up -d      # builds the agentd image first"
    ));
    assert!(readme.contains("`pull_policy: build`"));
    assert!(file(&files, "compose/compose.yaml").contains("which first builds the"));
}

#[test]
fn an_admin_key_the_config_reads_is_required() {
    let text = GLOBAL.replace(
        "[queue]",
        "[auth]\nadmin_key = \"${AGENTD_ADMIN_KEY}\"\n\n[queue]",
    );
    let c = config(&text);
    let files = render(&context(&c, &options(&text)).unwrap()).unwrap();
    let compose = file(&files, "compose/compose.yaml");
    assert!(compose.contains(
        "AGENTD_ADMIN_KEY: \"${AGENTD_ADMIN_KEY:?set AGENTD_ADMIN_KEY in .env (see .env.example)}\""
    ));
    assert!(!compose.contains("${AGENTD_ADMIN_KEY:-}"));
    let env = file(&files, "compose/.env.example");
    assert!(env.contains("\nAGENTD_ADMIN_KEY=\n"));
    assert!(!env.contains("Optional"), "{env}");
}
