#!/usr/bin/env bash
# Profiles agentd under load against the shared harness's nginx mock upstream, the way the
# benchmark drives it (gateway pinned to CPU 0, load generator + upstream on CPU 1):
#   bench/profile.sh [json|stream|slow] [CONCURRENCY] [SECONDS]
# Prints the gateway's CPU µs per request and writes a perf profile (perf.data + a report of
# the hottest symbols) to $OUT (default /tmp/agentd-profile). Needs nginx, oha and perf.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench}
KIND=${1:-json} CONC=${2:-64} SECS=${3:-10}
OUT=${OUT:-/tmp/agentd-profile}
BIN=${AGENTD_BIN:-$ROOT/target/release/agentd}
mkdir -p "$OUT"
# A perf.data left by an earlier run would be reported again at the end (with NO_PERF too), and
# perf's addr2line children would keep a core busy into the next measurement.
rm -f "$OUT/perf.data" "$OUT/report.txt"
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agentd-prof.XXXXXX")
export RUN_DIR UPSTREAM_PORT=${UPSTREAM_PORT:-18180} SLOW_UPSTREAM_PORT=${SLOW_UPSTREAM_PORT:-18181}
export SLOW_UPSTREAM_DELAY_MS=50 SLOW_UPSTREAM_DELAY_S=0.050 BENCH_DIR=$SHARED_BENCH
export ECHO_MODULE=${ECHO_MODULE:-$(dpkg -L libnginx-mod-http-echo 2>/dev/null | grep '\.so$' | head -1)}
PORT=18196
mkdir -p "$RUN_DIR/mock-tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN_DIR"; }
trap cleanup EXIT
python3 "$SHARED_BENCH/lib/render.py" "$SHARED_BENCH/mock/nginx-mock.conf.in" "$RUN_DIR/mock.conf"
taskset -c 1 nginx -c "$RUN_DIR/mock.conf" -p "$RUN_DIR/" -g 'daemon off;' & pids+=($!)
# CONFIG=agentd-controls profiles the gateway with budgets, rate limits, ledger and breakers on.
python3 "$SHARED_BENCH/lib/render.py" "$ROOT/bench/${CONFIG:-agentd}.toml.in" "$RUN_DIR/agentd.toml"
KEY=sk-bench-client-0000000000000000
"$BIN" keys create --name prof --secret "$KEY" -c "$RUN_DIR/agentd.toml" >/dev/null
AGENTD_LOG=${AGENTD_LOG:-warn} taskset -c 0 "$BIN" serve -c "$RUN_DIR/agentd.toml" --listen 127.0.0.1:$PORT 2>"$OUT/agentd.log" & pids+=($!)
GW=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
stream=""; [[ $KIND = stream ]] && stream=',"stream":true,"stream_options":{"include_usage":true}'
BODY="{\"model\":\"mock-$KIND\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a concise assistant.\"},{\"role\":\"user\",\"content\":\"Write a haiku about load balancers, then explain in one sentence what a load balancer does.\"}],\"max_tokens\":128,\"temperature\":0.7$stream}"
ohacmd=(taskset -c 1 oha --no-tui -w -c "$CONC" -m POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$BODY")
"${ohacmd[@]}" -z 2s "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
t0=$(awk '{print $14+$15}' /proc/$GW/stat)
if command -v perf >/dev/null && [[ -z ${NO_PERF:-} ]]; then
  perf record -F ${PERF_FREQ:-2000} ${PERF_CALLGRAPH:---call-graph dwarf,16384} -p "$GW" -o "$OUT/perf.data" -- sleep "$SECS" >/dev/null 2>&1 & PERF=$!
fi
"${ohacmd[@]}" -z "${SECS}s" --output-format json "http://127.0.0.1:$PORT/v1/chat/completions" >"$OUT/oha.json"
[[ -n ${PERF:-} ]] && wait "$PERF" || true
t1=$(awk '{print $14+$15}' /proc/$GW/stat)
python3 - "$OUT/oha.json" "$t0" "$t1" "$(getconf CLK_TCK)" "$GW" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["summary"]
ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k == "200")
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
hwm = [l.split()[1] for l in open(f"/proc/{sys.argv[5]}/status") if l.startswith("VmHWM")][0]
print(f"req/s {s['requestsPerSec']:.0f}  ok {ok}  p50 {d['latencyPercentiles']['p50']*1e3:.2f} ms  p99 {d['latencyPercentiles']['p99']*1e3:.2f} ms  CPU µs/req {cpu / max(ok, 1) * 1e6:.0f}  VmHWM {int(hwm)//1024} MiB")
PY
if [[ -f $OUT/perf.data ]]; then
  perf report -i "$OUT/perf.data" --no-children --percent-limit 0.7 --stdio 2>/dev/null | grep -v '^$' | grep -E '^ +[0-9]' | head -60 >"$OUT/report.txt" || true
  echo "profile: $OUT/report.txt"
fi
