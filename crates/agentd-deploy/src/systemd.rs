//! A bare VM: `systemd/<app>.service` runs every role of agentd under a dynamic user with its
//! state in `/var/lib/<app>`; on PostgreSQL, `systemd/<app>-worker@.service` adds workers of one
//! pool each (`<app>-worker@<pool>`, listening on their own local port from
//! `systemd/worker-<pool>.env`) on more machines. `systemd/install.sh` installs the binary, the
//! config (`/etc/agentd/agentd.toml`), an environment file for the secrets and the units;
//! `systemd/agentd.env.example` names the secrets (and `AGENTD_REGION`, which a config listing
//! several regions requires).
//!
//! agentd exits 78 (EX_CONFIG) on a config it cannot run with; the units do not restart it then
//! (`RestartPreventExitStatus=78`): the same file would fail again, every two seconds.
//!
//! The decision to know: **no container.** The unit runs the binary (the image is for the other
//! targets), sandboxed by systemd instead: `DynamicUser`, a read-only system, no home
//! directories, no new privileges, a system-call filter. The secrets live in an environment
//! file only root can read; systemd reads it before it drops privileges.

use std::fmt::Write as _;

use crate::docker::{self, BINARY};
use crate::{Ctx, File, RenderError};

const DIR: &str = "systemd";
const CONFIG_DIR: &str = "/etc/agentd";
const ENV_FILE: &str = "/etc/agentd/agentd.env";
/// Seconds after the drain before systemd's SIGKILL.
const STOP_MARGIN_SECONDS: u64 = 10;
/// Sockets: 10,000 streaming clients in the benchmark, plus upstream connections.
const NOFILE: u32 = 65536;
/// agentd's exit status for a configuration it cannot run with (EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// The first local port of the worker units (one per pool, in config order).
const WORKER_PORT_BASE: u16 = 9101;

pub(crate) fn render(ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    let mut files = vec![
        File::new(format!("{DIR}/{}.service", ctx.app), main_unit(ctx)),
        File::new(format!("{DIR}/agentd.env.example"), env_example(ctx)),
        docker::config_file(DIR, ctx),
        File::script(format!("{DIR}/install.sh"), install_script(ctx)),
        File::new(format!("{DIR}/README.md"), readme(ctx)),
    ];
    if ctx.split_roles {
        files.insert(
            1,
            File::new(
                format!("{DIR}/{}-worker@.service", ctx.app),
                worker_unit(ctx),
            ),
        );
        for (pool, port) in worker_ports(ctx) {
            files.push(File::new(
                format!("{DIR}/worker-{pool}.env"),
                worker_env(ctx, pool, port),
            ));
        }
    }
    Ok(files)
}

/// Each used pool's worker unit and its own local port: 9101, 9102, … in config order, skipping
/// `server.listen`'s port, so the worker units and the main unit never collide on one machine.
fn worker_ports<'a>(ctx: &Ctx<'a>) -> Vec<(&'a str, u16)> {
    let mut ports = (WORKER_PORT_BASE..).filter(|p| *p != ctx.port);
    ctx.pools()
        .into_iter()
        .filter_map(|p| ports.next().map(|port| (p.name.as_str(), port)))
        .collect()
}

/// `/etc/agentd/worker-<pool>.env`: the worker unit's own listen address (not a secret).
fn worker_env(ctx: &Ctx<'_>, pool: &str, port: u16) -> String {
    format!(
        "# {CONFIG_DIR}/worker-{pool}.env: settings of {app}-worker@{pool} on this machine, read after\n\
         # agentd.env (systemd's syntax). Written by `agentd deploy render`; install.sh copies it once and\n\
         # never overwrites it.\n\
         # Its own port, so that it does not collide with {app}.service (server.listen, port {main}) or\n\
         # another pool's worker unit. It serves /healthz, /readyz and /metrics only; on 127.0.0.1 a\n\
         # Prometheus on another machine cannot scrape it: use 0.0.0.0:{port} then (and a firewall).\n\
         AGENTD_LISTEN=127.0.0.1:{port}\n",
        app = ctx.app,
        main = ctx.port,
    )
}

