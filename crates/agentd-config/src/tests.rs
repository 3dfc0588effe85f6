//! Loading whole documents: every error the spec lists (file, line, key and message asserted),
//! layering, defaults, `${VAR}` expansion and secrecy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, ConfigError, LogFormat, Overrides, ProviderKind, StoreConfig};

pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

pub(crate) fn no_env(_: &str) -> Option<String> {
    None
}

pub(crate) fn load_with(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    Config::from_str(text, Path::new("agentd.toml"), env, &Overrides::default()).map_err(|e| e.0)
}

pub(crate) fn load(text: &str) -> Config {
    match load_with(text, &no_env) {
        Ok(c) => c,
        Err(errors) => panic!("unexpected errors:\n{}", crate::ConfigErrors(errors)),
    }
}

pub(crate) fn errors(text: &str) -> Vec<ConfigError> {
    errors_with(text, &no_env)
}

pub(crate) fn errors_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    match load_with(text, env) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e,
    }
}

/// Exactly one error, at `line`, for `key`, whose message contains `message`.
pub(crate) fn one_error(text: &str, line: usize, key: &str, message: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(
        errs.len(),
        1,
        "expected one error, got:\n{}",
        crate::ConfigErrors(errs.clone())
    );
    let e = errs.into_iter().next().unwrap();
    assert_eq!(e.file, PathBuf::from("agentd.toml"), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key, key, "{e}");
    assert!(
        e.message.contains(message),
        "message {:?} lacks {message:?}",
        e.message
    );
    assert!(!e.fix.is_empty(), "{e}");
    e
}

pub(crate) const MOCK: &str = "[providers.mock]\nkind = \"mock\"\n";

// ---------------------------------------------------------------- serde-level errors

#[test]
fn toml_syntax_error_has_line_column_and_key() {
    let e = one_error(
        "[server]\nlisten = 127.0.0.1:8080\n",
        2,
        "server.listen",
        "TOML syntax error",
    );
    // The parser reads `127.0` as a float and stops at the second dot.
    assert_eq!(e.column, Some(15));
    assert!(e.fix.contains("toml.io"));
    assert_eq!(
        e.to_string(),
        "agentd.toml:2:15: server.listen: TOML syntax error: expected newline, `#`; \
fix: correct the TOML at this position (strings need quotes, tables are [name], see https://toml.io)"
    );
}

#[test]
fn unknown_key_names_the_key_and_lists_valid_keys() {
    let e = one_error(
        "[server]\nlisen = \"127.0.0.1:1\"\n",
        2,
        "server.lisen",
        "unknown key \"lisen\"",
    );
    assert_eq!(e.column, Some(1));
    assert!(e.fix.contains("did you mean \"listen\""), "{}", e.fix);
    assert!(
        e.fix.contains("listen, max_body_bytes, request_timeout_ms, shutdown_grace_ms, region, log_format, data_dir"),
        "{}",
        e.fix
    );
}

#[test]
fn unknown_top_level_key_lists_the_sections() {
    let e = one_error(
        "[sever]\nlisten = \"x\"\n",
        1,
        "sever",
        "unknown top-level key \"sever\"",
    );
    assert!(e.fix.contains("did you mean \"server\""), "{}", e.fix);
    assert!(
        e.fix.contains("server, store, auth, providers, models"),
        "{}",
        e.fix
    );
}

#[test]
fn unknown_key_inside_an_inline_deployment() {
    let text = format!(
        "{MOCK}\n[models.m]\ndeployments = [\n  {{ provider = \"mock\" }},\n  {{ provider = \"mock\", wieght = 2 }},\n]\n"
    );
    let e = one_error(
        &text,
        7,
        "models.m.deployments[1].wieght",
        "unknown key \"wieght\"",
    );
    assert!(e.fix.contains("did you mean \"weight\""), "{}", e.fix);
}

#[test]
fn wrong_type_says_what_was_expected() {
    let e = one_error(
        "[server]\nmax_body_bytes = \"4MB\"\n",
        2,
        "server.max_body_bytes",
        "wrong type: found string \"4MB\", expected an integer",
    );
    assert_eq!(e.fix, "write an integer here");
    one_error(
        &format!("{MOCK}api_key = 42\n"),
        3,
        "providers.mock.api_key",
        "expected a string",
    );
    one_error(
        "[providers]\nopenai = \"x\"\n",
        2,
        "providers.openai",
        "expected a table",
    );
}

#[test]
fn bad_enum_values_list_the_valid_ones() {
    let e = one_error(
        "[server]\nlog_format = \"xml\"\n",
        2,
        "server.log_format",
        "invalid log_format \"xml\"",
    );
    assert_eq!(e.fix, "use one of: json, text");
    let e = one_error(
        "[store]\nkind = \"mysql\"\n",
        2,
        "store.kind",
        "invalid store kind \"mysql\"",
    );
    assert_eq!(e.fix, "use one of: sqlite, postgres");
    let e = one_error(
        "[providers.x]\nkind = \"azure\"\n",
        2,
        "providers.x.kind",
        "invalid provider kind \"azure\"",
    );
    assert!(e.fix.contains("openai") && e.fix.contains("anthropic") && e.fix.contains("mock"));
    one_error(
        "[providers.x]\nbase_url = \"http://h\"\n",
        1,
        "providers.x.kind",
        "missing kind",
    );
}

