# agentd as a target of the shared gateway benchmark (../shared/bench). bench/run.sh copies this
# file and agentd.toml.in into a scratch copy of the harness's targets/; nothing is written to
# shared/. Auth and metrics are on: every request carries a key that agentd checks (hashed key
# in its SQLite store, cached in memory), and /metrics records every request.
DESCRIPTION="agentd gateway (auth + metrics on, SQLite store, access log at warn like tensorzero; budgets, rate limits, ledger, breakers off)"
export AGENTD_PORT=${AGENTD_PORT:-18096}
PORT=$AGENTD_PORT
target_available() {
  [[ -n ${AGENTD_BIN:-} && -x ${AGENTD_BIN:-} ]] || { echo "AGENTD_BIN is not set to an executable"; return 1; }
}
target_version() { "$AGENTD_BIN" --version; }
target_start() {
  render "$BENCH_DIR/targets/agentd.toml.in" "$RUN_DIR/agentd.toml"
  # The harness sends "Authorization: Bearer $CLIENT_KEY": import that secret as an agentd key.
  "$AGENTD_BIN" keys create --name bench --secret "$CLIENT_KEY" -c "$RUN_DIR/agentd.toml" >/dev/null
  AGENTD_LOG=${AGENTD_BENCH_LOG:-warn} bg_start agentd "$AGENTD_BIN" serve -c "$RUN_DIR/agentd.toml" --listen "127.0.0.1:$PORT"
}
req_model() { echo "mock-$1"; }
req_url() { echo "http://127.0.0.1:$PORT/v1/chat/completions"; }
