#!/usr/bin/env bash
# Runs the shared gateway benchmark (../shared/bench, or $SHARED_BENCH) with agentd as a target,
# beside the nginx floor and the peers, in one run. The harness is copied to a scratch directory
# so shared/ is never modified; results land in bench/results/ (or --out DIR).
#   bench/run.sh                                  # full run: direct, nginx-proxy, agentd, litellm, portkey
#   bench/run.sh --targets direct,nginx-proxy,agentd --scenarios latency,throughput --duration 5s
# Needs the harness's tools once: ../shared/bench/setup.sh (nginx + echo module, oha, peers).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench}
[[ -x $SHARED_BENCH/run.sh ]] || { echo "benchmark harness not found at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
OUT=$ROOT/bench/results
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
export TARGETS=${TARGETS:-direct,nginx-proxy,agentd,agentd-controls,litellm,portkey}
echo "== building agentd (release)" >&2
(cd "$ROOT" && cargo build --release -p agentd)
export AGENTD_BIN=$ROOT/target/release/agentd
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/agentd-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
cp -r "$SHARED_BENCH/." "$SCRATCH/"
cp "$ROOT"/bench/agentd*.sh "$ROOT"/bench/agentd*.toml.in "$SCRATCH/targets/"
mkdir -p "$OUT"
echo "== running the harness (targets: $TARGETS)" >&2
"$SCRATCH/run.sh" --out "$OUT" "${ARGS[@]}"
echo "== results: $OUT/results.md" >&2
