"""Schemathesis hooks for tests/fuzz/run.sh (loaded through SCHEMATHESIS_HOOKS).

Random model names all end in the same 404 (`model_not_found`), so most generated chat,
messages and embeddings bodies would never reach a provider. Half of the bodies that carry a
string `model` get one the gateway serves instead (the default config's mock models), so the
whole call path — the provider, the JSON and SSE answers — is fuzzed too.
"""

import schemathesis
from hypothesis import strategies as st

SERVED = {
    "/v1/chat/completions": "mock",
    "/v1/messages": "mock",
    "/v1/embeddings": "mock-embedding",
}


@schemathesis.hook
def flatmap_body(ctx, body):
    model = SERVED.get(ctx.operation.path) if ctx.operation is not None else None
    if model is None or not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return st.just(body)
    return st.sampled_from([body, {**body, "model": model}])
