//! Black-box harness: starts the real `agentd` binary on port 0 with an inline config, learns
//! its address from the startup log, and keeps its stderr for assertions about logging.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_agentd");
pub(crate) const ADMIN_KEY: &str = "admin-key-for-tests-0123456789";

/// Environment for a child: a clean slate without the developer's provider keys.
pub(crate) fn base_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("AGENTD_ADMIN_KEY")
        .env_remove("AGENTD_LISTEN")
        .env_remove("AGENTD_DATA_DIR")
        .env_remove("AGENTD_DATABASE_URL")
        .env_remove("AGENTD_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("AGENTD_LOG");
    cmd
}

pub(crate) struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: Option<PathBuf>,
    pub logs: Arc<Mutex<Vec<String>>>,
    data_dir_override: Option<PathBuf>,
}

pub(crate) struct Options<'a> {
    pub config: Option<&'a str>,
    pub env: Vec<(&'a str, String)>,
    /// Reuse this data directory (a restart) instead of a fresh one.
    pub data_dir: Option<PathBuf>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            config: None,
            env: vec![("AGENTD_ADMIN_KEY", ADMIN_KEY.to_string())],
            data_dir: None,
        }
    }
}

impl Server {
    pub(crate) fn start(config: Option<&str>) -> Server {
        Server::start_with(Options {
            config,
            ..Options::default()
        })
    }

    pub(crate) fn start_with(opts: Options<'_>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = opts.config.map(|text| {
            let path = dir.path().join("agentd.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let data_dir_s = data_dir.to_str().unwrap().to_owned();
        args.extend(["--data-dir", &data_dir_s]);
        let cfg_s;
        if let Some(c) = &config {
            cfg_s = c.to_str().unwrap().to_owned();
            args.extend(["-c", &cfg_s]);
        }
        let mut cmd = base_command(&args);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start agentd");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("agentd listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "agentd did not start; log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("startup log line is JSON");
        let addr = v["fields"]["addr"]
            .as_str()
            .expect("addr field")
            .parse()
            .unwrap();
        Server {
            child: Some(child),
            addr,
            dir,
            config,
            logs,
            data_dir_override: opts.data_dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir_override
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// Runs `agentd ARGS` against this server's config and data dir.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        let data = self.data_dir();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", data.to_str().unwrap()]);
        let cfg;
        if let Some(c) = &self.config {
            cfg = c.to_str().unwrap().to_owned();
            all.extend(["-c", &cfg]);
        }
        base_command(&all).output().unwrap()
    }

    pub(crate) fn create_key(&self, name: &str, tenant: Option<&str>) -> String {
        let mut args = vec!["keys", "create", "--name", name];
        if let Some(t) = tenant {
            args.extend(["--tenant", t]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must hold only the secret: {stdout:?}"
        );
        lines[0].to_string()
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "agentd did not exit within {within:?}; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A config with the in-process mock and two HTTP providers pointing at a mock server.
pub(crate) fn config_with_upstream(mock_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 65536
shutdown_grace_ms = 3000

[auth]
key_cache_ttl_ms = 100

[providers.local]
kind = "mock"

[providers.up-openai]
kind = "openai"
base_url = "{mock_url}/v1"
api_key = "sk-upstream-openai-secret-value"

[providers.up-anthropic]
kind = "anthropic"
base_url = "{mock_url}"
api_key = "sk-ant-upstream-secret-value"

[models.mock]
provider = "local"

[models.mock-embedding]
provider = "local"

[models.gpt-up]
provider = "up-openai"
model = "mock"

[models.claude-up]
provider = "up-anthropic"
model = "mock"
{extra}
"#
    )
}

pub(crate) fn assert_path_exists(p: &Path) {
    assert!(p.exists(), "{} should exist", p.display());
}

/// A backend service URL from the environment (`.ci/run` sets them). Under CI its absence is
/// a failure; on a laptop the test says it was skipped.
pub(crate) fn env_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} must be set under CI (.ci/run sets it)")
        }
        _ => {
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

/// A name no other test run uses (Redis prefixes, tenants, schemas).
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}
