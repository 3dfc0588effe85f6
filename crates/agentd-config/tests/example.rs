//! `examples/agentd.toml` must always load, with the variables it references supplied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentd_config::{Config, Overrides, ProviderKind, StoreConfig};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agentd.toml")
}

fn env(key: &str) -> Option<String> {
    match key {
        "OPENAI_API_KEY" => Some("sk-test-openai".to_owned()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-test".to_owned()),
        "AGENTD_ADMIN_KEY" => Some("admin-key-0123456789abcdef".to_owned()),
        _ => None,
    }
}

#[test]
fn example_config_validates() {
    let path = example();
    let config = match Config::load(Some(&path), &env, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("examples/agentd.toml does not validate:\n{e}"),
    };
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert!(!config.is_default());
    assert!(matches!(config.store, StoreConfig::Sqlite { .. }));
    assert_eq!(
        config.auth.admin_key.as_ref().map(|k| k.expose()),
        Some("admin-key-0123456789abcdef")
    );

    let providers: Vec<(&str, ProviderKind)> = config
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        providers,
        [
            ("openai", ProviderKind::OpenAi),
            ("anthropic", ProviderKind::Anthropic),
            ("vllm", ProviderKind::OpenAi),
            ("mock", ProviderKind::Mock),
        ]
    );
    let vllm = config.provider("vllm").unwrap();
    assert_eq!(vllm.base_url, "http://127.0.0.1:8000/v1");
    assert!(vllm.api_key.is_none());
    assert_eq!(vllm.first_token_timeout, Duration::from_secs(30));
    // OPENAI_ORG_ID is unset, so the optional header is not sent.
    assert!(config.provider("openai").unwrap().headers.is_empty());

    // Every deployment points at a provider that exists.
    assert!(config.models.len() >= 5);
    for model in &config.models {
        for d in &model.deployments {
            assert!(config.provider(&d.provider).is_some(), "{}", model.name);
        }
    }
    let mini = config.model("gpt-4o-mini").unwrap();
    assert_eq!(mini.deployments.len(), 2);
    assert_eq!(mini.deployments[0].weight, 3);
    assert_eq!(
        config.model("claude-fast").unwrap().deployments[0].model,
        "claude-haiku-4-5"
    );
    assert!(config.model("gpt-4.1").is_some());
}

#[test]
fn example_config_without_its_variables_names_each_one() {
    let err = Config::load(Some(&example()), &|_| None, &Overrides::default()).unwrap_err();
    let vars: Vec<&str> = err
        .0
        .iter()
        .filter(|e| e.message.contains("is not set"))
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(
        vars,
        [
            "auth.admin_key",
            "providers.openai.api_key",
            "providers.anthropic.api_key"
        ],
        "\n{err}"
    );
    for e in &err.0 {
        assert!(e.line.is_some(), "{e}");
        assert!(e.file.ends_with("examples/agentd.toml"), "{e}");
    }
}
