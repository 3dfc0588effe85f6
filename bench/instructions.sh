#!/usr/bin/env bash
# Counts the gateway's user-space instructions per request under valgrind (callgrind): unlike
# CPU time on this shared 2-core VM (±20 % between identical runs), the count repeats to within
# a fraction of a percent, so it is what A/B comparisons of the request path use.
#   bench/instructions.sh [json|stream] [REQUESTS] [CONFIG]      (CONFIG: agentd | agentd-controls)
# Runs the gateway twice (REQUESTS/5 and REQUESTS requests, concurrency 4, after the same
# warm-up) and prints (Ir_big - Ir_small) / (REQUESTS - REQUESTS/5): start-up and warm-up cancel
# out. Needs nginx (with the echo module), oha and valgrind; AGENTD_BIN picks the binary.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench}
KIND=${1:-json} N=${2:-2500} CONFIG=${3:-agentd}
BIN=${AGENTD_BIN:-$ROOT/target/release/agentd}
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agentd-ir.XXXXXX")
export RUN_DIR UPSTREAM_PORT=${UPSTREAM_PORT:-18280} SLOW_UPSTREAM_PORT=${SLOW_UPSTREAM_PORT:-18281}
export SLOW_UPSTREAM_DELAY_MS=50 SLOW_UPSTREAM_DELAY_S=0.050 BENCH_DIR=$SHARED_BENCH
export ECHO_MODULE=${ECHO_MODULE:-$(dpkg -L libnginx-mod-http-echo 2>/dev/null | grep '\.so$' | head -1)}
PORT=18296
mkdir -p "$RUN_DIR/mock-tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ -n ${KEEP:-} ]] && cp "$RUN_DIR/cg.$N" "$KEEP"; rm -rf "$RUN_DIR"; }
trap cleanup EXIT
python3 "$SHARED_BENCH/lib/render.py" "$SHARED_BENCH/mock/nginx-mock.conf.in" "$RUN_DIR/mock.conf"
nginx -c "$RUN_DIR/mock.conf" -p "$RUN_DIR/" -g 'daemon off;' & pids+=($!)
python3 "$SHARED_BENCH/lib/render.py" "$ROOT/bench/$CONFIG.toml.in" "$RUN_DIR/agentd.toml"
KEY=sk-bench-client-0000000000000000
"$BIN" keys create --name ir --secret "$KEY" -c "$RUN_DIR/agentd.toml" >/dev/null 2>&1
stream=""; [[ $KIND = stream ]] && stream=',"stream":true,"stream_options":{"include_usage":true}'
BODY="{\"model\":\"mock-$KIND\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a concise assistant.\"},{\"role\":\"user\",\"content\":\"Write a haiku about load balancers, then explain in one sentence what a load balancer does.\"}],\"max_tokens\":128,\"temperature\":0.7$stream}"
count() {
  local n=$1 out="$RUN_DIR/cg.$1"
  AGENTD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" -q \
    "$BIN" serve -c "$RUN_DIR/agentd.toml" --listen 127.0.0.1:$PORT 2>"$RUN_DIR/agentd.$n.log" &
  local gw=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
  oha --no-tui -c 4 -n 200 -m POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$BODY" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  oha --no-tui -c 4 -n "$n" -m POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' -d "$BODY" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  kill -TERM "$gw"; wait "$gw" 2>/dev/null || true
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}' >"$RUN_DIR/ir.$n"
}
# Not in $(…): a subshell would run the EXIT trap and stop nginx between the two counts.
count $((N / 5)); small=$(cat "$RUN_DIR/ir.$((N / 5))")
count "$N"; big=$(cat "$RUN_DIR/ir.$N")
echo "$KIND $CONFIG: $(( (big - small) / (N - N / 5) )) instructions/request (user space; $small / $big total)"
