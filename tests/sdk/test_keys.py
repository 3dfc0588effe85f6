"""API keys made with the CLI work through the SDKs at once and stop working once revoked."""

from __future__ import annotations

import json
import time

import openai


def listed_keys(agentd) -> list[dict]:
    out = agentd.cli("keys", "list", "--json").stdout
    data = json.loads(out)
    assert isinstance(data, list), f"`agentd keys list --json` should print a JSON array, got: {out!r}"
    return data


def test_key_lifecycle(agentd):
    secret = agentd.create_key("lifecycle")
    client = agentd.openai(api_key=secret)
    assert client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "hi"}]).choices

    entries = [k for k in listed_keys(agentd) if k.get("name") == "lifecycle"]
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry.get("id")
    assert entry.get("revoked_at") is None
    assert secret not in json.dumps(listed_keys(agentd)), "key listings must never show secrets"

    agentd.cli("keys", "revoke", entry["id"])
    # The test config caches validated keys for 200 ms; allow well beyond that.
    deadline = time.monotonic() + 5.0
    while True:
        try:
            client.models.list()
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "a revoked key still works after 5 s"
        time.sleep(0.1)

    (after,) = [k for k in listed_keys(agentd) if k.get("id") == entry["id"]]
    assert after.get("revoked_at"), after
    # The session's own key is untouched.
    assert agentd.openai().models.list().data
