"""Cloud Run's published API schema, as JSON Schema, and the checks it cannot express.

No registry ships a Cloud Run or Knative JSON Schema. Google's own description of the API that
`gcloud run services replace` sends these manifests to ships on PyPI: the Cloud Run Admin API v1
discovery document (googleapiclient/discovery_cache/documents/run.v1.json in
google-api-python-client). `schema` converts it mechanically: each discovery schema becomes a
definition, `$ref` a JSON pointer, and objects with declared properties reject unknown fields
(the API and gcloud reject them too); maps keep their declared value types (annotation values
must be strings). Nothing is added that the document does not say.

`check` then verifies what the document states in prose: which `run.googleapis.com/` and
`autoscaling.knative.dev/` annotations Cloud Run accepts on a Service and on a Revision (the
list in ObjectMeta.annotations), timeoutSeconds at most 3600, startup probe periods at most 240 s
and not below their timeout, resource limit keys; and, beyond the API, that every secret the
manifests reference is one deploy.sh creates, that no variable of the config has a value, that
each instance is told its region (AGENTD_REGION), that no worker service sits at zero instances
without a Cloud Scheduler job to start it (no request ever starts a worker), and — by running
deploy.sh's own manifest() with bash — that every manifest deploy.sh applies names this run's
image and project, with nothing else changed.

Usage: python cloudrun_checks.py schema RUN_V1_JSON OUT_SCHEMA
       python cloudrun_checks.py check RUN_V1_JSON RENDERED_DIR
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}", file=sys.stderr)


def convert(node):
    if "$ref" in node:
        return {"$ref": f"#/definitions/{node['$ref']}"}
    kind = node.get("type")
    if kind == "object" or "properties" in node or "additionalProperties" in node:
        out = {"type": "object"}
        if "properties" in node:
            out["properties"] = {k: convert(v) for k, v in node["properties"].items()}
            out["additionalProperties"] = False
        if "additionalProperties" in node:
            out["additionalProperties"] = convert(node["additionalProperties"])
        return out
    if kind == "array":
        return {"type": "array", "items": convert(node.get("items", {}))}
    if kind == "string":
        if node.get("format") in ("int64", "uint64"):
            # int64 travels as a JSON string; YAML authors write numbers.
            return {"type": ["string", "integer"]}
        out = {"type": "string"}
        if "enum" in node:
            out["enum"] = node["enum"]
        return out
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    return {}


def schema(discovery):
    definitions = {name: convert(s) for name, s in discovery["schemas"].items()}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Cloud Run Admin API v1 Service (discovery revision {discovery.get('revision')})",
        "definitions": definitions,
        "allOf": [{"$ref": "#/definitions/Service"}],
    }


def accepted_annotations(discovery):
    """{annotation: {resource types}} from ObjectMeta.annotations' description."""
    text = discovery["schemas"]["ObjectMeta"]["properties"]["annotations"]["description"]
    out = {}
    for name, where in re.findall(r"`([^`]+)`: ([^*]+)", text):
        out[name] = {w.strip(" .,") for w in where.split(",") if w.strip(" .,")}
    return out


def check_annotations(where, annotations, resource, accepted):
    for key, value in (annotations or {}).items():
        if not isinstance(value, str):
            fail(f"{where}: annotation {key} is not a string")
        if key.startswith(("run.googleapis.com/", "autoscaling.knative.dev/")):
            types = accepted.get(key)
            if types is None:
                fail(f"{where}: Cloud Run does not accept the annotation {key}")
            elif resource not in types and "All resources" not in types:
                fail(f"{where}: {key} belongs on a {'/'.join(sorted(types))}, not on a {resource}")


def check_probe(where, name, probe, port):
    if not probe:
        return
    period = probe.get("periodSeconds", 10)
    timeout = probe.get("timeoutSeconds", 1)
    limit = 240 if name == "startupProbe" else 3600
    if not 1 <= period <= limit or period < timeout:
        fail(f"{where}: {name} periodSeconds {period} (1-{limit}, at least timeoutSeconds {timeout})")
    get = probe.get("httpGet")
    if get is not None and (get.get("port", port) != port or not str(get.get("path", "")).startswith("/")):
        fail(f"{where}: {name} httpGet {get}")


