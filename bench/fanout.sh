#!/usr/bin/env bash
# Stream fan-out: N SSE + M WebSocket clients follow one slow run of one agentd process, which
# must hold them in little memory (the runtime's target: 10,000 clients in <= 256 MB RSS).
#
#   bench/fanout.sh                         # 5,000 SSE + 5,000 WS
#   FANOUT_SSE=1000 FANOUT_WS=1000 bench/fanout.sh
#
# What it does, all on 127.0.0.1: starts `agentd mock-llm` and `agentd serve` (SQLite in a scratch
# dir; server.max_connections, server.max_concurrent_requests and runtime.max_stream_clients raised
# above the client count), raises `ulimit -n`, creates an API key through the admin API, a thread
# and one background run on agent `echo` whose mock reply is 100 tokens 100 ms apart (~10 s of
# `messages` events) and which starts FANOUT_START_DELAY_S after its creation, so every client is
# connected before it streams. Then crates/agentd/examples/fanout.rs opens the clients
# (`Last-Event-ID: -1` / `?since=0`), checks that each gets every event once, in order, ids 1..n,
# ending with `end`, samples the server's VmRSS/VmHWM every 200 ms, and prints the report.
# Exit status: 0 when every client got the whole run, 1 otherwise.
#
# Environment:
#   AGENTD_BIN            server binary (default: $CARGO_TARGET_DIR or target/, release/agentd;
#                         built when missing)
#   FANOUT_BIN            load client (default: …/release/examples/fanout, built when missing or
#                         older than its source)
#   FANOUT_SSE, FANOUT_WS clients of each kind (default 5000 each)
#   FANOUT_TOKENS         tokens in the reply (default 100); FANOUT_TOKEN_DELAY_MS (default 100)
#   FANOUT_START_DELAY_S  seconds between creating the run and its start (default 3 + 1 per
#                         1,000 clients)
#   FANOUT_CONNECT_CONCURRENCY  connections opened at once (default 128)
#   FANOUT_THREADS        the client's tokio worker threads (default 1; the machine is shared)
#   FANOUT_TIMEOUT_S      overall bound of the client phase (default 180)
#   FANOUT_WS_READ_BUFFER_KIB  the client sockets' read buffer (default 8; tungstenite's own
#                         default, 128, shows in the client's RSS what it costs the server)
#   FANOUT_OUT            keep the scratch dir (config, logs, rss.csv, report.json) here
#   AGENTD_FANOUT_LOG     server log level (default warn)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SSE=${FANOUT_SSE:-5000}
WS=${FANOUT_WS:-5000}
TOTAL=$((SSE + WS))
TOKENS=${FANOUT_TOKENS:-100}
TOKEN_DELAY_MS=${FANOUT_TOKEN_DELAY_MS:-100}
START_DELAY_S=${FANOUT_START_DELAY_S:-$((3 + TOTAL / 1000))}
TIMEOUT_S=${FANOUT_TIMEOUT_S:-180}
LIMIT=$((TOTAL + 1000 > 20000 ? TOTAL + 1000 : 20000))

say() { echo "== $*" >&2; }
die() { echo "fanout.sh: $*" >&2; exit 1; }

if [[ -z ${AGENTD_BIN:-} ]]; then
  AGENTD_BIN=$TARGET_DIR/release/agentd
  if [[ ! -x $AGENTD_BIN ]]; then
    say "building agentd (release)"
    (cd "$ROOT" && cargo build --release -p agentd)
  fi
fi
[[ -x $AGENTD_BIN ]] || die "AGENTD_BIN=$AGENTD_BIN is not executable"
if [[ -z ${FANOUT_BIN:-} ]]; then
  FANOUT_BIN=$TARGET_DIR/release/examples/fanout
  if [[ ! -x $FANOUT_BIN || $ROOT/crates/agentd/examples/fanout.rs -nt $FANOUT_BIN ]]; then
    say "building the load client (release example fanout)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p agentd --example fanout)
  fi
fi
[[ -x $FANOUT_BIN ]] || die "FANOUT_BIN=$FANOUT_BIN is not executable"

# Each client is one socket here and one in the server (separate processes, separate limits).
want_fds=$((LIMIT + 1000))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > TOTAL + 100)) ||
  die "ulimit -n is $(ulimit -n) (hard $(ulimit -Hn)); $TOTAL clients need more: lower FANOUT_SSE/FANOUT_WS"
ports=$(cat /proc/sys/net/ipv4/ip_local_port_range)
(($(awk '{print $2 - $1}' <<<"$ports") > TOTAL + 1000)) ||
  die "the ephemeral port range ($ports) is too small for $TOTAL clients on one address"

