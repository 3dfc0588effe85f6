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
#      generated from KEDA's API types). Both know `advanced.scalingModifiers` (KEDA 2.12+).
#      Then what a schema cannot say: k8s_manifests.py checks the triggers against the formula
#      (named, used, none ignored; several queue triggers need one) and k8s_keda.mjs runs the
#      formula on a spread backlog, an idle pool and business hours (queues added, floor held).
#   4. The PromQL of KEDA prometheus triggers: `promtool check rules` (tests/deploy/find_promtool.sh).
#   5. create-secret.sh: `bash -n`, shellcheck, and a run against a stand-in kubectl: no value on
#      any command line, the env file it hands kubectl readable by its owner only (0600) and
#      gone afterwards, with and without kubectl flags; a required variable unset stops it.
#
# Environment: DEPLOY_VENV (kubernetes-validate, cloudcoil-models-keda, shellcheck), DEPLOY_NODE_MODULES
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

# The secret script: valid bash that keeps values off command lines, run against a stand-in
# kubectl that records its arguments and the env file it is given.
secret_script="$k8s/create-secret.sh"
if [ -f "$secret_script" ]; then
  bash -n "$secret_script" || fail "create-secret.sh does not parse"
  "$venv/bin/shellcheck" --severity=style "$secret_script" || fail "create-secret.sh: shellcheck"
  if grep -n -- '--from-literal' "$secret_script"; then
    fail "create-secret.sh puts values on kubectl's command line (--from-literal)"
  fi
  mkdir -p "$work/bin" "$work/tmp"
  cat >"$work/bin/kubectl" <<'STUB'
#!/usr/bin/env bash
printf '%s\n' "$*" >>"$STUB_LOG/argv"
for arg in "$@"; do
  case "$arg" in
    --from-env-file=*)
      file="${arg#--from-env-file=}"
      echo "$file" >"$STUB_LOG/path"
      stat -c %a "$file" >"$STUB_LOG/mode"
      cp "$file" "$STUB_LOG/env-file" ;;
  esac
done
case " $* " in *" apply "*) cat >/dev/null ;; *) echo "{}" ;; esac
STUB
  chmod +x "$work/bin/kubectl"
  region_code="$(basename "${targets[1]:-$k8s/overlays/none}")"
  vars=()
  while IFS= read -r var; do vars+=("$var=stand-in-value-of-$var"); done \
    < <(grep -oE '^(if .* then )?put [A-Za-z_][A-Za-z0-9_]*' "$secret_script" | awk '{print $NF}' | sort -u)
  [ "${#vars[@]}" -gt 0 ] || fail "create-secret.sh puts no variable into the Secret"
  checked="${#vars[@]}"
  run_secret_script() { # LOG-DIR [kubectl flags]: runs the script with only the variables above
    local log="$1"
    shift
    mkdir -p "$log"
    env -i PATH="$work/bin:$PATH" TMPDIR="$work/tmp" STUB_LOG="$log" ${vars[@]+"${vars[@]}"} \
      bash "$secret_script" "$region_code" "$@"
  }
  for flags in "" "--context=stand-in"; do
    log="$work/secret-run${flags:+-flags}"
    # shellcheck disable=SC2086 # no flags must pass none
    if ! run_secret_script "$log" $flags >"$log.out" 2>&1; then
      sed 's/^/    /' "$log.out" >&2
      fail "create-secret.sh $region_code ${flags:-(no kubectl flags)} failed"
      continue
    fi
    if grep -F 'stand-in-value-of-' "$log/argv"; then
      fail "create-secret.sh put a value on kubectl's command line"
    fi
    if [ ! -f "$log/env-file" ]; then
      fail "create-secret.sh gave kubectl no --from-env-file"
      continue
    fi
    [ "$(cat "$log/mode")" = 600 ] || fail "create-secret.sh's env file has mode $(cat "$log/mode"), not 600"
    [ ! -e "$(cat "$log/path")" ] || fail "create-secret.sh left its env file behind"
    for pair in ${vars[@]+"${vars[@]}"}; do
      grep -qxF "$pair" "$log/env-file" || fail "create-secret.sh's env file lacks ${pair%%=*}"
    done
  done
  required="$(grep -oE '^put [A-Za-z_][A-Za-z0-9_]* "\$\{[A-Za-z_][A-Za-z0-9_]*:\?' "$secret_script" | awk '{print $2}' | head -n 1 || true)"
  if [ -n "$required" ]; then
    kept=()
    for pair in ${vars[@]+"${vars[@]}"}; do [ "${pair%%=*}" = "$required" ] || kept+=("$pair"); done
    vars=(${kept[@]+"${kept[@]}"})
    if run_secret_script "$work/secret-missing" >"$work/secret-missing.out" 2>&1; then
      fail "create-secret.sh ran without the required $required"
    elif ! grep -q "$required" "$work/secret-missing.out"; then
      fail "create-secret.sh stopped without naming $required"
    fi
  fi
  if [ -n "$(ls -A "$work/tmp")" ]; then
    fail "create-secret.sh left files in TMPDIR: $(ls -A "$work/tmp")"
  fi
  echo "create-secret.sh: shellcheck clean; $checked variables via a 0600 env file, none on a command line, nothing left behind"
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
