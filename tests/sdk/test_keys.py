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


def test_admin_api_key_lifecycle(agentd):
    """Keys made through the admin API work with both SDKs; revoking through it takes effect at once."""
    import anthropic
    import httpx

    admin = {"Authorization": f"Bearer {agentd.admin_key}"}
    for headers in ({}, {"Authorization": f"Bearer {agentd.key}"}):
        # A fresh connection each (see test_errors.py::test_connection_reusable_after_auth_rejection).
        with agentd.http() as http:
            r = http.post("/admin/keys", headers=headers, json={"name": "nope"})
        assert r.status_code in (401, 403), f"admin API without the admin key: {r.status_code} {r.text}"

    with agentd.http() as http:
        r = http.post("/admin/keys", headers=admin, json={"name": "via-admin"})
        assert r.status_code == 201, r.text
        created = r.json()
        secret, key_id = created["key"], created["id"]
        assert secret.startswith("sk-agentd-")
        assert created["name"] == "via-admin" and created["revoked_at"] is None

        listed = http.get("/admin/keys", headers=admin).json()["data"]
        assert [k["id"] for k in listed if k["name"] == "via-admin"] == [key_id]
        assert secret not in json.dumps(listed)

        msg = agentd.anthropic(api_key=secret).messages.create(
            model="mock", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert msg.content

        r = http.delete(f"/admin/keys/{key_id}", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["revoked_at"]

    try:
        agentd.anthropic(api_key=secret).messages.create(
            model="mock", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("a key revoked through the admin API still works")
    except anthropic.AuthenticationError:
        pass
    assert httpx.get(f"{agentd.url}/admin/keys/{key_id}", headers=admin, timeout=5).json()["revoked_at"]