/// The `[Service]` lines both units share: environment, sandbox, limits, stopping.
fn service_common(ctx: &Ctx<'_>, state: &str) -> String {
    let low_port = ctx.port < 1024;
    let caps = if low_port {
        "# server.listen's port is below 1024: that one capability, nothing else.\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"
    } else {
        "CapabilityBoundingSet=\nAmbientCapabilities=\n"
    };
    let secrets = if ctx.secret_vars.is_empty() {
        "none".to_owned()
    } else {
        ctx.secret_vars.join(", ")
    };
    format!(
        "# Secrets ({secrets}): NAME=value lines in a file only root reads; systemd reads it before\n\
         # dropping privileges. install.sh creates it from agentd.env.example.\n\
         EnvironmentFile={ENV_FILE}\n\
         Environment=AGENTD_CONFIG={CONFIG_DIR}/agentd.toml\n\
         Environment=AGENTD_DATA_DIR=%S/{state}\n\
         Environment=AGENTD_LOG_FORMAT=json\n\
         \n\
         # A user made up for the service; it owns only its state directory (/var/lib/{state}).\n\
         DynamicUser=yes\n\
         StateDirectory={state}\n\
         StateDirectoryMode=0750\n\
         WorkingDirectory=%S/{state}\n\
         UMask=0077\n\
         \n\
         # SIGTERM drains in-flight requests and runs for server.shutdown_grace ({drain} s); then {STOP_MARGIN_SECONDS} s\n\
         # to exit before SIGKILL. Runs cut then are redelivered to another worker.\n\
         KillSignal=SIGTERM\n\
         KillMode=mixed\n\
         TimeoutStopSec={stop}\n\
         TimeoutStartSec=60\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         # Exit {EXIT_CONFIG}: a config agentd cannot run with (the journal says why, e.g. AGENTD_REGION unset\n\
         # with several regions listed). Restarting would fail the same way: stay stopped until fixed.\n\
         RestartPreventExitStatus={EXIT_CONFIG}\n\
         # Every stream is a socket (10,000 streaming clients in the benchmark), plus the providers'.\n\
         LimitNOFILE={NOFILE}\n\
         \n\
         # Sandbox.\n\
         NoNewPrivileges=yes\n\
         {caps}\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RemoveIPC=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallErrorNumber=EPERM\n",
        drain = ctx.drain_seconds,
        stop = ctx.drain_seconds + STOP_MARGIN_SECONDS,
    )
}

fn main_unit(ctx: &Ctx<'_>) -> String {
    let what = if ctx.split_roles {
        format!(
            "every role: the API and the workers of every pool (more workers: {}-worker@<pool>)",
            ctx.app
        )
    } else {
        "every role, with the SQLite store in its state directory".to_owned()
    };
    format!(
        "# {app}.service, written by `agentd deploy render --target systemd` from agentd.toml.\n\
         # Installed by install.sh (see README.md); the config is {CONFIG_DIR}/agentd.toml.\n\
         [Unit]\n\
         Description=agentd ({app}): LLM gateway and agent runtime, {what}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={BINARY} serve\n\
         {common}\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        app = ctx.app,
        common = service_common(ctx, &ctx.app),
    )
}

