#!/usr/bin/env bash
# Validates the Cloud Run output of `agentd deploy render --target cloudrun`.
# Usage: check_cloudrun.sh RENDERED_DIR (the directory holding cloudrun/).
#
#   1. Every service manifest against Cloud Run's own API schema: the Cloud Run Admin API v1
#      discovery document that PyPI's google-api-python-client ships, converted mechanically to
#      JSON Schema (cloudrun_checks.py: unknown fields rejected, as the API does), with
#      check-jsonschema. No registry ships a Cloud Run or Knative JSON Schema as such.
#   2. What the document states in prose (cloudrun_checks.py): the annotations Cloud Run accepts
#      on a Service and on a Revision, timeout and probe limits; and that every secret referenced
#      is created by deploy.sh and no config variable has a literal value, that each service gets
#      AGENTD_REGION, that no worker sits at zero instances without a Scheduler job to start it,
#      and (running deploy.sh's own manifest() with bash) that each manifest deploy.sh applies
#      names this run's image and project and nothing else changed.
#   3. deploy.sh: bash -n and ShellCheck.
# gcloud is not in any registry here (and `services replace --dry-run` needs a project), so the
# API itself is not asked.
# Environment: DEPLOY_VENV (check-jsonschema, PyYAML, shellcheck, google-api-python-client).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to the venv of tests/deploy/requirements.txt}"
py="$venv/bin/python"
run="$dir/cloudrun"
[ -f "$run/deploy.sh" ] || { echo "ERROR: $run/deploy.sh does not exist (render with --target cloudrun first)" >&2; exit 1; }

site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
discovery="$site/googleapiclient/discovery_cache/documents/run.v1.json"
[ -f "$discovery" ] || { echo "ERROR: $discovery not found (pip install --no-deps google-api-python-client)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" "$here/cloudrun_checks.py" schema "$discovery" "$work/cloudrun-service.schema.json"

echo "Cloud Run Admin API v1 (run.v1.json revision $("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["revision"])' "$discovery"), google-api-python-client $("$py" -m pip show google-api-python-client 2>/dev/null | awk '/^Version/{print $2}')), check-jsonschema $("$venv/bin/check-jsonschema" --version | awk '{print $NF}')"
"$venv/bin/check-jsonschema" --schemafile "$work/cloudrun-service.schema.json" "$run"/service-*.yaml \
  $(compgen -G "$run/worker-*.yaml" || true)
"$py" "$here/cloudrun_checks.py" check "$discovery" "$dir"

bash -n "$run/deploy.sh"
"$venv/bin/shellcheck" --severity=style "$run/deploy.sh"
echo "deploy.sh: bash -n and shellcheck clean"
