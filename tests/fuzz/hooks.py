"""Schemathesis hooks for tests/fuzz/run.sh (loaded through SCHEMATHESIS_HOOKS).

Random model names all end in the same 404 (`model_not_found`), so most generated chat,
messages and embeddings bodies would never reach a provider. Half of the bodies that carry a
string `model` get one the gateway serves instead (the default config's mock models), so the
whole call path — the provider, the JSON and SSE answers — is fuzzed too. The agent API gets
the same treatment for `assistant_id`: a third of the run and cron bodies name the agent
`echo`, a third `react` (tests/fuzz/agentd.toml), so runs are created, executed and streamed
(and `graph_id` of `POST /assistants` likewise).

Every request of the agent API, in every phase, is then made safe to send (`before_call`):
- `after_seconds` is cut to at most 0.2 s: a valid value is up to 30 days, and a run held that
  long would hold every later `enqueue` run on its thread, so `wait` would answer 504 and
  `stream` only keep-alives until schemathesis' request timeout, for the rest of the run;
- `webhook` points at 127.0.0.1:9 (nothing listens; agentd's private-address guard refuses it
  anyway), so no run ever calls out to a host the fuzzer made up.
Invalid values (negative, too large, not a number, not a URL) are left alone: they must get 422.
"""

import schemathesis
from hypothesis import strategies as st

SERVED = {
    "/v1/chat/completions": "mock",
    "/v1/messages": "mock",
    "/v1/embeddings": "mock-embedding",
}

AGENTS = ["echo", "react"]
# Operations whose body names an assistant that runs (or will run, for crons).
RUN_PATHS = {
    "/runs",
    "/runs/stream",
    "/runs/wait",
    "/runs/crons",
    "/threads/{thread_id}/runs",
    "/threads/{thread_id}/runs/stream",
    "/threads/{thread_id}/runs/wait",
    "/threads/{thread_id}/runs/crons",
}
MAX_AFTER_SECONDS = 0.2
LOCAL_WEBHOOK = "http://127.0.0.1:9/fuzz-webhook"


@schemathesis.hook
def flatmap_body(ctx, body):
    path = ctx.operation.path if ctx.operation is not None else None
    if not isinstance(body, dict):
        return st.just(body)
    model = SERVED.get(path)
    if model is not None and isinstance(body.get("model"), str):
        return st.sampled_from([body, {**body, "model": model}])
    if path in RUN_PATHS and isinstance(body.get("assistant_id"), str):
        return st.sampled_from([body] + [{**body, "assistant_id": a} for a in AGENTS])
    if path == "/assistants" and isinstance(body.get("graph_id"), str):
        return st.sampled_from([body] + [{**body, "graph_id": a} for a in AGENTS])
    return st.just(body)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.operation.path not in RUN_PATHS or not isinstance(case.body, dict):
        return
    after = case.body.get("after_seconds")
    if (
        isinstance(after, (int, float))
        and not isinstance(after, bool)
        and 0 <= after <= 2592000
        and after > MAX_AFTER_SECONDS
    ):
        case.body["after_seconds"] = MAX_AFTER_SECONDS
    webhook = case.body.get("webhook")
    if isinstance(webhook, str) and webhook.startswith(("http://", "https://")) and len(webhook) <= 2048:
        case.body["webhook"] = LOCAL_WEBHOOK