fn worker_unit(ctx: &Ctx<'_>) -> String {
    let ports = worker_ports(ctx);
    let pools: Vec<&str> = ports.iter().map(|(p, _)| *p).collect();
    let listen: Vec<String> = ports
        .iter()
        .map(|(p, port)| format!("{p} 127.0.0.1:{port}"))
        .collect();
    format!(
        "# {app}-worker@.service, written by `agentd deploy render --target systemd`: the workers of one\n\
         # pool, for machines that add capacity to the PostgreSQL-backed deployment. The instance name\n\
         # is the pool: systemctl enable --now {app}-worker@{first} (pools: {pools}).\n\
         # Each instance listens (/healthz, /readyz, /metrics) on its own port, set by AGENTD_LISTEN in\n\
         # {CONFIG_DIR}/worker-<pool>.env (install.sh copies worker-<pool>.env there), so it never collides\n\
         # with {app}.service on server.listen (port {main}) or with another pool: {listen}.\n\
         [Unit]\n\
         Description=agentd ({app}): workers of pool %i ({app}-worker@%i)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={BINARY} serve --role worker --pools %i\n\
         {common}\
         # This pool's own settings (AGENTD_LISTEN: its port), read last so they win. Required: without\n\
         # it the worker would listen on server.listen's port, which {app}.service already holds.\n\
         EnvironmentFile={CONFIG_DIR}/worker-%i.env\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        app = ctx.app,
        first = pools.first().copied().unwrap_or("cpu"),
        pools = pools.join(", "),
        main = ctx.port,
        listen = listen.join(", "),
        common = service_common(ctx, &format!("{}-worker-%i", ctx.app)),
    )
}

fn env_example(ctx: &Ctx<'_>) -> String {
    let mut out = format!(
        "# {ENV_FILE}: the secrets of agentd, NAME=value per line (systemd's syntax: no `export`,\n\
         # quotes optional). Mode 0600, owned by root. Written by `agentd deploy render`: names only.\n"
    );
    for var in &ctx.secret_vars {
        let _ = writeln!(out, "{var}=");
    }
    if let Some(regions) = region_required(ctx) {
        let _ = write!(
            out,
            "# Required: this machine's region, one of {list} (the config lists several regions and\n\
             # sets no server.region). Without it agentd exits {EXIT_CONFIG} (\"this instance's region is unknown\").\n\
             # Uncomment and set it, e.g. AGENTD_REGION={first}\n\
             #AGENTD_REGION=\n",
            list = regions.join(", "),
            first = regions[0],
        );
    }
    out
}

/// The regions to choose from when this machine must say which one it is in: the config lists
/// several and does not set `server.region` itself. (The loaded config cannot tell: rendering
/// stands in FLY_REGION for it.)
fn region_required<'a>(ctx: &Ctx<'a>) -> Option<&'a [String]> {
    let regions = &ctx.regions_config().list;
    if regions.len() < 2 {
        return None;
    }
    let sets_region = ctx
        .config_text
        .parse::<toml_edit::DocumentMut>()
        .ok()
        .and_then(|doc| {
            doc.get("server")
                .and_then(|s| s.get("region"))
                .and_then(toml_edit::Item::as_str)
                .map(|r| !r.trim().is_empty())
        })
        .unwrap_or(false);
    (!sets_region).then_some(regions.as_slice())
}

