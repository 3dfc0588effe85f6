"""Run events over WebSocket (`GET /threads/{t}/runs/{r}/ws`, `GET /threads/{t}/ws`): the same
durable events as SSE, one JSON text frame each, resumable with `since`, closed with 1000 after
`end`. Driven with the `websockets` client (a dependency of langgraph-sdk)."""

from __future__ import annotations

import asyncio
import json

import websockets
from support_agents import SLOW, aio, user


async def _frames(url: str, key: str, limit: int = 500) -> tuple[list[dict], int | None]:
    frames: list[dict] = []
    async with websockets.connect(url, additional_headers={"x-api-key": key}) as ws:
        try:
            while len(frames) < limit:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        except websockets.ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None
    return frames, None


def _ws_url(rt, path: str) -> str:
    return rt.url.replace("http://", "ws://") + path


@aio
async def test_run_socket_replays_follows_and_resumes(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await c.runs.create(tid, "echo", input=user(f"ws {SLOW}"), stream_mode=["values", "messages-tuple"])
    rid = run["run_id"]
    frames, code = await _frames(_ws_url(rt, f"/threads/{tid}/runs/{rid}/ws"), rt.key_a)
    assert code == 1000, f"the socket closes normally after end, got {code}"
    ids = [f["id"] for f in frames]
    assert ids == list(range(1, len(ids) + 1)), ids
    assert frames[0]["event"] == "metadata" and frames[-1]["event"] == "end", [f["event"] for f in frames]
    assert sum(f["event"] == "messages" for f in frames) >= 2
    assert all(f["run_id"] == rid for f in frames)
    # Resume after id k: exactly the rest.
    k = len(frames) // 2
    rest, code = await _frames(_ws_url(rt, f"/threads/{tid}/runs/{rid}/ws?since={k}"), rt.key_a)
    assert [(f["id"], f["event"], f["data"]) for f in rest] == [(f["id"], f["event"], f["data"]) for f in frames[k:]]
    assert code == 1000


@aio
async def test_sockets_are_tenant_scoped_and_check_since(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await c.runs.wait(tid, "echo", input=user("x"))
    runs = await c.runs.list(tid)
    rid = runs[0]["run_id"]
    assert run
    for path in (f"/threads/{tid}/runs/{rid}/ws", f"/threads/{tid}/ws"):
        try:
            async with websockets.connect(_ws_url(rt, path), additional_headers={"x-api-key": rt.key_b}):
                raise AssertionError(f"tenant B opened {path}")
        except websockets.InvalidStatus as e:
            assert e.response.status_code == 404, e.response.status_code
    try:
        async with websockets.connect(
            _ws_url(rt, f"/threads/{tid}/runs/{rid}/ws?since=abc"), additional_headers={"x-api-key": rt.key_a}
        ):
            raise AssertionError("a bad since was accepted")
    except websockets.InvalidStatus as e:
        assert e.response.status_code == 422


@aio
async def test_thread_socket_follows_the_next_run(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    got: list[dict] = []

    async def listen():
        async with websockets.connect(_ws_url(rt, f"/threads/{tid}/ws"), additional_headers={"x-api-key": rt.key_a}) as ws:
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 30))
                got.append(f)
                if f["event"] == "end":
                    return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.5)  # connected and idle: no run yet
    run = await c.runs.create(tid, "echo", input=user(f"thread socket {SLOW}"))
    await asyncio.wait_for(task, 40)
    assert got and got[0]["event"] == "metadata" and got[-1]["event"] == "end"
    assert {f["run_id"] for f in got} == {run["run_id"]}