// ---------------------------------------------------------------- validation errors

#[test]
fn invalid_listen_address() {
    let e = one_error(
        "[server]\nlisten = \"localhost:8080\"\n",
        2,
        "server.listen",
        "invalid listen address \"localhost:8080\"",
    );
    assert!(e.fix.contains("0.0.0.0:8080"));
}

#[test]
fn zero_and_negative_timeouts() {
    one_error(
        "[server]\nrequest_timeout_ms = 0\n",
        2,
        "server.request_timeout_ms",
        "must be greater than 0 milliseconds (got 0)",
    );
    one_error(
        &format!("{MOCK}timeout_ms = -5\n"),
        3,
        "providers.mock.timeout_ms",
        "must be greater than 0 milliseconds (got -5)",
    );
    one_error(
        &format!("{MOCK}ttft_ms = -1\n"),
        3,
        "providers.mock.ttft_ms",
        "must not be negative (got -1)",
    );
    one_error(
        "[auth]\nkey_cache_ttl_ms = -1\n",
        2,
        "auth.key_cache_ttl_ms",
        "must not be negative",
    );
}

#[test]
fn max_body_bytes_zero() {
    one_error(
        "[server]\n\nmax_body_bytes = 0\n",
        3,
        "server.max_body_bytes",
        "max_body_bytes must be greater than 0 (got 0)",
    );
}

#[test]
fn server_limits_have_defaults_and_typed_values() {
    let c = load(MOCK);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(c.server.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_header_bytes, 65536);
    assert_eq!(c.server.max_connections, 4096);
    assert_eq!(c.server.max_concurrent_requests, Some(1024));

    let c = load(&format!(
        "[server]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 600\n\
         keep_alive_timeout_ms = 700\nmax_header_bytes = 8192\nmax_connections = 3\n\
         max_concurrent_requests = 0\n{MOCK}"
    ));
    assert_eq!(c.server.header_read_timeout, Duration::from_millis(500));
    assert_eq!(c.server.body_read_timeout, Duration::from_millis(600));
    assert_eq!(c.server.keep_alive_timeout, Duration::from_millis(700));
    assert_eq!(c.server.max_header_bytes, 8192);
    assert_eq!(c.server.max_connections, 3);
    assert_eq!(c.server.max_concurrent_requests, None, "0 means no limit");
}

#[test]
fn server_limits_out_of_range_name_the_key() {
    one_error(
        "[server]\nheader_read_timeout_ms = 0\n",
        2,
        "server.header_read_timeout_ms",
        "must be greater than 0 milliseconds (got 0)",
    );
    one_error(
        "[server]\nbody_read_timeout_ms = -1\n",
        2,
        "server.body_read_timeout_ms",
        "must be greater than 0 milliseconds (got -1)",
    );
    one_error(
        "[server]\n\nkeep_alive_timeout_ms = 0\n",
        3,
        "server.keep_alive_timeout_ms",
        "must be greater than 0 milliseconds (got 0)",
    );
    let e = one_error(
        "[server]\nmax_header_bytes = 1024\n",
        2,
        "server.max_header_bytes",
        "max_header_bytes must be at least 8192 (got 1024)",
    );
    assert!(e.fix.contains("65536"), "{}", e.fix);
    one_error(
        "[server]\nmax_connections = 0\n",
        2,
        "server.max_connections",
        "must be between 1 and 4294967295 (got 0)",
    );
    one_error(
        "[server]\nmax_concurrent_requests = -3\n",
        2,
        "server.max_concurrent_requests",
        "must be between 0 and 4294967295 (got -3)",
    );
    // All of them at once: validation does not stop at the first.
    let errs = errors(
        "[server]\nheader_read_timeout_ms = 0\nmax_header_bytes = 10\nmax_connections = -1\n",
    );
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.header_read_timeout_ms",
            "server.max_header_bytes",
            "server.max_connections"
        ]
    );
}

#[test]
fn unknown_provider_in_a_deployment_matches_the_documented_format() {
    let text = r#"[providers.openai]
kind = "openai"

[providers.mock]
kind = "mock"

[models.gpt-4o-mini]
deployments = [
  { provider = "openai", weight = 3 },
  { provider = "azur", model = "gpt-4o-mini" },
]
"#;
    let e = one_error(
        text,
        10,
        "models.gpt-4o-mini.deployments[1].provider",
        "unknown provider \"azur\"",
    );
    assert_eq!(
        e.to_string(),
        "agentd.toml:10:5: models.gpt-4o-mini.deployments[1].provider: unknown provider \"azur\"; \
fix: use one of the names under [providers]: openai, mock"
    );
}

#[test]
fn unknown_provider_suggests_a_close_name_and_works_for_arrays_of_tables() {
    let text = format!(
        "{MOCK}\n[[models.m.deployments]]\nprovider = \"mock\"\n\n[[models.m.deployments]]\nprovider = \"mokc\"\n"
    );
    let e = one_error(
        &text,
        8,
        "models.m.deployments[1].provider",
        "unknown provider \"mokc\"",
    );
    assert!(e.fix.starts_with("did you mean \"mock\"?"), "{}", e.fix);
    // Shorthand form.
    one_error(
        &format!("{MOCK}\n[models.m]\nprovider = \"nope\"\n"),
        5,
        "models.m.provider",
        "unknown provider \"nope\"",
    );
}

