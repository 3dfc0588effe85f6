# agentd's agent runtime (LangGraph-compatible API) as a target of the shared agent-runtime benchmark
# (../shared/bench/runtime). bench/runtime.sh copies this file and agentd-runtime.toml.in into a
# scratch copy of the harness's targets/; nothing is written to shared/.
#
# API key: agentd refuses requests without a key, and the harness's lib/load.py builds every client
# with `get_client(url=…, api_key=None)`, which sends none (and makes langgraph-sdk ignore
# LANGGRAPH_API_KEY & co.). So bench/runtime.sh patches the scratch copy of load.py to read a key from
# the file named by $AGENTD_BENCH_KEY_FILE when that file exists; target_start creates the key (CLI,
# against the store, before the server starts) and writes that file, target_stop removes it. The
# other targets run while the file does not exist, so they get exactly the unpatched client.
DESCRIPTION="agentd agent runtime (LangGraph-compatible API), one process, SQLite store, auth on"
export AGENTD_RT_PORT=${AGENTD_RT_PORT:-18196}
PORT=$AGENTD_RT_PORT
READY_TIMEOUT=60

target_available() {
  [[ -n ${AGENTD_BIN:-} && -x ${AGENTD_BIN:-} ]] || { echo "AGENTD_BIN is not set to an executable"; return 1; }
  [[ -n ${AGENTD_BENCH_KEY_FILE:-} ]] ||
    { echo "AGENTD_BENCH_KEY_FILE is not set: run agentd's bench/runtime.sh (it patches load.py to send an API key)"; return 1; }
}
target_version() { "$AGENTD_BIN" --version; }
target_mode() {
  echo "agentd serve -c agentd-runtime.toml --listen 127.0.0.1:$PORT; AGENTD_LOG=${AGENTD_BENCH_LOG:-warn}; SQLite store in RUN_DIR; API key checked on every request"
}
target_start() {
  render "$BENCH_DIR/targets/agentd-runtime.toml.in" "$RUN_DIR/agentd-runtime.toml" || return 1
  local key
  key=$(env -u AGENTD_DATABASE_URL "$AGENTD_BIN" keys create --name bench-runtime -c "$RUN_DIR/agentd-runtime.toml") || return 1
  [[ $key == sk-agentd-* ]] || { echo "agentd keys create printed no secret: $key" >&2; return 1; }
  (umask 077 && printf '%s\n' "$key" >"$AGENTD_BENCH_KEY_FILE")
  AGENTD_LOG=${AGENTD_BENCH_LOG:-warn} bg_start agentd env -u AGENTD_DATABASE_URL "$AGENTD_BIN" serve \
    -c "$RUN_DIR/agentd-runtime.toml" --listen "127.0.0.1:$PORT"
}
target_stop() {
  stop_pidfile "$RUN_DIR/agentd.pid"
  [[ -z ${AGENTD_BENCH_KEY_FILE:-} ]] || rm -f "$AGENTD_BENCH_KEY_FILE"
}
