"""What the gateway sends to the upstream providers (as recorded by `agentd mock-llm`): the provider's
configured key in that provider's auth header, never the client's key, and the deployment's model."""

from __future__ import annotations

import json

import pytest
from support import UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY

UPSTREAMS = {
    # public model -> (upstream path, expected auth headers, headers that must be absent)
    "gpt-up": ("/v1/chat/completions", {"authorization": f"Bearer {UPSTREAM_OPENAI_KEY}"}, ("x-api-key",)),
    "claude-up": (
        "/v1/messages",
        {"x-api-key": UPSTREAM_ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        ("authorization",),
    ),
}


def call(agentd, client_api: str, model: str, stream: bool) -> None:
    messages = [{"role": "user", "content": "Which key do you see?"}]
    if client_api == "openai":
        resp = agentd.openai().chat.completions.create(model=model, messages=messages, stream=stream)
    else:
        resp = agentd.anthropic().messages.create(model=model, max_tokens=32, messages=messages, stream=stream)
    if stream:
        assert list(resp)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_api", ["openai", "anthropic"])
@pytest.mark.parametrize("model", sorted(UPSTREAMS))
def test_upstream_gets_provider_key_and_model(agentd, model, client_api, stream):
    path, expected, absent = UPSTREAMS[model]
    agentd.clear_mock_requests()
    call(agentd, client_api, model, stream)
    reqs = [r for r in agentd.mock_requests() if r["method"] == "POST"]
    assert len(reqs) == 1, f"expected exactly one upstream call, got {[(r['method'], r['path']) for r in reqs]}"
    req = reqs[0]
    assert req["path"] == path
    headers = {k.lower(): v for k, v in req["headers"].items()}
    for name, value in expected.items():
        assert headers.get(name) == value, f"upstream header {name}: {headers.get(name)!r} != {value!r}"
    for name in absent:
        assert name not in headers, f"{name} must not be sent to this upstream: {headers.get(name)!r}"
    assert agentd.key not in json.dumps(req), "the client's key must never reach the provider"
    assert req["body"]["model"] == "mock", "the deployment's upstream model name is sent, not the public one"
    assert bool(req["body"].get("stream")) == stream
