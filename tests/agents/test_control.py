"""Run control through `langgraph-sdk`: resuming a dropped stream, cancel, multitask strategies."""

from __future__ import annotations

import time

import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError
from support_agents import (
    raises_status,
    SLOW,
    aio,
    assert_consecutive,
    check_echo,
    collect,
    event_ids,
    kind,
    msgs,
    text,
    user,
    wait_status,
)


# ------------------------------------------------------------------ 6. resume after a dropped stream
@aio
async def test_join_stream_resumes_after_last_event_id(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    prompt = "resume me"
    head = []
    stream = c.runs.stream(
        tid, "echo", input=user(f"{prompt} mock:token_delay_ms=150"), stream_mode="messages-tuple", on_disconnect="continue"
    )
    async for part in stream:
        head.append(part)
        if sum(p.event == "messages" for p in head) == 3:
            break
    await stream.aclose()  # drop the connection mid-run
    assert head[0].event == "metadata", head[0]
    run_id = head[0].data["run_id"]
    head_ids = event_ids(head)
    assert_consecutive(head_ids, "live stream")

    run = await c.runs.get(tid, run_id)
    assert run["status"] in ("pending", "running"), f"on_disconnect=continue: the run goes on without a client: {run}"

    # Resume from the last id seen: exactly the rest, no duplicate, nothing missing.
    tail = await collect(c.runs.join_stream(tid, run_id, last_event_id=str(head_ids[-1])))
    tail_ids = event_ids(tail)
    assert tail_ids and tail_ids[0] == head_ids[-1] + 1, f"resume must continue at {head_ids[-1] + 1}, got {tail_ids[:5]}"
    assert_consecutive(tail_ids, "resumed stream")
    names = [p.event for p in tail]
    assert set(names) <= {"messages", "end"}, f"resumed stream: {names}"
    whole = "".join(p.data[0]["content"] for p in head + tail if p.event == "messages")
    assert whole.startswith(f"Mock reply to: {prompt}"), f"head + tail must be the whole reply: {whole!r}"
    assert (await c.runs.get(tid, run_id))["status"] == "success", "join_stream ends when the run ends"

    # -1 replays everything from the first event, identical to what was sent live.
    replay = await collect(c.runs.join_stream(tid, run_id, last_event_id="-1"))
    assert [(p.event, p.id, p.data) for p in replay] == [(p.event, p.id, p.data) for p in head + tail], (
        "join_stream with Last-Event-ID -1 must replay the run's whole stream"
    )

    # No Last-Event-ID on a finished run: nothing old is replayed and the stream ends at once.
    t0 = time.monotonic()
    late = await collect(c.runs.join_stream(tid, run_id))
    assert time.monotonic() - t0 < 5, "join_stream of a finished run must not hang"
    assert {p.event for p in late} <= {"end", "metadata"}, f"no old events without Last-Event-ID: {[p.event for p in late]}"


@aio
async def test_join_stream_live_from_another_client(rt):
    """A background run joined while it runs: join_stream follows it live to the end."""
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await c.runs.create(tid, "echo", input=user(f"live {SLOW}"), stream_mode=["values", "messages-tuple"])
    parts = await collect(c.runs.join_stream(tid, run["run_id"], last_event_id="-1"))
    names = [p.event for p in parts]
    assert names[0] == "metadata" and "values" in names and names.count("messages") >= 2, names
    assert_consecutive(event_ids(parts), "join_stream")
    check_echo([p.data for p in parts if p.event == "values"][-1], f"live {SLOW}")
    assert (await c.runs.get(tid, run["run_id"]))["status"] == "success"


# ------------------------------------------------------------------ 7. cancel
async def _slow_run(c, tid: str, label: str = "slow", **kw) -> dict:
    run = await c.runs.create(tid, "echo", input=user(f"{label} {SLOW}"), **kw)
    await wait_status(c, tid, run["run_id"], {"running"})
    return run


@aio
async def test_cancel_interrupt_keeps_thread_usable(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await _slow_run(c, tid)
    await c.runs.cancel(tid, run["run_id"], action="interrupt")
    got = await wait_status(c, tid, run["run_id"], {"interrupted", "success", "error"}, timeout=10)
    assert got["status"] == "interrupted", got
    thread = await c.threads.get(tid)
    assert thread["status"] == "idle", f"a cancelled run leaves the thread idle: {thread}"
    values = await c.runs.wait(tid, "echo", input=user("after cancel"))
    ms = msgs(values)
    assert kind(ms[-1]) == "ai" and text(ms[-1]).startswith("Mock reply to: after cancel"), [kind(m) for m in ms]
    with raises_status(404):
        await c.runs.cancel(tid, "00000000-0000-4000-8000-000000000000")


@aio
async def test_cancel_with_wait_returns_after_the_run_stopped(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await _slow_run(c, tid)
    t0 = time.monotonic()
    await c.runs.cancel(tid, run["run_id"], wait=True, action="interrupt")
    assert time.monotonic() - t0 < 3.5, "cancel must stop the run, not wait for it to finish (it had ~4 s to go)"
    got = await c.runs.get(tid, run["run_id"])
    assert got["status"] == "interrupted", f"cancel(wait=True) returns once the run has stopped: {got}"
    # Cancelling a finished run again is harmless.
    await c.runs.cancel(tid, run["run_id"], wait=True)


@aio
async def test_cancel_rollback_deletes_the_run(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await _slow_run(c, tid)
    await c.runs.cancel(tid, run["run_id"], wait=True, action="rollback")
    with raises_status(404):
        await c.runs.get(tid, run["run_id"])
    assert [r["run_id"] for r in await c.runs.list(tid)] == [], "a rolled-back run is deleted"
    state = await c.threads.get_state(tid)
    assert not (state.get("values") or {}).get("messages"), f"rollback deletes the run's checkpoints: {state.get('values')}"
    check_echo(await c.runs.wait(tid, "echo", input=user("fresh")), "fresh")


# ------------------------------------------------------------------ 8. multitask strategies
@aio
async def test_multitask_reject(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run1 = await _slow_run(c, tid, "first")
    with raises_status(409):
        await c.runs.create(tid, "echo", input=user("second"), multitask_strategy="reject")
    check_echo(await c.runs.join(tid, run1["run_id"]), f"first {SLOW}")
    assert [r["run_id"] for r in await c.runs.list(tid)] == [run1["run_id"]], "the rejected run was not created"


@aio
async def test_multitask_enqueue(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run1 = await _slow_run(c, tid, "first")
    run2 = await c.runs.create(tid, "echo", input=user("second"), multitask_strategy="enqueue")
    assert run2["status"] == "pending", f"an enqueued run waits for the running one: {run2}"
    assert (await c.runs.get(tid, run1["run_id"]))["status"] == "running"
    values = await c.runs.join(tid, run2["run_id"])
    ms = msgs(values)
    assert [kind(m) for m in ms] == ["human", "ai", "human", "ai"], [(kind(m), text(m)[:20]) for m in ms]
    assert text(ms[0]).startswith("first") and text(ms[2]) == "second", "both exchanges, in order"
    assert text(ms[1]).startswith("Mock reply to: first") and text(ms[3]).startswith("Mock reply to: second")
    for r in (run1, run2):
        assert (await c.runs.get(tid, r["run_id"]))["status"] == "success"


@aio
async def test_multitask_interrupt(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run1 = await _slow_run(c, tid, "first")
    run2 = await c.runs.create(tid, "echo", input=user("second"), multitask_strategy="interrupt")
    values = await c.runs.join(tid, run2["run_id"])
    assert (await c.runs.get(tid, run1["run_id"]))["status"] == "interrupted"
    assert (await c.runs.get(tid, run2["run_id"]))["status"] == "success"
    ms = msgs(values)
    assert text(ms[0]).startswith("first"), f"interrupt keeps run1's progress: {[(kind(m), text(m)[:20]) for m in ms]}"
    assert [kind(m) for m in ms[-2:]] == ["human", "ai"] and text(ms[-2]) == "second", ms
    assert text(ms[-1]).startswith("Mock reply to: second"), ms


@aio
async def test_multitask_rollback(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run1 = await _slow_run(c, tid, "first")
    run2 = await c.runs.create(tid, "echo", input=user("second"), multitask_strategy="rollback")
    values = await c.runs.join(tid, run2["run_id"])
    with raises_status(404):
        await c.runs.get(tid, run1["run_id"])
    assert (await c.runs.get(tid, run2["run_id"]))["status"] == "success"
    check_echo(values, "second")  # run1 and its checkpoints are gone


@aio
async def test_multitask_on_stream(rt):
    """The strategy applies to runs.stream too (LangGraph JS once ignored it on some endpoints)."""
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    await _slow_run(c, tid, "first")
    with raises_status(409):
        await collect(c.runs.stream(tid, "echo", input=user("second"), multitask_strategy="reject"))
    with raises_status(409):
        await c.runs.wait(tid, "echo", input=user("third"), multitask_strategy="reject")