#[test]
fn provider_and_deployments_are_exclusive() {
    let text = format!(
        "{MOCK}\n[models.m]\nprovider = \"mock\"\ndeployments = [{{ provider = \"mock\" }}]\n"
    );
    let e = one_error(
        &text,
        6,
        "models.m.deployments",
        "both provider/model and deployments are set",
    );
    assert!(e.fix.contains("not both"));
}

#[test]
fn a_model_needs_provider_or_deployments() {
    let text = format!("{MOCK}\n[models.m]\nowned_by = \"me\"\n");
    let e = one_error(
        &text,
        4,
        "models.m",
        "no provider: set either provider or deployments",
    );
    assert!(e.fix.contains("with one of: mock"), "{}", e.fix);
    one_error(
        &format!("{MOCK}\n[models.m]\ndeployments = []\n"),
        5,
        "models.m.deployments",
        "deployments is empty",
    );
    one_error(
        &format!("{MOCK}\n[models.m]\nmodel = \"x\"\n"),
        4,
        "models.m.provider",
        "model is set but provider is missing",
    );
}

#[test]
fn weight_must_be_positive() {
    let text =
        format!("{MOCK}\n[models.m]\ndeployments = [{{ provider = \"mock\", weight = 0 }}]\n");
    let e = one_error(
        &text,
        5,
        "models.m.deployments[0].weight",
        "weight must be at least 1 (got 0)",
    );
    assert_eq!(e.column, Some(37));
}

#[test]
fn unset_variable_names_key_and_variable() {
    let text = "[providers.openai]\nkind = \"openai\"\napi_key = \"${OPENAI_API_KEY}\"\n";
    let e = one_error(
        text,
        3,
        "providers.openai.api_key",
        "environment variable OPENAI_API_KEY is not set",
    );
    assert!(e.fix.contains("export OPENAI_API_KEY"), "{}", e.fix);
    // The same variable supplied: no error.
    let c = load_with(text, &env_of(&[("OPENAI_API_KEY", "sk-1")])).unwrap();
    assert_eq!(c.providers[0].api_key.as_ref().unwrap().expose(), "sk-1");
}

#[test]
fn base_url_must_be_http() {
    let e = one_error(
        "[providers.v]\nkind = \"openai\"\nbase_url = \"localhost:8000/v1\"\n",
        3,
        "providers.v.base_url",
        "base_url \"localhost:8000/v1\" is not an http:// or https:// URL",
    );
    assert!(e.fix.contains("http://localhost:8000/v1"));
    one_error(
        "[providers.v]\nkind = \"openai\"\nbase_url = \"ftp://x\"\n",
        3,
        "providers.v.base_url",
        "not an http:// or https:// URL",
    );
}

#[test]
fn base_url_is_not_allowed_on_mock() {
    one_error(
        &format!("{MOCK}base_url = \"http://localhost\"\n"),
        3,
        "providers.mock.base_url",
        "base_url is not allowed for a mock provider",
    );
}

#[test]
fn anthropic_needs_an_api_key() {
    let e = one_error(
        "[providers.claude]\nkind = \"anthropic\"\n",
        1,
        "providers.claude.api_key",
        "an anthropic provider needs an api_key",
    );
    assert!(e.fix.contains("ANTHROPIC_API_KEY"));
    // An unset variable is reported once, not also as a missing key.
    let errs =
        errors("[providers.claude]\nkind = \"anthropic\"\napi_key = \"${ANTHROPIC_API_KEY}\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("ANTHROPIC_API_KEY is not set"));
}

#[test]
fn postgres_needs_a_url_and_sqlite_refuses_one() {
    let e = one_error(
        "[store]\nkind = \"postgres\"\n",
        1,
        "store.url",
        "the postgres store needs a url",
    );
    assert!(e.fix.contains("AGENTD_DATABASE_URL"));
    let e = one_error(
        "[store]\nkind = \"sqlite\"\nurl = \"postgres://u@h/db\"\n",
        3,
        "store.url",
        "url is set but the store kind is sqlite",
    );
    assert!(e.fix.contains("kind = \"postgres\""));
    one_error(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://u@h/db\"\npath = \"x.db\"\n",
        4,
        "store.path",
        "path only applies to the sqlite store",
    );
    let e = one_error(
        "[store]\nkind = \"postgres\"\nurl = \"mysql://root:hunter2@h/db\"\n",
        3,
        "store.url",
        "scheme is \"mysql\"",
    );
    assert!(
        !e.to_string().contains("hunter2"),
        "the URL's password is not echoed: {e}"
    );
}

#[test]
fn short_admin_key_is_rejected_without_echoing_it() {
    let e = one_error(
        "[auth]\nadmin_key = \"short-secret\"\n",
        2,
        "auth.admin_key",
        "admin_key is too short (12 characters, at least 16 required)",
    );
    assert!(!e.to_string().contains("short-secret"));
}

#[test]
fn unquoted_dots_in_model_names_get_a_quoting_hint() {
    let text = format!("{MOCK}\n[models.gpt-4.1]\nprovider = \"mock\"\n");
    let e = one_error(
        &text,
        4,
        "models.gpt-4.1",
        "unknown key \"1\" (TOML splits names at dots)",
    );
    assert_eq!(e.fix, "quote names that contain dots: [models.\"gpt-4.1\"]");
    assert_eq!(e.column, Some(1));
    let text = format!("{MOCK}\n[models.qwen2.5.7b]\nprovider = \"mock\"\n");
    let e = one_error(&text, 4, "models.qwen2.5", "TOML splits names at dots");
    assert_eq!(
        e.fix,
        "quote names that contain dots: [models.\"qwen2.5.7b\"]"
    );
}

#[test]
fn empty_model_name() {
    let e = one_error(
        &format!("{MOCK}\n[models.\"\"]\nprovider = \"mock\"\n"),
        4,
        "models.\"\"",
        "model name is empty",
    );
    assert!(e.fix.contains("[models.gpt-4o-mini]"));
}

#[test]
fn options_for_the_wrong_kind_are_errors() {
    one_error(
        "[providers.o]\nkind = \"openai\"\nttft_ms = 5\n",
        3,
        "providers.o.ttft_ms",
        "ttft_ms only applies to mock providers",
    );
    one_error(
        "[providers.o]\nkind = \"openai\"\nanthropic_version = \"2023-06-01\"\n",
        3,
        "providers.o.anthropic_version",
        "anthropic_version only applies to anthropic providers",
    );
    one_error(
        "[providers.o]\nkind = \"openai\"\nheaders = { \"Bad Header\" = \"x\" }\n",
        3,
        "providers.o.headers.\"Bad Header\"",
        "invalid header name \"Bad Header\"",
    );
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let err = Config::load(
        Some(Path::new("/nonexistent/agentd.toml")),
        &no_env,
        &Overrides::default(),
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].file, PathBuf::from("/nonexistent/agentd.toml"));
    assert!(err.0[0].message.contains("cannot read the config file"));
}

