#!/usr/bin/env bash
# Runs the shared agent-runtime benchmark (../shared/bench/runtime, or $SHARED_RUNTIME_BENCH) with
# agentd as a target beside the LangGraph and Aegra peers. The harness is copied to a scratch
# directory, so shared/ is never modified; agentd's target files (bench/runtime/targets/) are added
# to the copy, and the copy's lib/load.py is patched to send agentd an API key (see
# bench/runtime/README.md). Every argument is passed to the harness's run.sh, e.g.
#   bench/runtime.sh                                                  # full run, default targets
#   bench/runtime.sh --targets agentd --scenarios wait1,stream --duration 5 --warmup 1 --out /tmp/rt
# AGENTD_BIN defaults to target/release/agentd, built here when missing (set it to test another build).
# Results go to bench/runtime/results/ unless --out is given. Needs the harness's venvs once:
# ../shared/bench/runtime/setup.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_RUNTIME_BENCH:-$ROOT/../shared/bench/runtime}
[[ -x $SHARED/run.sh ]] || { echo "runtime benchmark harness not found at $SHARED (set SHARED_RUNTIME_BENCH)" >&2; exit 1; }

ARGS=() OUT=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; ARGS+=("$1" "$2"); shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ -n $OUT ]] || { OUT=$ROOT/bench/runtime/results; ARGS+=(--out "$OUT"); }

if [[ -z ${AGENTD_BIN:-} ]]; then
  AGENTD_BIN=$ROOT/target/release/agentd
  if [[ ! -x $AGENTD_BIN ]]; then
    echo "== building agentd (release)" >&2
    (cd "$ROOT" && cargo build --release -p agentd)
  fi
fi
[[ -x $AGENTD_BIN ]] || { echo "AGENTD_BIN=$AGENTD_BIN is not executable" >&2; exit 1; }
export AGENTD_BIN

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/agentd-rt-bench.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
cp -r "$SHARED/." "$SCRATCH/"
rm -rf "$SCRATCH/results/raw"  # the copy's own results are not ours to append to
cp "$ROOT"/bench/runtime/targets/agentd.sh "$ROOT"/bench/runtime/targets/agentd-runtime.toml.in "$SCRATCH/targets/"

# load.py builds every client with api_key=None (no x-api-key header, environment ignored); agentd
# needs a key. Patch the copy to read one from $AGENTD_BENCH_KEY_FILE when that file exists, which
# only targets/agentd.sh creates (and removes at stop): the other targets see the unpatched client.
python3 - "$SCRATCH/lib/load.py" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
old = "    return get_client(url=a.url, api_key=None, timeout=a.op_timeout)\n"
new = '''    # Patched by agentd's bench/runtime.sh: agentd requires an API key, which its target writes to
    # $AGENTD_BENCH_KEY_FILE while it runs. No file (every other target): no key, as unpatched.
    key = None
    key_file = os.environ.get("AGENTD_BENCH_KEY_FILE")
    if key_file and os.path.isfile(key_file):
        with open(key_file) as f:
            key = f.read().strip() or None
    return get_client(url=a.url, api_key=key, timeout=a.op_timeout)
'''
if src.count(old) != 1:
    sys.exit(f"{path}: new_client() no longer reads as expected; update the patch in bench/runtime.sh")
open(path, "w").write(src.replace(old, new))
PY
export AGENTD_BENCH_KEY_FILE=$SCRATCH/agentd.api-key
mkdir -p "$OUT"
echo "== running the runtime harness with AGENTD_BIN=$AGENTD_BIN" >&2
"$SCRATCH/run.sh" "${ARGS[@]}"
echo "== results: $OUT" >&2