def check(discovery, rendered):
    accepted = accepted_annotations(discovery)
    if len(accepted) < 20:
        fail(f"could not read the accepted annotations from run.v1.json ({len(accepted)} found)")
    run_dir = rendered / "cloudrun"
    script = (run_dir / "deploy.sh").read_text()
    created = set(re.findall(r"(?:put_secret|env_secret \w+) '([^']+)'", script))
    config = (run_dir / "agentd.toml").read_text()
    variables = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", config))
    manifests = sorted(run_dir.glob("service-*.yaml")) + sorted(run_dir.glob("worker-*.yaml"))
    if not manifests:
        fail(f"no manifests in {run_dir}")
    for path in manifests:
        where = path.name
        doc = yaml.safe_load(path.read_text())
        if doc.get("apiVersion") != "serving.knative.dev/v1" or doc.get("kind") != "Service":
            fail(f"{where}: not a serving.knative.dev/v1 Service")
        name = doc.get("metadata", {}).get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?", name):
            fail(f"{where}: service name {name!r} (lower case, digits, '-', at most 49)")
        check_annotations(where, doc["metadata"].get("annotations"), "Service", accepted)
        template = doc["spec"]["template"]
        check_annotations(where, template.get("metadata", {}).get("annotations"), "Revision", accepted)
        spec = template["spec"]
        if not 1 <= spec.get("timeoutSeconds", 300) <= 3600:
            fail(f"{where}: timeoutSeconds {spec.get('timeoutSeconds')} (at most 3600)")
        if not 0 <= spec.get("containerConcurrency", 80) <= 1000:
            fail(f"{where}: containerConcurrency {spec.get('containerConcurrency')} (at most 1000)")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            secret = v.get("secret", {}).get("secretName")
            if secret and secret not in created:
                fail(f"{where}: volume {v['name']} mounts the secret {secret}, which deploy.sh does not create")
        containers = spec.get("containers", [])
        if len(containers) != 1:
            fail(f"{where}: one container expected")
        for c in containers:
            ports = c.get("ports", [])
            if len(ports) != 1 or ports[0].get("name") not in ("http1", "h2c"):
                fail(f"{where}: one port named http1 or h2c expected: {ports}")
            port = ports[0].get("containerPort", 8080) if ports else 8080
            for name in ("startupProbe", "livenessProbe", "readinessProbe"):
                check_probe(where, name, c.get(name), port)
            limits = c.get("resources", {}).get("limits", {})
            if set(limits) - {"cpu", "memory", "nvidia.com/gpu"}:
                fail(f"{where}: limits {sorted(limits)}")
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    fail(f"{where}: volumeMount {mount['name']} has no volume")
            for env in c.get("env", []):
                if env["name"] in variables and "value" in env:
                    fail(f"{where}: {env['name']} has a literal value (secrets go by reference)")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref.get("name") not in created:
                    fail(f"{where}: {env['name']} reads the secret {ref.get('name')}, which deploy.sh does not create")
            missing = variables - {e["name"] for e in c.get("env", [])}
            if missing:
                fail(f"{where}: the config reads {sorted(missing)}, which the container does not get")
            region = {e["name"]: e.get("value") for e in c.get("env", [])}.get("AGENTD_REGION")
            if region != template.get("metadata", {}).get("labels", {}).get("region"):
                fail(f"{where}: AGENTD_REGION is {region!r}, not the service's region label")
    check_workers_start(run_dir, script)
    check_substitution(run_dir, script, manifests)
    print(f"cloudrun: {len(manifests)} services, {len(accepted)} annotations known to the API")
    return 1 if failures else 0


def check_workers_start(run_dir, script):
    """No request ever reaches a worker service, so Cloud Run starts one only for its minimum: a
    worker at minScale 0 must have a Scheduler job that raises it, and such a job must raise it
    to at least 1."""
    # schedule JOB SERVICE CRON TIMEZONE MIN MAX
    jobs = re.findall(r"^schedule \"([^\"]+)\" \"([^\"]+)\" '[^']*' '[^']*' (\d+) (\d+)$", script, re.M)
    starts = {service: int(low) for job, service, low, _ in jobs if job.endswith("-start")}
    for job, service, low, high in jobs:
        if job.endswith("-start") and int(low) < 1:
            fail(f"deploy.sh: job {job} sets {service} to {low}-{high}: at 0 no worker runs")
    for path in sorted(run_dir.glob("worker-*.yaml")):
        doc = yaml.safe_load(path.read_text())
        name = doc["metadata"]["name"]
        low = doc["metadata"].get("annotations", {}).get("run.googleapis.com/minScale", "0")
        if int(low) < 1 and name not in starts:
            fail(f"{path.name}: minScale {low} and no Cloud Scheduler job starts {name}: its runs would never execute")


def check_substitution(run_dir, script, manifests):
    """Runs deploy.sh's manifest() on each manifest, as replace() does before `gcloud run services
    replace`, with a test project and image: the result must run that image, name that project,
    keep no placeholder, and otherwise be the manifest as rendered."""
    match = re.search(r"^manifest\(\) \{\n.*?^\}\n", script, re.S | re.M)
    if not match:
        fail("deploy.sh: no manifest() function")
        return
    if not re.search(r'^\s*manifest "\$1" > "\$tmp"$', script, re.M):
        fail("deploy.sh: replace() does not apply manifest()'s output")
    project = "test-project-4711"
    image = f"europe-west1-docker.pkg.dev/{project}/app/app:run-4711"
    for path in manifests:
        run = subprocess.run(
            ["bash", "-c", match.group(0) + 'manifest "$1"', "manifest", path.name],
            env={"PATH": os.environ["PATH"], "HERE": str(run_dir), "PROJECT_ID": project, "IMAGE": image},
            capture_output=True, text=True, check=False,
        )
        where = f"{path.name} through deploy.sh's manifest()"
        if run.returncode != 0:
            fail(f"{where}: exit {run.returncode}: {run.stderr.strip()}")
            continue
        if "PROJECT_ID" in run.stdout:
            fail(f"{where}: the placeholder PROJECT_ID is left")
        got = yaml.safe_load(run.stdout)
        images = [c.get("image") for c in got["spec"]["template"]["spec"]["containers"]]
        if images != [image]:
            fail(f"{where}: runs {images}, not this run's image {image}")
        want = yaml.safe_load(path.read_text().replace("PROJECT_ID", project))
        for c in want["spec"]["template"]["spec"]["containers"]:
            c["image"] = image
        if got != want:
            fail(f"{where}: changed more than the project and the image")


if __name__ == "__main__":
    command, discovery_path, target = sys.argv[1:4]
    discovery = json.loads(Path(discovery_path).read_text())
    if command == "schema":
        Path(target).write_text(json.dumps(schema(discovery), indent=1))
        sys.exit(0)
    sys.exit(check(discovery, Path(target)))