// ---------------------------------------------------------------- collecting everything

#[test]
fn all_errors_are_collected_in_file_order() {
    let text = r#"[server]
listen = "nope"
max_body_bytes = 0

[store]
kind = "postgres"

[auth]
admin_key = "short"

[providers.openai]
kind = "openai"
base_url = "api.openai.com"
colour = "blue"

[providers.mock]
kind = "mock"

[models.a]
provider = "azur"

[models.b]
deployments = [{ provider = "openai", weight = 0 }]

[models.c]
provider = "openai"
"#;
    let errs = errors_with(text, &env_of(&[("AGENTD_LOG_FORMAT", "yaml")]));
    let summary: Vec<(Option<usize>, &str)> =
        errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(2), "server.listen"),
            (Some(3), "server.max_body_bytes"),
            (Some(5), "store.url"),
            (Some(9), "auth.admin_key"),
            (Some(14), "providers.openai.colour"),
            (Some(20), "models.a.provider"),
            (Some(23), "models.b.deployments[0].weight"),
            (None, "AGENTD_LOG_FORMAT"),
        ],
        "\n{}",
        crate::ConfigErrors(errs.clone())
    );
    // openai failed to deserialize, so models naming it get no "unknown provider" on top;
    // "azur" is still unknown and the hint lists both names.
    assert!(errs[5].fix.contains("openai, mock"), "{}", errs[5].fix);
    let last = &errs[7];
    assert_eq!(last.file, PathBuf::from("<env>"));
    assert_eq!(
        last.to_string(),
        "<env>: AGENTD_LOG_FORMAT: invalid log format \"yaml\"; fix: use one of: json, text"
    );
    // The rendered list has one line per error.
    assert_eq!(crate::ConfigErrors(errs).to_string().lines().count(), 8);
}

// ---------------------------------------------------------------- a valid file