fn install_script(ctx: &Ctx<'_>) -> String {
    let app = &ctx.app;
    let mut worker = String::new();
    if ctx.split_roles {
        let _ = writeln!(
            worker,
            "install -m 0644 \"$HERE/{app}-worker@.service\" /etc/systemd/system/{app}-worker@.service"
        );
        for (pool, _) in worker_ports(ctx) {
            let _ = writeln!(
                worker,
                "[ -e {CONFIG_DIR}/worker-{pool}.env ] || install -m 0644 \"$HERE/worker-{pool}.env\" {CONFIG_DIR}/worker-{pool}.env"
            );
        }
    }
    let region_check = match region_required(ctx) {
        Some(regions) => format!(
            "if ! grep -qE '^AGENTD_REGION=[a-z0-9]+$' {ENV_FILE}; then\n\
             \x20 echo \"Set AGENTD_REGION in {ENV_FILE} to this machine's region (one of: {list}).\"\n\
             \x20 READY=0\n\
             fi\n",
            list = regions.join(" ")
        ),
        None => String::new(),
    };
    format!(
        "#!/usr/bin/env bash\n\
         # Installs agentd as the systemd service {app} on this machine, written by\n\
         # `agentd deploy render --target systemd`. As root:\n\
         #   sudo bash deploy/systemd/install.sh [path/to/agentd]\n\
         # The binary defaults to target/release/agentd of the repository (cargo build --release -p agentd),\n\
         # else the agentd on PATH. Safe to run again: it replaces the binary, config and units, and\n\
         # never overwrites the secrets file.\n\
         set -euo pipefail\n\
         \n\
         HERE=\"$(cd \"$(dirname \"${{BASH_SOURCE[0]}}\")\" && pwd)\"\n\
         BIN=\"${{1:-}}\"\n\
         if [ -z \"$BIN\" ]; then\n\
         \x20 for candidate in \"$HERE/../../target/release/agentd\" \"$(command -v agentd || true)\"; do\n\
         \x20   if [ -n \"$candidate\" ] && [ -x \"$candidate\" ]; then BIN=\"$candidate\"; break; fi\n\
         \x20 done\n\
         fi\n\
         [ -n \"$BIN\" ] && [ -x \"$BIN\" ] || {{ echo \"no agentd binary: cargo build --release -p agentd, or pass its path\" >&2; exit 1; }}\n\
         [ \"$(id -u)\" = 0 ] || {{ echo \"run this as root (sudo)\" >&2; exit 1; }}\n\
         \n\
         install -m 0755 \"$BIN\" {BINARY}\n\
         install -d -m 0755 {CONFIG_DIR}\n\
         install -m 0644 \"$HERE/agentd.toml\" {CONFIG_DIR}/agentd.toml\n\
         NEW_SECRETS=0\n\
         if [ ! -e {ENV_FILE} ]; then\n\
         \x20 install -m 0600 -o root -g root \"$HERE/agentd.env.example\" {ENV_FILE}\n\
         \x20 NEW_SECRETS=1\n\
         fi\n\
         install -m 0644 \"$HERE/{app}.service\" /etc/systemd/system/{app}.service\n\
         {worker}\
         systemctl daemon-reload\n\
         READY=1\n\
         if [ \"$NEW_SECRETS\" = 1 ] && grep -qE '^[A-Z0-9_]+=$' {ENV_FILE}; then\n\
         \x20 echo \"Fill in the secrets in {ENV_FILE}.\"\n\
         \x20 READY=0\n\
         fi\n\
         {region_check}\
         systemctl enable {app}.service\n\
         if [ \"$READY\" = 1 ]; then\n\
         \x20 systemctl restart {app}.service\n\
         \x20 systemctl --no-pager status {app}.service || true\n\
         else\n\
         \x20 echo \"Then: systemctl start {app}\"\n\
         fi\n"
    )
}

