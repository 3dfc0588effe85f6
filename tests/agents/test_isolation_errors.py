"""Tenant isolation, authentication and bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest
from langgraph_sdk.errors import AuthenticationError, NotFoundError, UnprocessableEntityError
from support_agents import raises_status, SLOW, aio, check_echo, unique, user, wait_status


# ------------------------------------------------------------------ 10. tenant isolation
@aio
async def test_tenant_b_cannot_see_or_touch_tenant_a(rt):
    a, b = rt.client(rt.key_a), rt.client(rt.key_b)
    tag = unique("iso")
    thread = await a.threads.create(metadata={"tag": tag})
    tid = thread["thread_id"]
    check_echo(await a.runs.wait(tid, "echo", input=user("mine")), "mine")
    done = (await a.runs.list(tid))[0]
    slow = await a.runs.create(tid, "echo", input=user(f"slow {SLOW}"))
    await wait_status(a, tid, slow["run_id"], {"running"})
    cron = await a.crons.create_for_thread(tid, "echo", schedule="0 0 1 1 *", input=user("x"))

    denied = {
        "threads.get": lambda: b.threads.get(tid),
        "threads.update": lambda: b.threads.update(tid, metadata={"pwned": True}),
        "threads.get_state": lambda: b.threads.get_state(tid),
        "threads.get_history": lambda: b.threads.get_history(tid),
        "runs.get": lambda: b.runs.get(tid, done["run_id"]),
        "runs.list": lambda: b.runs.list(tid),
        "runs.join": lambda: b.runs.join(tid, done["run_id"]),
        "runs.cancel": lambda: b.runs.cancel(tid, slow["run_id"]),
        "runs.create": lambda: b.runs.create(tid, "echo", input=user("intrude")),
        "runs.wait": lambda: b.runs.wait(tid, "echo", input=user("intrude")),
        "crons.delete": lambda: b.crons.delete(cron["cron_id"]),
        "threads.delete": lambda: b.threads.delete(tid),
    }
    leaks = []
    for name, call in denied.items():
        try:
            res = await call()
        except NotFoundError:
            continue
        except httpx.HTTPStatusError as e:  # runs.wait / runs.join do not map errors
            if e.response.status_code == 404:
                continue
            res = e.response.text
        leaks.append(f"{name} answered {str(res)[:80]!r} instead of 404")
    try:
        parts = [p async for p in b.runs.join_stream(tid, done["run_id"], last_event_id="-1")]
        leaks.append(f"runs.join_stream answered {len(parts)} events instead of 404")
    except NotFoundError:
        pass
    try:
        parts = [p async for p in b.runs.stream(tid, "echo", input=user("intrude"))]
        leaks.append(f"runs.stream answered {len(parts)} events instead of 404")
    except NotFoundError:
        pass
    assert not leaks, "tenant B reached tenant A's objects:\n" + "\n".join(leaks)

    assert await b.threads.search(metadata={"tag": tag}) == []
    assert tid not in {t["thread_id"] for t in await b.threads.search(limit=1000)}
    assert await b.crons.search(thread_id=tid) == []
    assert cron["cron_id"] not in {x["cron_id"] for x in await b.crons.search(limit=1000)}

    # Nothing B did had an effect on A's objects.
    got = await a.threads.get(tid)
    assert "pwned" not in got["metadata"], got
    assert (await a.runs.get(tid, slow["run_id"]))["status"] in ("running", "success"), "B's cancel must not reach A's run"
    assert [x["cron_id"] for x in await a.crons.search(thread_id=tid)] == [cron["cron_id"]]
    assert [t["thread_id"] for t in await a.threads.search(metadata={"tag": tag})] == [tid]
    await a.crons.delete(cron["cron_id"])
    await a.runs.cancel(tid, slow["run_id"], wait=True)


def test_requests_without_a_valid_key_are_401(rt):
    tid = str(uuid.uuid4())
    with httpx.Client(base_url=rt.url, timeout=10) as h:
        for method, path, body in [
            ("POST", "/threads", {}),
            ("GET", f"/threads/{tid}", None),
            ("POST", "/assistants/search", {}),
            ("POST", "/runs/wait", {"assistant_id": "echo", "input": user("x")}),
            ("POST", "/runs/crons/search", {}),
        ]:
            r = h.request(method, path, json=body)
            assert r.status_code == 401, f"{method} {path} without a key: {r.status_code} {r.text[:200]}"
            r = h.request(method, path, json=body, headers={"x-api-key": "sk-agentd-not-a-real-key"})
            assert r.status_code == 401, f"{method} {path} with a wrong key: {r.status_code} {r.text[:200]}"


@aio
async def test_sdk_raises_authentication_error(rt):
    c = rt.client("sk-agentd-wrong")
    with pytest.raises(AuthenticationError):
        await c.threads.create()


# ------------------------------------------------------------------ 12. bad input
async def _assert_nothing_created(c, tid: str, threads_before: int) -> None:
    assert await c.runs.list(tid) == [], "a refused run must not be created"
    assert (await c.threads.get(tid))["status"] == "idle"
    after = len(await c.threads.search(limit=1000))
    assert after == threads_before, f"a refused request must not create a thread ({threads_before} -> {after})"


@aio
async def test_unknown_assistant_and_thread_are_404(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    before = len(await c.threads.search(limit=1000))
    for call in (
        lambda: c.runs.create(tid, "no-such-agent", input=user("x")),
        lambda: c.runs.wait(tid, "no-such-agent", input=user("x")),
        lambda: c.runs.wait(None, "no-such-agent", input=user("x")),
        lambda: c.runs.create(tid, str(uuid.uuid4()), input=user("x")),
    ):
        with raises_status(404):
            await call()
    with raises_status(404):
        await c.runs.stream(tid, "no-such-agent", input=user("x")).__anext__()
    ghost = str(uuid.uuid4())
    with raises_status(404):
        await c.runs.create(ghost, "echo", input=user("x"))
    with raises_status(404):
        await c.runs.stream(ghost, "echo", input=user("x")).__anext__()
    with raises_status(404):
        await c.runs.list(ghost)
    with raises_status(404):
        await c.threads.get_state(ghost)
    await _assert_nothing_created(c, tid, before)


@aio
async def test_if_not_exists_create(rt):
    c = rt.client()
    tid = str(uuid.uuid4())
    values = await c.runs.wait(tid, "echo", input=user("made for me"), if_not_exists="create")
    check_echo(values, "made for me")
    assert (await c.threads.get(tid))["thread_id"] == tid


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("input", {"input": "not an object"}),
        ("stream_mode", {"input": user("x"), "stream_mode": "bogus"}),
        ("multitask_strategy", {"input": user("x"), "multitask_strategy": "bogus"}),
        ("input", {"input": {"messages": "not a list"}}),
        ("if_not_exists", {"input": user("x"), "if_not_exists": "bogus"}),
    ],
    ids=["input-string", "stream_mode", "multitask_strategy", "messages-not-list", "if_not_exists"],
)
@aio
async def test_malformed_run_is_422_naming_the_field(rt, field, kwargs):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    before = len(await c.threads.search(limit=1000))
    calls = {
        "runs.create": lambda: c.runs.create(tid, "echo", **kwargs),
        "runs.wait": lambda: c.runs.wait(tid, "echo", **kwargs),
        "runs.wait stateless": lambda: c.runs.wait(None, "echo", **kwargs),
        "runs.stream": lambda: c.runs.stream(tid, "echo", **kwargs).__anext__(),
    }
    for name, call in calls.items():
        if name.startswith("runs.wait") and "stream_mode" in kwargs:
            continue  # the SDK's runs.wait takes no stream_mode
        with raises_status(422) as e:
            await call()
        assert field in e.message, f"{name}: the 422 must name {field!r}: {e.message!r}"
    await _assert_nothing_created(c, tid, before)


def test_raw_malformed_json_is_422_or_400(rt):
    with rt.http() as h:
        tid = h.post("/threads", json={}).json()["thread_id"]
        r = h.post(f"/threads/{tid}/runs", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), f"{r.status_code} {r.text[:200]}"
        body = r.json()
        assert any(k in body for k in ("detail", "message", "error")), f"error body the SDK can read: {body}"
        assert h.get(f"/threads/{tid}/runs").json() == []
