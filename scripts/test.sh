#!/usr/bin/env bash
# The one command that tests everything (README "Testing"):
#   1. checks formatting (cargo fmt) and lints (cargo clippy, warnings are errors),
#   2. builds the binary without default features (no Redis, no PostgreSQL, system malloc),
#   3. builds the agentd binary (debug, default features),
#   4. runs every Rust test in the workspace,
#   5. creates or reuses the Python venv at .venv with the pinned official SDKs,
#   6. runs the SDK suite (tests/sdk) and the agent API suite (tests/agents, langgraph-sdk) against the real binary,
#   7. renders every deploy target and runs each platform's validators on it (tests/deploy/run.sh:
#      kubernetes-validate, KEDA's schemas, hadolint, the Compose spec, Fly's and Cloud Run's
#      schemas, systemd-analyze, shellcheck),
#   8. fuzzes the real binary against its own OpenAPI document (tests/fuzz/run.sh, schemathesis).
# Any failure stops the run with a non-zero exit. Works from a fresh clone; needs cargo and python3.
# The backend tests read AGENTD_TEST_POSTGRES_URL / _REDIS_URL / _NATS_URL (.ci/run sets them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STEP="setup"
section() { STEP="$*"; printf '\n==================== %s ====================\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ "$rc" = 0 ] || printf "\nFAILED (exit %s) during: %s\n" "$rc" "$STEP" >&2' EXIT

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
REQS="$ROOT/tests/sdk/requirements.txt"

section "toolchain"
cargo --version
"$PYTHON" --version

section "cargo fmt --all -- --check"
cargo fmt --all -- --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Before the default build below: both write target/debug/agentd, and the tests and the SDK
# suite must run the default binary.
section "cargo build -p agentd --no-default-features"
cargo build -p agentd --no-default-features

section "cargo build -p agentd"
cargo build -p agentd

# Where cargo put the binary (honours CARGO_TARGET_DIR and .cargo/config).
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
export AGENTD_BIN="$TARGET_DIR/debug/agentd"
[ -x "$AGENTD_BIN" ] || die "cargo build succeeded but $AGENTD_BIN is missing"

section "cargo test --workspace"
cargo test --workspace

section "python venv ($VENV)"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
# Reinstall only when requirements.txt or constraints.txt changed since the last successful install.
STAMP="$VENV/.requirements.sha256"
WANT="$(cat "$REQS" "$ROOT/tests/sdk/constraints.txt" | sha256sum | cut -d" " -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  # Upgrade pip first: the system pip's resolver picks bad combinations of the SDKs' dependencies.
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r "$REQS"
  echo "$WANT" > "$STAMP"
else
  echo "requirements unchanged; reusing $VENV"
fi
"$VENV/bin/python" -m pip list --format=freeze | grep -Ei '^(openai|anthropic|pytest|httpx|schemathesis|langgraph-sdk|langgraph_sdk)=='

section "pytest tests/sdk (AGENTD_BIN=$AGENTD_BIN)"
"$VENV/bin/python" -m pytest -q tests/sdk -p no:cacheprovider

section "pytest tests/agents (AGENTD_BIN=$AGENTD_BIN)"
"$VENV/bin/python" -m pytest -q tests/agents -p no:cacheprovider

section "deploy render: every target through its platform's validators (tests/deploy/run.sh)"
bash tests/deploy/run.sh

section "API fuzzing: schemathesis against /openapi.json (tests/fuzz/run.sh)"
SCHEMATHESIS="$VENV/bin/schemathesis" bash tests/fuzz/run.sh

section "all tests passed"