#[test]
fn a_full_file_validates_into_typed_values() {
    let text = r#"
[server]
listen = "0.0.0.0:9000"
max_body_bytes = 1024
request_timeout_ms = 1500
shutdown_grace_ms = 0
region = "cdg"
log_format = "text"
data_dir = "/var/lib/agentd"

[store]
path = "state.db"

[auth]
admin_key = "${ADMIN}"
key_cache_ttl_ms = 0

[providers.vllm]
kind = "openai"
base_url = "http://localhost:8000/v1/"
headers = { "X-B" = "b", "X-A" = "${HDR}", "X-C" = "$$5" }

[providers.claude]
kind = "anthropic"
api_key = "${ANTHROPIC_API_KEY}"
anthropic_version = "2024-01-01"
connect_timeout_ms = 100
first_token_timeout_ms = 200
timeout_ms = 300

[providers.mock]
kind = "mock"
ttft_ms = 5
token_delay_ms = 7

[models.zeta]
provider = "vllm"
model = "Qwen/Qwen2.5-7B"

[models."gpt-4.1"]
deployments = [{ provider = "vllm", weight = 3 }, { provider = "claude", model = "claude-x" }]
owned_by = "acme"

[models.alpha]
provider = "mock"
"#;
    let env = env_of(&[
        ("ADMIN", "0123456789abcdef"),
        ("HDR", "from-env"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("FLY_REGION", "ams"),
    ]);
    let c = load_with(text, &env).unwrap();
    assert_eq!(c.source, Some(PathBuf::from("agentd.toml")));
    assert!(!c.is_default());
    assert_eq!(
        c.server.listen,
        "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.server.max_body_bytes, 1024);
    assert_eq!(c.server.request_timeout, Duration::from_millis(1500));
    assert_eq!(c.server.shutdown_grace, Duration::ZERO);
    assert_eq!(
        c.server.region.as_deref(),
        Some("cdg"),
        "the file beats FLY_REGION"
    );
    assert_eq!(c.server.log_format, LogFormat::Text);
    match &c.store {
        StoreConfig::Sqlite { path } => assert_eq!(path, Path::new("/var/lib/agentd/state.db")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.auth.admin_key.as_ref().unwrap().expose(),
        "0123456789abcdef"
    );
    assert_eq!(c.auth.key_cache_ttl, Duration::ZERO);

    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["vllm", "claude", "mock"], "file order");
    let vllm = c.provider("vllm").unwrap();
    assert_eq!(vllm.kind, ProviderKind::OpenAi);
    assert_eq!(
        vllm.base_url, "http://localhost:8000/v1",
        "trailing slash trimmed"
    );
    assert!(vllm.api_key.is_none());
    let headers: Vec<(&str, &str)> = vllm
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(
        headers,
        [("X-B", "b"), ("X-A", "from-env"), ("X-C", "$5")],
        "file order, expanded"
    );
    assert_eq!(vllm.connect_timeout, Duration::from_secs(5));
    assert_eq!(vllm.first_token_timeout, Duration::from_secs(60));
    assert_eq!(vllm.timeout, Duration::from_secs(600));
    let claude = c.provider("claude").unwrap();
    assert_eq!(claude.kind, ProviderKind::Anthropic);
    assert_eq!(claude.base_url, "https://api.anthropic.com");
    assert_eq!(claude.api_key.as_ref().unwrap().expose(), "sk-ant");
    assert_eq!(claude.anthropic_version, "2024-01-01");
    assert_eq!(claude.connect_timeout, Duration::from_millis(100));
    assert_eq!(claude.first_token_timeout, Duration::from_millis(200));
    assert_eq!(claude.timeout, Duration::from_millis(300));
    let mock = c.provider("mock").unwrap();
    assert_eq!(mock.base_url, "");
    assert_eq!(mock.mock.ttft, Duration::from_millis(5));
    assert_eq!(mock.mock.token_delay, Duration::from_millis(7));
    assert_eq!(ProviderKind::Mock.to_string(), "mock");
    assert_eq!(ProviderKind::OpenAi.to_string(), "openai");
    assert_eq!(ProviderKind::Anthropic.to_string(), "anthropic");

    let models: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(models, ["zeta", "gpt-4.1", "alpha"], "file order");
    let zeta = c.model("zeta").unwrap();
    assert_eq!(zeta.owned_by, "vllm");
    assert_eq!(zeta.deployments.len(), 1);
    assert_eq!(zeta.deployments[0].model, "Qwen/Qwen2.5-7B");
    assert_eq!(zeta.deployments[0].weight, 1);
    let gpt = c.model("gpt-4.1").unwrap();
    assert_eq!(gpt.owned_by, "acme");
    let deps: Vec<(&str, &str, u32)> = gpt
        .deployments
        .iter()
        .map(|d| (d.provider.as_str(), d.model.as_str(), d.weight))
        .collect();
    assert_eq!(deps, [("vllm", "gpt-4.1", 3), ("claude", "claude-x", 1)]);
    assert_eq!(c.model("alpha").unwrap().deployments[0].model, "alpha");
    assert!(c.model("nope").is_none());
}

#[test]
fn an_empty_file_has_section_defaults_and_no_providers() {
    let c = load("");
    assert!(c.providers.is_empty(), "no implicit mock with a file");
    assert!(c.models.is_empty());
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.server.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(c.server.request_timeout, Duration::from_secs(600));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.log_format, LogFormat::Json);
    assert_eq!(c.server.region, None);
    assert_eq!(c.server.data_dir, PathBuf::from("./data"));
    match &c.store {
        StoreConfig::Sqlite { path } => assert_eq!(path, Path::new("./data/agentd.db")),
        other => panic!("{other:?}"),
    }
    assert!(c.auth.admin_key.is_none());
    assert_eq!(c.auth.key_cache_ttl, Duration::from_secs(2));
}

// ---------------------------------------------------------------- layering

#[test]
fn layering_is_defaults_then_file_then_env_then_cli() {
    let file =
        "[server]\nlisten = \"127.0.0.1:1000\"\ndata_dir = \"/file\"\nlog_format = \"text\"\n";
    let origin = Path::new("agentd.toml");
    let none = Overrides::default();

    let c = Config::from_str(file, origin, &no_env, &none).unwrap();
    assert_eq!(c.server.listen.port(), 1000, "file beats defaults");
    assert_eq!(c.server.log_format, LogFormat::Text);

    let env = env_of(&[
        ("AGENTD_LISTEN", "127.0.0.1:2000"),
        ("AGENTD_DATA_DIR", "/env"),
        ("AGENTD_LOG_FORMAT", "json"),
    ]);
    let c = Config::from_str(file, origin, &env, &none).unwrap();
    assert_eq!(c.server.listen.port(), 2000, "env beats file");
    assert_eq!(c.server.data_dir, PathBuf::from("/env"));
    assert_eq!(c.server.log_format, LogFormat::Json);
    match &c.store {
        StoreConfig::Sqlite { path } => assert_eq!(
            path,
            Path::new("/env/agentd.db"),
            "joined with the final data_dir"
        ),
        other => panic!("{other:?}"),
    }

    let cli = Overrides {
        listen: Some("127.0.0.1:3000".parse().unwrap()),
        data_dir: Some(PathBuf::from("/cli")),
    };
    let c = Config::from_str(file, origin, &env, &cli).unwrap();
    assert_eq!(c.server.listen.port(), 3000, "CLI beats env");
    assert_eq!(c.server.data_dir, PathBuf::from("/cli"));
    match &c.store {
        StoreConfig::Sqlite { path } => assert_eq!(path, Path::new("/cli/agentd.db")),
        other => panic!("{other:?}"),
    }

    // Empty variables count as unset.
    let c = Config::from_str(file, origin, &env_of(&[("AGENTD_LISTEN", "")]), &none).unwrap();
    assert_eq!(c.server.listen.port(), 1000);
}

#[test]
fn database_url_variable_selects_postgres() {
    let env = env_of(&[("AGENTD_DATABASE_URL", "postgres://root@127.0.0.1:5432/test")]);
    let c = load_with("[store]\nkind = \"sqlite\"\nmax_connections = 3\n", &env).unwrap();
    match &c.store {
        StoreConfig::Postgres {
            url,
            max_connections,
        } => {
            assert_eq!(url.expose(), "postgres://root@127.0.0.1:5432/test");
            assert_eq!(*max_connections, 3);
        }
        other => panic!("{other:?}"),
    }
    // It also satisfies a postgres store without url.
    let c = load_with("[store]\nkind = \"postgres\"\n", &env).unwrap();
    assert!(matches!(
        c.store,
        StoreConfig::Postgres {
            max_connections: 8,
            ..
        }
    ));
    // A file url is expanded from the environment.
    let c = load_with(
        "[store]\nkind = \"postgres\"\nurl = \"${DB}\"\n",
        &env_of(&[("DB", "postgresql://u:p@h/d")]),
    )
    .unwrap();
    match &c.store {
        StoreConfig::Postgres { url, .. } => assert_eq!(url.expose(), "postgresql://u:p@h/d"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn admin_key_and_region_variables_only_fill_gaps() {
    let env = env_of(&[
        ("AGENTD_ADMIN_KEY", "env-admin-key-0123456789"),
        ("FLY_REGION", "ams"),
    ]);
    let c = load_with("", &env).unwrap();
    assert_eq!(
        c.auth.admin_key.as_ref().unwrap().expose(),
        "env-admin-key-0123456789"
    );
    assert_eq!(c.server.region.as_deref(), Some("ams"));
    let c = load_with(
        "[auth]\nadmin_key = \"file-admin-key-0123456789\"\n[server]\nregion = \"cdg\"\n",
        &env,
    )
    .unwrap();
    assert_eq!(
        c.auth.admin_key.as_ref().unwrap().expose(),
        "file-admin-key-0123456789"
    );
    assert_eq!(c.server.region.as_deref(), Some("cdg"));
    // An empty region lets FLY_REGION through.
    let c = load_with("[server]\nregion = \"${REGION:-}\"\n", &env).unwrap();
    assert_eq!(c.server.region.as_deref(), Some("ams"));
    // `${AGENTD_ADMIN_KEY:-}` makes the admin API optional.
    let c = load_with("[auth]\nadmin_key = \"${AGENTD_ADMIN_KEY:-}\"\n", &no_env).unwrap();
    assert!(c.auth.admin_key.is_none());
}

#[test]
fn bad_environment_values_name_the_variable() {
    let env = env_of(&[
        ("AGENTD_LISTEN", "nope"),
        ("AGENTD_ADMIN_KEY", "tiny"),
        ("AGENTD_DATABASE_URL", "mysql://x"),
    ]);
    let errs = errors_with("", &env);
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["AGENTD_LISTEN", "AGENTD_DATABASE_URL", "AGENTD_ADMIN_KEY"]
    );
    for e in &errs {
        assert_eq!(e.file, PathBuf::from("<env>"));
        assert_eq!(e.line, None);
    }
    assert!(errs[0].message.contains("invalid listen address \"nope\""));
    assert!(errs[1].message.contains("postgres://"));
    assert!(errs[2].message.contains("too short"));
    assert!(!errs[2].to_string().contains("tiny"));
}

// ---------------------------------------------------------------- built-in defaults

#[test]
fn defaults_without_provider_keys_serve_only_the_mock() {
    let c = Config::load(None, &no_env, &Overrides::default()).unwrap();
    assert!(c.is_default());
    assert_eq!(c.source, None);
    let providers: Vec<(&str, ProviderKind)> = c
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(providers, [("mock", ProviderKind::Mock)]);
    let models: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(models, ["mock", "mock-embedding"]);
    assert_eq!(c.model("mock").unwrap().owned_by, "mock");
    match &c.store {
        StoreConfig::Sqlite { path } => assert_eq!(path, Path::new("./data/agentd.db")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_add_openai_and_anthropic_when_their_keys_are_set() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk-openai"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
    ]);
    let c = Config::load(None, &env, &Overrides::default()).unwrap();
    let providers: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(providers, ["mock", "openai", "anthropic"]);
    let openai = c.provider("openai").unwrap();
    assert_eq!(openai.kind, ProviderKind::OpenAi);
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(openai.api_key.as_ref().unwrap().expose(), "sk-openai");
    let anthropic = c.provider("anthropic").unwrap();
    assert_eq!(anthropic.base_url, "https://api.anthropic.com");
    assert_eq!(anthropic.anthropic_version, "2023-06-01");
    let models: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        models,
        [
            "mock",
            "mock-embedding",
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "o4-mini",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-opus-4-1",
        ]
    );
    let gpt = c.model("gpt-4.1").unwrap();
    assert_eq!(gpt.owned_by, "openai");
    assert_eq!(gpt.deployments[0].model, "gpt-4.1");
    assert_eq!(
        c.model("claude-opus-4-1").unwrap().deployments[0].provider,
        "anthropic"
    );

    // Only one key: only that provider.
    let c = Config::load(
        None,
        &env_of(&[("ANTHROPIC_API_KEY", "k")]),
        &Overrides::default(),
    )
    .unwrap();
    let providers: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(providers, ["mock", "anthropic"]);
    assert!(c.model("gpt-4o").is_none());
}

#[test]
fn defaults_still_take_env_and_cli_layers() {
    let env = env_of(&[
        ("AGENTD_DATABASE_URL", "postgres://h/db"),
        ("AGENTD_LISTEN", "0.0.0.0:1"),
    ]);
    let cli = Overrides {
        listen: None,
        data_dir: Some(PathBuf::from("/tmp/x")),
    };
    let c = Config::load(None, &env, &cli).unwrap();
    assert_eq!(c.server.listen.port(), 1);
    assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
    assert!(matches!(c.store, StoreConfig::Postgres { .. }));
}

// ---------------------------------------------------------------- secrets

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = r#"
[store]
kind = "postgres"
url = "postgres://u:db-password-123@h/d"

[auth]
admin_key = "admin-secret-0123456789"

[providers.o]
kind = "openai"
api_key = "${KEY}"
headers = { "X-Token" = "header-secret-xyz" }

[models.m]
provider = "o"
"#;
    let c = load_with(text, &env_of(&[("KEY", "sk-api-secret")])).unwrap();
    let debug = format!("{c:?} {c:#?}");
    for secret in [
        "db-password-123",
        "admin-secret-0123456789",
        "sk-api-secret",
        "header-secret-xyz",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in Debug output");
    }
    assert!(debug.contains("***"));
    assert_eq!(c.providers[0].headers[0].1.expose(), "header-secret-xyz");
}

#[test]
fn dollar_escapes_and_defaults_in_values() {
    let text = "[providers.o]\nkind = \"openai\"\nbase_url = \"${BASE:-http://localhost:11434/v1}\"\napi_key = \"pa$$word\"\n";
    let c = load(text);
    assert_eq!(c.providers[0].base_url, "http://localhost:11434/v1");
    assert_eq!(c.providers[0].api_key.as_ref().unwrap().expose(), "pa$word");
    let c = load_with(text, &env_of(&[("BASE", "https://gw.example/v1")])).unwrap();
    assert_eq!(c.providers[0].base_url, "https://gw.example/v1");
}

#[test]
fn serde_errors_in_nested_values_are_located_precisely() {
    let text = r#"[server]
lisen = "x"
[providers]
openai = 5
[providers.x]
kind = "openai"
base_url = "http://h"
headers = { A = 5 }
[models.m]
deployments = { provider = "x" }
[models.n]
deployments = [{ provider = "x", weight = "heavy" }]
[[models.o.deployments]]
provider = "x"
extra = 1
"#;
    let rendered = crate::ConfigErrors(errors(text)).to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(
        lines,
        [
            "agentd.toml:2:1: server.lisen: unknown key \"lisen\"; fix: did you mean \"listen\"? the keys allowed here are: listen, max_body_bytes, request_timeout_ms, shutdown_grace_ms, region, log_format, data_dir, header_read_timeout_ms, body_read_timeout_ms, keep_alive_timeout_ms, max_header_bytes, max_connections, max_concurrent_requests",
            "agentd.toml:4:10: providers.openai: wrong type: found integer 5, expected a table; fix: write a table here",
            "agentd.toml:8:17: providers.x.headers.A: wrong type: found integer 5, expected a string; fix: write a string here",
            "agentd.toml:10:15: models.m.deployments: wrong type: found a table, expected an array; fix: write an array here",
            "agentd.toml:12:43: models.n.deployments[0].weight: wrong type: found string \"heavy\", expected an integer; fix: write an integer here",
            "agentd.toml:15:1: models.o.deployments[0].extra: unknown key \"extra\"; fix: remove it or use one of the keys allowed here: provider, model, weight, connect_timeout_ms, first_token_timeout_ms, timeout_ms, price",
        ]
    );
}

#[test]
fn sections_of_the_wrong_shape() {
    let errs = errors("providers = 5\nmodels = [1]\nserver = \"x\"\n");
    let keys: Vec<(Option<usize>, &str, &str)> = errs
        .iter()
        .map(|e| (e.line, e.key.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (Some(1), "providers", "providers must be a table"),
            (Some(2), "models", "models must be a table"),
            (
                Some(3),
                "server",
                "wrong type: found string \"x\", expected a table"
            ),
        ]
    );
}

#[test]
fn syntax_errors_name_the_enclosing_table() {
    one_error(
        "[server\n",
        1,
        "server",
        "TOML syntax error: invalid table header",
    );
    one_error(
        "[a]\nx = \"open\n",
        2,
        "a.x",
        "TOML syntax error: invalid basic string",
    );
    one_error("a = 1\na = 2\n", 2, "a", "duplicate key `a`");
}

#[test]
fn resilience_and_cost_sections_validate() {
    let text = r#"
[providers.a]
kind = "mock"
[providers.b]
kind = "mock"
[models.smart]
deployments = [{ provider = "a", model = "gpt-4o-2024-08-06", timeout_ms = 500 }, { provider = "b", model = "local", price = { input = "1", output = 2 } }]
balance = "least_latency"
fallbacks = ["fast"]
fallback_on = ["rate_limit", "timeout"]
max_retries = 2
[models.fast]
provider = "a"
price = { input = 0.5, output = 1.5 }
[prices."local-2"]
input = 3
output = 4
[routers.auto]
default = "fast"
rules = [{ tier = "quality", use = "smart" }, { min_prompt_tokens = 100, use = "smart" }]
[routing]
retry_backoff_ms = 10
[routing.breaker]
consecutive_failures = 3
slow_ttft_ms = 2000
[budgets]
max_request_usd = "0.5"
[[budgets.limits]]
scope = "tenant"
window = "day"
usd = 10
[[budgets.limits]]
scope = "session"
usd = "0.25"
[rate_limits]
key_rpm = 60
tenant_tpm = 0
[counters]
kind = "redis"
url = "redis://127.0.0.1:6379"
[cache]
kind = "redis"
[ledger]
flush_ms = 50
"#;
    let c = load_with(text, &env_of(&[])).unwrap();
    let smart = c.model("smart").unwrap();
    assert_eq!(smart.balance, crate::Balance::LeastLatency);
    assert_eq!(smart.fallbacks, vec!["fast".to_owned()]);
    assert!(smart.fallback_on.rate_limit && smart.fallback_on.timeout);
    assert!(!smart.fallback_on.server_error);
    assert_eq!(smart.max_retries, 2);
    assert_eq!(
        smart.deployments[0].timeout,
        Some(std::time::Duration::from_millis(500))
    );
    // Built-in table by dated snapshot; explicit deployment price; model price.
    assert_eq!(smart.deployments[0].price.unwrap().input, 2_500_000);
    assert_eq!(smart.deployments[1].price.unwrap().output, 2_000_000);
    assert_eq!(smart.deployments[1].price.unwrap().cached_input, 1_000_000);
    assert_eq!(
        c.model("fast").unwrap().deployments[0].price.unwrap().input,
        500_000
    );
    assert_eq!(c.routers[0].rules.len(), 2);
    assert_eq!(c.routing.breaker.consecutive_failures, 3);
    assert_eq!(c.budgets.max_request, Some(agentd_core::Micros(500_000)));
    assert_eq!(c.budgets.limits[0].name, "tenant-day");
    assert_eq!(c.budgets.limits[1].window, crate::BudgetWindow::Total);
    assert_eq!(c.budgets.limits[1].limit, agentd_core::Micros(250_000));
    assert_eq!(c.rate_limits.key_rpm, Some(60));
    assert_eq!(c.rate_limits.tenant_tpm, None);
    assert!(matches!(c.counters, crate::CountersConfig::Redis { .. }));
    assert!(matches!(
        c.cache.backend,
        Some(crate::CacheBackend::Redis { .. })
    ));
    assert_eq!(c.ledger.flush, std::time::Duration::from_millis(50));
}

#[test]
fn resilience_and_cost_errors_name_the_key() {
    let text = r#"[providers.a]
kind = "mock"
[models.m]
provider = "a"
fallbacks = ["m", "nope"]
fallback_on = ["teapot"]
balance = "random"
price = { input = -1 }
[routers.r]
default = "mm"
[[budgets.limits]]
scope = "planet"
usd = 1
[[budgets.limits]]
scope = "user"
match = "bob"
usd = 1
[counters]
kind = "redis"
"#;
    let rendered = crate::ConfigErrors(errors(text)).to_string();
    for needle in [
        "models.m.fallbacks[0]: a model cannot fall back to itself",
        "models.m.fallbacks[1]: unknown model \"nope\"",
        "models.m.fallback_on[0]: unknown failure class \"teapot\"",
        "models.m.balance: invalid balance \"random\"",
        "models.m.price.input: invalid amount of US$",
        "models.m.price.output: the price has no output",
        "routers.r.default: unknown model \"mm\"; fix: did you mean \"m\"?",
        "budgets.limits[0].scope: invalid scope \"planet\"",
        "budgets.limits[1].match: a user budget matches \"tenant/user\"",
        "counters.url: redis counters need a url",
    ] {
        assert!(
            rendered.contains(needle),
            "missing {needle:?} in:\n{rendered}"
        );
    }
}