if [[ -n ${FANOUT_OUT:-} ]]; then
  WORK=$FANOUT_OUT
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/agentd-fanout.XXXXXX")
fi
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n ${FANOUT_OUT:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url seconds pid
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

ADMIN_KEY=admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
MOCK_PORT=$(free_port)
"$AGENTD_BIN" mock-llm --addr "127.0.0.1:$MOCK_PORT" >"$WORK/mock-llm.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/healthz" 20 "${PIDS[-1]}" || die "mock-llm did not start: $(tail -5 "$WORK/mock-llm.log")"

cat >"$WORK/agentd.toml" <<EOF
# Written by bench/fanout.sh
[server]
data_dir = "$WORK/data"
log_format = "text"
max_connections = $LIMIT
max_concurrent_requests = $LIMIT

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-fanout-upstream"

[models.mock]
provider = "up"
model = "mock"
max_retries = 0

[agents.echo]
model = "mock"
description = "one LLM call"

[runtime]
max_stream_clients = $LIMIT
EOF
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
AGENTD_ADMIN_KEY=$ADMIN_KEY AGENTD_LOG=${AGENTD_FANOUT_LOG:-warn} \
  "$AGENTD_BIN" serve -c "$WORK/agentd.toml" --listen "127.0.0.1:$PORT" >"$WORK/agentd.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_http "$URL/readyz" 60 "$SERVER_PID" || die "agentd did not start: $(tail -20 "$WORK/agentd.log")"

post() { # path json [auth header]
  curl -fsS --max-time 10 -X POST "$URL$1" -H 'content-type: application/json' -H "$3" -d "$2" ||
    die "POST $1 failed"
}
KEY=$(post /admin/keys '{"name":"fanout","tenant":"fanout"}' "Authorization: Bearer $ADMIN_KEY" | jq -r .key)
[[ -n $KEY && $KEY != null ]] || die "POST /admin/keys returned no key"
THREAD=$(post /threads '{}' "x-api-key: $KEY" | jq -r .thread_id)
PROMPT="fan out mock:token_delay_ms=$TOKEN_DELAY_MS mock:tokens=$TOKENS"
RUN=$(post "/threads/$THREAD/runs" "$(jq -cn --arg p "$PROMPT" --argjson d "$START_DELAY_S" \
  '{assistant_id: "echo", input: {messages: [{role: "user", content: $p}]},
    stream_mode: ["values", "messages-tuple"], after_seconds: $d}')" "x-api-key: $KEY" | jq -r .run_id)
[[ -n $RUN && $RUN != null ]] || die "creating the run failed"

say "agentd $("$AGENTD_BIN" --version 2>/dev/null | head -1) pid $SERVER_PID on $URL; run $RUN starts in ${START_DELAY_S}s" \
  "($TOKENS tokens x ${TOKEN_DELAY_MS} ms); $SSE SSE + $WS WS clients; ulimit -n $(ulimit -n)"
status=0
"$FANOUT_BIN" --url "$URL" --key "$KEY" --thread "$THREAD" --run "$RUN" --sse "$SSE" --ws "$WS" \
  --server-pid "$SERVER_PID" --timeout-s "$TIMEOUT_S" --threads "${FANOUT_THREADS:-1}" \
  --connect-concurrency "${FANOUT_CONNECT_CONCURRENCY:-128}" \
  --ws-read-buffer-kib "${FANOUT_WS_READ_BUFFER_KIB:-8}" --rss-csv "$WORK/rss.csv" --json \
  >"$WORK/report.txt" || status=$?
sed '$d' "$WORK/report.txt"
tail -1 "$WORK/report.txt" >"$WORK/report.json"

sleep 4
echo "server RSS 5 s after    $(awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SERVER_PID/status" 2>/dev/null || echo "?")"
run_status=$(curl -fsS --max-time 10 "$URL/threads/$THREAD/runs/$RUN" -H "x-api-key: $KEY" | jq -r .status || echo "?")
echo "run status              $run_status"
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "agentd EXITED during the benchmark; last log lines:"
  tail -20 "$WORK/agentd.log"
  status=1
fi
warnings=$(grep -c -E ' (WARN|ERROR) ' "$WORK/agentd.log" || true)
((warnings == 0)) || { echo "server log: $warnings WARN/ERROR lines, e.g.:"; grep -m 5 -E ' (WARN|ERROR) ' "$WORK/agentd.log"; }
[[ -z ${FANOUT_OUT:-} ]] || say "kept $WORK (agentd.toml, agentd.log, rss.csv, report.json)"
exit "$status"
