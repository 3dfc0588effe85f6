"""Helpers of check_compose.sh (run with $DEPLOY_VENV's python). Usage:

  compose_checks.py stack COMPOSE_DIR RULES.yaml

What the Compose schema cannot say, checked the way `docker compose` would read the stack:
every service has a healthcheck; depends_on and named volumes refer to what exists; bind
mounts name files the render wrote; durations parse as Go durations (the schema's `duration`
format is not checked by JSON-schema validators); every `${VAR}` is well formed and every
required one is listed in .env.example; the agentd services build their image (`build:` with
`pull_policy: build`, resolving to the rendered Dockerfile when the render sits in
<repo>/deploy, --out's default: an image in no registry would otherwise be pulled and fail);
the Grafana provisioning and dashboard are consistent
(data source uid, dashboards path). The dashboard's PromQL is written to RULES.yaml as
recording rules for `promtool check rules` ($__rate_interval replaced by 5m).
"""

import json
import os
import posixpath
import re
import sys

import yaml

DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
VARIABLE = re.compile(r"\$\{([^}]*)\}")
FORM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*((:?[-?+]).*)?$")

errors = []


def error(message):
    errors.append(message)
    print("ERROR " + message)


def walk_strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(value, "%s.%s" % (path, key) if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_strings(value, "%s[%d]" % (path, i))
    elif isinstance(node, str):
        yield path, node


def stack(directory, rules_out):
    with open(os.path.join(directory, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        check = service.get("healthcheck")
        if not check or not check.get("test"):
            error("service %s has no healthcheck" % name)
        for key in ("interval", "timeout", "start_period"):
            value = (check or {}).get(key)
            if value is not None and not DURATION.match(str(value)):
                error("service %s: healthcheck.%s %r is not a duration" % (name, key, value))
        grace = service.get("stop_grace_period")
        if grace is not None and not DURATION.match(str(grace)):
            error("service %s: stop_grace_period %r is not a duration" % (name, grace))
        depends = service.get("depends_on") or {}
        for dependency in depends:
            if dependency not in services:
                error("service %s depends on unknown service %s" % (name, dependency))
            elif not services[dependency].get("healthcheck") and \
                    depends[dependency].get("condition") == "service_healthy":
                error("service %s waits for %s to be healthy, which has no healthcheck" % (name, dependency))
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith("."):
                if not os.path.exists(os.path.join(directory, source)):
                    error("service %s mounts %s, which the render did not write" % (name, source))
            elif source and source not in volumes:
                error("service %s uses undeclared volume %s" % (name, source))

    # The render's layout as the build section assumes it: <repo>/deploy/compose.
    rendered_dockerfile = os.path.join(os.path.dirname(os.path.abspath(directory)), "Dockerfile")
    for name, service in services.items():
        build = service.get("build")
        if name.startswith("agentd") and not build:
            error("service %s runs image %s without build: `docker compose up` would pull it" % (name, service.get("image")))
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        if service.get("pull_policy") != "build":
            error("service %s builds its image but pull_policy is %r, not build: Compose may pull %s first"
                  % (name, service.get("pull_policy"), service.get("image")))
        resolved = posixpath.normpath(posixpath.join(
            "/repo/deploy/compose", build.get("context", "."), build.get("dockerfile", "Dockerfile")))
        if resolved != "/repo/deploy/Dockerfile":
            error("service %s: build context %r + dockerfile %r is %s in <repo>/deploy/compose, not the rendered deploy/Dockerfile"
                  % (name, build.get("context"), build.get("dockerfile"), resolved))
        if not os.path.exists(rendered_dockerfile):
            error("service %s builds with a Dockerfile the render did not write (%s)" % (name, rendered_dockerfile))

    with open(os.path.join(directory, ".env.example")) as f:
        listed = {line.split("=", 1)[0] for line in f if "=" in line and not line.startswith("#")}
    required = set()
    for path, text in walk_strings(compose):
        for inner in VARIABLE.findall(text):
            if not FORM.match(inner):
                error("%s: malformed interpolation ${%s}" % (path, inner))
                continue
            name = re.match(r"[A-Za-z0-9_]+", inner).group(0)
            if ":?" in inner or (inner == name):
                required.add(name)
        if re.search(r"(?<!\$)\$(?![{$])", text):
            error("%s: a lone $ (write $$ for a literal dollar): %r" % (path, text))
    for name in sorted(required - listed):
        error("${%s} is required by compose.yaml but not listed in .env.example" % name)

    grafana = os.path.join(directory, "grafana")
    with open(os.path.join(grafana, "provisioning", "datasources", "prometheus.yaml")) as f:
        sources = yaml.safe_load(f)["datasources"]
    uids = {s["uid"] for s in sources}
    with open(os.path.join(grafana, "provisioning", "dashboards", "agentd.yaml")) as f:
        providers = yaml.safe_load(f)["providers"]
    mounted = [m for m in services.get("grafana", {}).get("volumes", []) if isinstance(m, str)]
    for provider in providers:
        path = provider["options"]["path"]
        if not any(m.split(":")[1] == path for m in mounted):
            error("dashboard provider path %s is not mounted into grafana" % path)
    rules = []
    for file in sorted(os.listdir(os.path.join(grafana, "dashboards"))):
        with open(os.path.join(grafana, "dashboards", file)) as f:
            dashboard = json.load(f)
        for key in ("uid", "title", "panels", "schemaVersion"):
            if key not in dashboard:
                error("%s: no %s" % (file, key))
        ids = set()
        for panel in dashboard.get("panels", []):
            if panel.get("id") in ids:
                error("%s: panel id %s repeated" % (file, panel.get("id")))
            ids.add(panel.get("id"))
            if panel.get("type") == "row":
                continue
            if panel.get("datasource", {}).get("uid") not in uids:
                error("%s: panel %r uses an unprovisioned data source" % (file, panel.get("title")))
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if not expr:
                    error("%s: panel %r has an empty query" % (file, panel.get("title")))
                    continue
                rules.append({
                    "record": "dashboard_check:panel_%s_%s" % (panel["id"], target.get("refId", "A")),
                    "expr": expr.replace("$__rate_interval", "5m").replace("$__interval", "1m"),
                })
        print("%s: %d panels, %d queries" % (file, len(ids), len(rules)))
    with open(rules_out, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    print("%d services: %s" % (len(services), ", ".join(services)))
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "stack":
        sys.exit(stack(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)
