#!/usr/bin/env bash
# Validates the Kubernetes output of `agentd deploy render --target k8s` with the platform's own
# validators. Usage: check_k8s.sh RENDERED_DIR (the directory holding k8s/).
#
#   1. Every kustomization (k8s/base and each k8s/overlays/<region>) is built with kubectl's
#      built-in kustomize (`kubectl kustomize`), or a `kustomize` binary. Neither comes from a
#      registry this project can install from: where neither is on the machine, the base's
#      files are validated one by one and the overlays' patches go unchecked (said loudly).
#   2. Built-in kinds: `kubernetes-validate --strict` (unknown fields are errors) against
#      Kubernetes 1.30, the oldest the manifests support (preStop `sleep`), and the newest
#      schemas the package ships.
#   3. KEDA's custom resources (ScaledObject, TriggerAuthentication). No registry ships KEDA's
#      CRD YAML itself; two ship schemas derived from it and both are used:
#      cloudcoil-models-keda (PyPI: pydantic models generated from KEDA's CRDs; unknown fields
#      rejected by a round trip) and @kubernetes-models/keda (npm: JSON-schema validators
#      generated from KEDA's API types).
#   4. The PromQL of KEDA prometheus triggers: `promtool check rules` (tests/deploy/find_promtool.sh).
#   5. create-secret.sh parses (`bash -n`) and writes no value.
#
# Environment: DEPLOY_VENV (kubernetes-validate, cloudcoil-models-keda), DEPLOY_NODE_MODULES
# (@kubernetes-models/keda).
set -euo pipefail

dir="${1:?usage: $0 RENDERED_DIR}"
k8s="$dir/k8s"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DEPLOY_VENV:?set DEPLOY_VENV to a venv with kubernetes-validate and cloudcoil-models-keda}"
node_modules="${DEPLOY_NODE_MODULES:?set DEPLOY_NODE_MODULES to a node_modules with @kubernetes-models/keda}"
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"
[ -d "$k8s/base" ] || { echo "ERROR: $k8s/base does not exist (render with --target k8s first)" >&2; exit 1; }
[ -x "$kv" ] || { echo "ERROR: $kv not found" >&2; exit 1; }
[ -d "$node_modules/@kubernetes-models/keda" ] || { echo "ERROR: @kubernetes-models/keda is not in $node_modules" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# Kubernetes versions: the oldest supported and the newest shipped.
oldest="1.30.0"
newest="$("$kv" --version 2>/dev/null | awk '{print $NF}')"
echo "kubernetes-validate $newest; schemas of Kubernetes $oldest and $newest"

builder=()
if command -v kubectl >/dev/null 2>&1; then
  builder=(kubectl kustomize)
  echo "kustomize: $(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'built into kubectl')"
elif command -v kustomize >/dev/null 2>&1; then
  builder=(kustomize build)
  echo "kustomize: $(kustomize version 2>/dev/null)"
fi

targets=("$k8s/base")
for overlay in "$k8s"/overlays/*/; do
  [ -f "$overlay/kustomization.yaml" ] && targets+=("${overlay%/}")
done
[ "${#targets[@]}" -gt 1 ] || fail "no overlay under $k8s/overlays"

validate_builtin() { # name file
  local name="$1" file="$2" version
  for version in "$oldest" "$newest"; do
    if ! "$kv" --strict --quiet -k "$version" "$file"; then
      fail "$name: kubernetes-validate --strict -k $version"
    fi
  done
}

i=0
if [ "${#builder[@]}" -gt 0 ]; then
  for target in "${targets[@]}"; do
    i=$((i + 1))
    name="${target#"$k8s"/}"
    built="$work/$i.yaml"
    if ! "${builder[@]}" "$target" >"$built"; then
      fail "$name: ${builder[*]} failed"
      continue
    fi
    echo "== $name: $("$py" "$here/k8s_manifests.py" split "$built" "$work/$i-builtin.yaml" "$work/$i-keda.json" "$work/$i-rules.yaml")"
    validate_builtin "$name" "$work/$i-builtin.yaml"
  done
else
  echo "WARNING: neither kubectl nor kustomize is on this machine (no registry here ships a usable one: Debian's kubernetes-client 1.20 embeds kustomize 2.0, which predates patches and labels): validating" >&2
  echo "WARNING: the base's files one by one; the overlays' patches and the ConfigMap generator are NOT checked." >&2
  i=1
  : >"$work/1.yaml"
  for f in "$k8s"/base/*.yaml "$k8s"/overlays/*/namespace.yaml; do
    case "$f" in */kustomization.yaml) continue ;; esac
    { echo "---"; cat "$f"; } >>"$work/1.yaml"
  done
  echo "== files: $("$py" "$here/k8s_manifests.py" split "$work/1.yaml" "$work/1-builtin.yaml" "$work/1-keda.json" "$work/1-rules.yaml")"
  validate_builtin "base files" "$work/1-builtin.yaml"
fi

# KEDA: the base holds every ScaledObject (overlays only delete some), so check each build's.
for keda in "$work"/*-keda.json; do
  [ -e "$keda" ] || continue
  [ "$(cat "$keda")" = "[]" ] && continue
  n="${keda##*/}"; n="${n%-keda.json}"
  "$py" "$here/k8s_manifests.py" keda "$keda" | sed 's/^/  /' || fail "KEDA resources (build $n): cloudcoil-models-keda"
  node "$here/k8s_keda.mjs" "$node_modules" "$keda" | sed 's/^/  /' || fail "KEDA resources (build $n): @kubernetes-models/keda"
done

# PromQL of prometheus triggers.
if grep -qs 'record:' "$work"/*-rules.yaml; then
  if promtool="$(bash "$here/find_promtool.sh")"; then
    for rules in "$work"/*-rules.yaml; do
      grep -q 'record:' "$rules" || continue
      "$promtool" check rules "$rules" >/dev/null || fail "PromQL of KEDA prometheus triggers ($rules)"
    done
    echo "promtool: $("$promtool" --version 2>&1 | head -n 1): KEDA prometheus queries parse"
  else
    fail "no promtool to check the KEDA prometheus queries"
  fi
fi

# The secret script: valid bash that reads values from the environment only.
if [ -f "$k8s/create-secret.sh" ]; then
  bash -n "$k8s/create-secret.sh" || fail "create-secret.sh does not parse"
  if grep -E -- '--from-literal="[A-Za-z0-9_]+=[^$]' "$k8s/create-secret.sh"; then
    fail "create-secret.sh writes a literal value"
  fi
else
  fail "no k8s/create-secret.sh"
fi
"$py" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$k8s/prometheus-adapter.yaml" \
  || fail "prometheus-adapter.yaml is not YAML"

if [ "$failures" -gt 0 ]; then
  echo "check_k8s: $failures failure(s)" >&2
  exit 1
fi
echo "check_k8s: ok (${#targets[@]} kustomizations)"