fn readme(ctx: &Ctx<'_>) -> String {
    let app = &ctx.app;
    let mut r = format!(
        "# agentd on a VM with systemd\n\n\
         Written by `agentd deploy render --target systemd` from `agentd.toml`. Edit the config and render\n\
         again; do not edit these files.\n\n\
         | file | installed as |\n|---|---|\n\
         | `{app}.service` | `/etc/systemd/system/{app}.service`: `agentd serve`, every role |\n"
    );
    if ctx.split_roles {
        let ports = worker_ports(ctx);
        let first = ports.first().map_or("cpu", |(p, _)| *p);
        let _ = writeln!(
            r,
            "| `{app}-worker@.service` | `/etc/systemd/system/{app}-worker@.service`: the workers of one pool (`{app}-worker@{first}`), for more machines |"
        );
        for (pool, port) in &ports {
            let _ = writeln!(
                r,
                "| `worker-{pool}.env` | `{CONFIG_DIR}/worker-{pool}.env` (copied once): `{app}-worker@{pool}` listens on `127.0.0.1:{port}` |"
            );
        }
    }
    let _ = write!(
        r,
        "| `agentd.toml` | `{CONFIG_DIR}/agentd.toml` |\n\
         | `agentd.env.example` | `{ENV_FILE}` (mode 0600): the secrets, by name |\n\
         | `install.sh` | does all of the above, then enables and starts the service |\n\n\
         ## Install\n\n\
         ```sh\n\
         cargo build --release -p agentd           # or bring a release binary\n\
         sudo bash deploy/systemd/install.sh\n\
         sudoedit {ENV_FILE}                # the secrets, then: sudo systemctl start {app}\n\
         journalctl -u {app} -f\n\
         ```\n\n\
         agentd listens on `server.listen` ({listen}); with `127.0.0.1` put a reverse proxy (TLS) in front, or\n\
         listen on `0.0.0.0`. State (the SQLite store, when it is used) lives in `/var/lib/{app}`, owned by the\n\
         service's dynamic user.\n\
         `systemctl stop` drains for `server.shutdown_grace` ({drain} s). A config agentd cannot run with\n\
         makes it exit {EXIT_CONFIG}; the units then stay stopped (`RestartPreventExitStatus={EXIT_CONFIG}`) instead of\n\
         restarting every two seconds: `journalctl -u {app}` says what to fix.\n",
        listen = ctx.config.server.listen,
        drain = ctx.drain_seconds,
    );
    if let Some(regions) = region_required(ctx) {
        let _ = write!(
            r,
            "\n**Regions.** The config lists several regions ({list}) and no `server.region`, so each machine\n\
             must say which one it is in: set `AGENTD_REGION` in `{ENV_FILE}` (the example has it, commented).\n\
             Without it agentd exits {EXIT_CONFIG}.\n",
            list = regions.join(", ")
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::test_support::{assert_no_secret, ctx_with, file, load};

    #[test]
    fn sqlite_gets_one_hardened_unit_with_its_state_directory() {
        let text = "[server]\nshutdown_grace_ms = 45000\nlisten = \"0.0.0.0:8080\"\n";
        let config = load(text);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        assert!(!files
            .iter()
            .any(|f| f.path.to_string_lossy().contains("worker@")));
        let unit = file(&files, "systemd/agentd.service");
        for line in [
            "ExecStart=/usr/local/bin/agentd serve\n",
            "DynamicUser=yes\n",
            "StateDirectory=agentd\n",
            "Environment=AGENTD_DATA_DIR=%S/agentd\n",
            "EnvironmentFile=/etc/agentd/agentd.env\n",
            "KillSignal=SIGTERM\n",
            "TimeoutStopSec=55\n",
            "Restart=on-failure\n",
            "RestartPreventExitStatus=78\n",
            "NoNewPrivileges=yes\n",
            "ProtectSystem=strict\n",
            "ProtectHome=yes\n",
            "PrivateTmp=yes\n",
            "LimitNOFILE=65536\n",
            "CapabilityBoundingSet=\n",
            "WantedBy=multi-user.target\n",
        ] {
            assert!(unit.contains(line), "missing {line:?} in\n{unit}");
        }
        assert_eq!(
            file(&files, "systemd/agentd.env.example"),
            "# /etc/agentd/agentd.env: the secrets of agentd, NAME=value per line (systemd's syntax: no `export`,\n# quotes optional). Mode 0600, owned by root. Written by `agentd deploy render`: names only.\nAGENTD_ADMIN_KEY=\n"
        );
        let install = files
            .iter()
            .find(|f| f.path.to_str() == Some("systemd/install.sh"))
            .unwrap();
        assert_eq!(install.mode, 0o755);
    }

    #[test]
    fn postgres_adds_a_worker_template_and_names_secrets_only() {
        let text = "[server]\nlisten = \"0.0.0.0:80\"\n[store]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\n[providers.openai]\nkind = \"openai\"\napi_key = \"${OPENAI_API_KEY}\"\n";
        let config = load(text);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        let worker = file(&files, "systemd/agentd-worker@.service");
        assert!(worker.contains("ExecStart=/usr/local/bin/agentd serve --role worker --pools %i\n"));
        assert!(worker.contains("StateDirectory=agentd-worker-%i\n"));
        assert!(worker.contains("RestartPreventExitStatus=78\n"));
        // Its own port (required file), never server.listen's, which agentd.service holds.
        assert!(worker.contains("\nEnvironmentFile=/etc/agentd/worker-%i.env\n"));
        assert!(
            worker.contains("Description=agentd (agentd): workers of pool %i (agentd-worker@%i)\n")
        );
        let env = file(&files, "systemd/worker-cpu.env");
        assert!(env.ends_with("\nAGENTD_LISTEN=127.0.0.1:9101\n"), "{env}");
        assert!(file(&files, "systemd/install.sh").contains(
            "[ -e /etc/agentd/worker-cpu.env ] || install -m 0644 \"$HERE/worker-cpu.env\" /etc/agentd/worker-cpu.env\n"
        ));
        // Port 80: the one capability it needs.
        assert!(worker.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE\n"));
        let env = file(&files, "systemd/agentd.env.example");
        assert!(env.contains("\nDATABASE_URL=\n") && env.contains("\nOPENAI_API_KEY=\n"));
        assert!(file(&files, "systemd/install.sh").contains("agentd-worker@.service"));
        assert_no_secret(&files);
    }

    #[test]
    fn several_regions_need_agentd_region_and_units_are_named_after_the_app() {
        let text = r#"
[server]
listen = "0.0.0.0:9101"
[store]
kind = "postgres"
url = "${DATABASE_URL}"
[models.m]
provider = "mock"
[providers.mock]
kind = "mock"
[agents.a]
model = "m"
[agents.b]
model = "m"
pool = "gpu"
[regions]
list = ["cdg", "nrt"]
primary = "cdg"
[regions.urls]
cdg = "https://cdg.example.com"
nrt = "https://nrt.example.com"
[deploy]
app = "agents"
"#;
        let config = load(text);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        // The main unit points at the real template name.
        let main = file(&files, "systemd/agents.service");
        assert!(
            main.contains("(more workers: agents-worker@<pool>)"),
            "{main}"
        );
        assert!(!main.contains("agentd-worker@"));
        assert!(main.contains("RestartPreventExitStatus=78\n"));
        // AGENTD_REGION: named, commented, with the regions to choose from.
        let env = file(&files, "systemd/agentd.env.example");
        assert!(
            env.contains("# Required: this machine's region, one of cdg, nrt"),
            "{env}"
        );
        assert!(env.contains("\n#AGENTD_REGION=\n"));
        assert!(!env.contains("\nAGENTD_REGION="));
        // install.sh does not start agentd before it is set.
        let install = file(&files, "systemd/install.sh");
        assert!(install
            .contains("if ! grep -qE '^AGENTD_REGION=[a-z0-9]+$' /etc/agentd/agentd.env; then"));
        // Worker ports skip server.listen's (9101 here) and differ per pool.
        assert!(file(&files, "systemd/worker-cpu.env").contains("\nAGENTD_LISTEN=127.0.0.1:9102\n"));
        assert!(file(&files, "systemd/worker-gpu.env").contains("\nAGENTD_LISTEN=127.0.0.1:9103\n"));
        assert!(file(&files, "systemd/agents-worker@.service").contains("(pools: cpu, gpu)."));
        assert!(file(&files, "systemd/README.md").contains("set `AGENTD_REGION`"));

        // server.region in the file: nothing to add.
        let fixed = text.replace("[server]\n", "[server]\nregion = \"cdg\"\n");
        let config = load(&fixed);
        let files = render(&ctx_with(&config, &fixed, &[])).unwrap();
        assert!(!file(&files, "systemd/agentd.env.example").contains("AGENTD_REGION"));
        assert!(!file(&files, "systemd/install.sh").contains("AGENTD_REGION"));
    }
}
