"""The LangGraph agent API through `langgraph-sdk`: discovery, threads, streamed / background /
stateless runs, the react agent. Control flow (resume, cancel, multitask) is in test_control.py."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError
from support_agents import (
    raises_status,
    AGENTS,
    RUN_STATUSES,
    aio,
    assistant_uuid,
    check_echo,
    check_react,
    collect,
    event_ids,
    kind,
    msgs,
    text,
    unique,
    user,
)


# ------------------------------------------------------------------ 1. discovery
@aio
async def test_ok_and_info(rt):
    c = rt.client()
    assert await c.http.get("/ok") == {"ok": True}
    info = await c.http.get("/info")
    assert isinstance(info, dict), f"GET /info must answer a JSON object, got {info!r}"


@aio
async def test_assistants_search_lists_each_agent_with_deterministic_ids(rt):
    c = rt.client()
    found = await c.assistants.search(limit=100)
    assert isinstance(found, list), f"POST /assistants/search must answer a bare JSON array, got {found!r}"
    by_graph = {a["graph_id"]: a for a in found}
    assert set(AGENTS) <= set(by_graph), f"expected agents {AGENTS}, got graph_ids {sorted(by_graph)}"
    for name in AGENTS:
        a = by_graph[name]
        assert a["assistant_id"] == assistant_uuid(name), (
            f"assistant_id of {name!r} must be uuid5(6ba7b821-…, {name!r}) = {assistant_uuid(name)}, got {a['assistant_id']}"
        )
        assert a.get("name") == name, a
        for k in ("config", "context", "metadata"):
            assert isinstance(a.get(k), dict), f"assistant {name}: {k} must be an object (never null): {a}"
        for k in ("created_at", "updated_at"):
            assert isinstance(a.get(k), str) and a[k], f"assistant {name}: {k} must be an ISO timestamp: {a}"
        assert isinstance(a.get("version"), int), f"assistant {name}: version must be an int: {a}"
    only = await c.assistants.search(graph_id="echo")
    assert [a["graph_id"] for a in only] == ["echo"], f"search(graph_id='echo') must filter: {only}"


@aio
async def test_assistants_get_by_uuid_and_404(rt):
    c = rt.client()
    for name in AGENTS:
        a = await c.assistants.get(assistant_uuid(name))
        assert a["assistant_id"] == assistant_uuid(name) and a["graph_id"] == name, a
        assert isinstance(a["config"], dict) and isinstance(a["context"], dict), a
    with raises_status(404):
        await c.assistants.get(str(uuid.uuid4()))


# ------------------------------------------------------------------ 2. threads
@aio
async def test_thread_crud_and_search(rt):
    c = rt.client()
    tag = unique("crud")
    t = await c.threads.create(metadata={"tag": tag})
    tid = t["thread_id"]
    uuid.UUID(tid)  # a UUID
    assert t["metadata"].get("tag") == tag, t
    assert t["status"] == "idle", t
    for k in ("created_at", "updated_at"):
        assert isinstance(t.get(k), str) and t[k], t

    got = await c.threads.get(tid)
    assert got["thread_id"] == tid and got["metadata"].get("tag") == tag, got

    # An explicit id: created once, then do_nothing returns it, and the default (raise) is a 409.
    mine = str(uuid.uuid4())
    t2 = await c.threads.create(thread_id=mine, metadata={"tag": tag, "n": 2})
    assert t2["thread_id"] == mine
    again = await c.threads.create(thread_id=mine, if_exists="do_nothing", metadata={"other": 1})
    assert again["thread_id"] == mine and again["metadata"].get("n") == 2, f"do_nothing must return the existing thread: {again}"
    with raises_status(409):
        await c.threads.create(thread_id=mine)

    found = await c.threads.search(metadata={"tag": tag}, limit=10)
    assert sorted(x["thread_id"] for x in found) == sorted([tid, mine]), found
    found = await c.threads.search(metadata={"tag": tag, "n": 2})
    assert [x["thread_id"] for x in found] == [mine], found

    upd = await c.threads.update(tid, metadata={"extra": "yes"})
    assert upd["metadata"].get("extra") == "yes", upd
    got = await c.threads.get(tid)
    assert got["metadata"].get("extra") == "yes" and got["metadata"].get("tag") == tag, (
        f"threads.update merges metadata: {got['metadata']}"
    )

    await c.threads.delete(tid)
    with raises_status(404):
        await c.threads.get(tid)
    found = await c.threads.search(metadata={"tag": tag})
    assert [x["thread_id"] for x in found] == [mine], found
    with raises_status(404):
        await c.threads.delete(tid)
    await c.threads.delete(mine)


@aio
async def test_thread_state_and_history_after_a_run(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    values = await c.runs.wait(tid, "echo", input=user("state please"))
    check_echo(values, "state please")

    state = await c.threads.get_state(tid)
    ms = check_echo(state["values"], "state please")
    assert ms == msgs(values), "thread state must equal the run's final values"
    assert isinstance(state.get("next"), list) and state["next"] == [], f"a finished run leaves next=[]: {state.get('next')}"
    cp = state.get("checkpoint")
    assert isinstance(cp, dict) and cp.get("thread_id") == tid and cp.get("checkpoint_id"), f"checkpoint: {cp}"

    hist = await c.threads.get_history(tid)
    assert isinstance(hist, list) and hist, f"history must be a non-empty list: {hist!r}"
    assert msgs(hist[0]["values"]) == ms, "history is newest first: its head is the current state"

    thread = await c.threads.get(tid)
    assert thread["status"] == "idle", thread
    check_echo(thread["values"], "state please")


# ------------------------------------------------------------------ 3. stream modes
EXPECTED_EVENTS = {
    "values": {"values"},
    "updates": {"updates"},
    "messages-tuple": {"messages"},
    "events": {"events"},
    "custom": set(),
}
CHAT_MODEL_EVENTS = {"on_chain_start", "on_chain_end", "on_chat_model_start", "on_chat_model_stream", "on_chat_model_end"}


def _check_stream_common(parts, mode_events: set[str], required: set[str]) -> None:
    assert parts, "the stream yielded nothing"
    first = parts[0]
    assert first.event == "metadata" and isinstance(first.data, dict) and first.data.get("run_id"), (
        f"the first event must be metadata {{run_id}}, got {first}"
    )
    uuid.UUID(first.data["run_id"])
    names = [p.event for p in parts]
    assert "error" not in names, f"error event: {[p for p in parts if p.event == 'error']}"
    assert set(names) <= {"metadata", "end"} | mode_events, f"unexpected events {set(names)} for modes {mode_events}"
    assert required <= set(names), f"missing {required - set(names)} in {names}"
    assert names.count("metadata") == 1, names
    if "end" in names:
        assert names[-1] == "end" and names.count("end") == 1, f"end must come last, once: {names}"
    ids = event_ids(parts)
    assert all(b > a for a, b in zip(ids, ids[1:])), f"ids must strictly increase: {ids}"


def _check_messages_events(parts, prompt: str) -> None:
    chunks = [p.data for p in parts if p.event == "messages"]
    assert len(chunks) >= 2, f"messages-tuple must stream tokens (>= 2 messages events), got {len(chunks)}"
    for d in chunks:
        assert isinstance(d, list) and len(d) == 2, f"messages data must be [chunk, metadata], got {d!r}"
        chunk, meta = d
        assert isinstance(chunk, dict) and isinstance(meta, dict), d
        assert chunk.get("type") in ("AIMessageChunk", "ai"), f"chunk type: {chunk}"
        assert isinstance(chunk.get("content"), str) and chunk.get("id"), f"chunk: {chunk}"
    assert len({d[0]["id"] for d in chunks}) == 1, "all chunks of one LLM message share its id"
    whole = "".join(d[0]["content"] for d in chunks)
    assert whole.startswith(f"Mock reply to: {prompt}"), f"concatenated chunks: {whole!r}"


@pytest.mark.parametrize(
    "mode",
    ["values", "updates", "messages-tuple", "events", "custom", ["values", "messages-tuple"]],
    ids=["values", "updates", "messages-tuple", "events", "custom", "values+messages-tuple"],
)
@aio
async def test_stream_mode(rt, mode):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    prompt = f"stream {unique()}"
    parts = await collect(c.runs.stream(tid, "echo", input=user(prompt), stream_mode=mode))
    modes = mode if isinstance(mode, list) else [mode]
    mode_events = set().union(*(EXPECTED_EVENTS[m] for m in modes))
    _check_stream_common(parts, mode_events, required=mode_events)
    run_id = parts[0].data["run_id"]

    if "values" in modes:
        values = [p.data for p in parts if p.event == "values"]
        check_echo(values[-1], prompt)
    if "updates" in modes:
        updates = [p.data for p in parts if p.event == "updates"]
        new_msgs = []
        for u in updates:
            assert isinstance(u, dict) and len(u) == 1, f"updates data is {{node: delta}}, got {u}"
            (delta,) = u.values()
            assert isinstance(delta, dict), u
            new_msgs += delta.get("messages", [])
        assert any(kind(m) == "ai" and text(m).startswith(f"Mock reply to: {prompt}") for m in new_msgs), (
            f"an update must carry the ai reply: {updates}"
        )
    if "messages-tuple" in modes:
        _check_messages_events(parts, prompt)
    if "events" in modes:
        evs = [p.data for p in parts if p.event == "events"]
        for e in evs:
            assert isinstance(e, dict) and isinstance(e.get("event"), str) and "data" in e, f"events record: {e}"
        names = {e["event"] for e in evs}
        assert CHAT_MODEL_EVENTS <= names, f"events mode must produce {CHAT_MODEL_EVENTS}, got {names}"

    run = await c.runs.get(tid, run_id)
    assert run["status"] == "success", run
    check_echo((await c.threads.get_state(tid))["values"], prompt)


# ------------------------------------------------------------------ 4. react agent
@aio
async def test_react_agent_calls_the_tool(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    values = await c.runs.wait(tid, "react", input=user("what is the answer?"))
    check_react(values)
    check_react((await c.threads.get_state(tid))["values"])

    # The same through a values stream: the last values event is the final state.
    tid2 = (await c.threads.create())["thread_id"]
    parts = await collect(c.runs.stream(tid2, "react", input=user("again"), stream_mode=["values", "updates"]))
    _check_stream_common(parts, {"values", "updates"}, {"values", "updates"})
    check_react([p.data for p in parts if p.event == "values"][-1])
    nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert len(nodes) >= 3, f"react makes three steps (llm, tool, llm): updates from {nodes}"


# ------------------------------------------------------------------ 5. background + join
@aio
async def test_background_run_join_get_list(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    run = await c.runs.create(tid, "echo", input=user("bg one"), metadata={"k": "v"})
    assert run["status"] in ("pending", "running"), run
    assert run["thread_id"] == tid, run
    assert run["assistant_id"] in (assistant_uuid("echo"), "echo"), run
    assert run.get("metadata", {}).get("k") == "v", run
    for k in ("run_id", "created_at", "updated_at", "multitask_strategy"):
        assert k in run, f"Run must carry {k}: {run}"
    check_echo(await c.runs.join(tid, run["run_id"]), "bg one")
    got = await c.runs.get(tid, run["run_id"])
    assert got["status"] == "success", got
    # Joining a finished run answers at once with the same values.
    check_echo(await c.runs.join(tid, run["run_id"]), "bg one")

    run2 = await c.runs.create(tid, "echo", input=user("bg two"))
    values = await c.runs.join(tid, run2["run_id"])
    assert [text(m)[:len("bg two")] for m in msgs(values)][::2] == ["bg one", "bg two"], (
        f"the second run continues the thread: {[(kind(m), text(m)[:20]) for m in msgs(values)]}"
    )
    listed = await c.runs.list(tid)
    assert [r["run_id"] for r in listed] == [run2["run_id"], run["run_id"]], f"runs.list, newest first: {listed}"
    assert all(r["status"] in RUN_STATUSES for r in listed)
    with raises_status(404):
        await c.runs.get(tid, str(uuid.uuid4()))


# ------------------------------------------------------------------ 13. stateless runs
@aio
async def test_stateless_runs(rt):
    c = rt.client()
    before = len(await c.threads.search(limit=1000))
    check_echo(await c.runs.wait(None, "echo", input=user("no thread")), "no thread")
    check_react(await c.runs.wait(None, "react", input=user("no thread")))
    # By the deterministic assistant id too.
    check_echo(await c.runs.wait(None, assistant_uuid("echo"), input=user("by id")), "by id")
    parts = await collect(c.runs.stream(None, "echo", input=user("stateless stream"), stream_mode=["values", "messages-tuple"]))
    _check_stream_common(parts, {"values", "messages"}, {"values", "messages"})
    check_echo([p.data for p in parts if p.event == "values"][-1], "stateless stream")
    _check_messages_events(parts, "stateless stream")
    deadline = time.monotonic() + 3  # a temporary thread may be deleted just after the run ends
    while (after := len(await c.threads.search(limit=1000))) != before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert after == before, f"stateless runs must leave no thread behind ({before} threads before, {after} after)"


@aio
async def test_input_accepts_langchain_message_dicts(rt):
    c = rt.client()
    values = await c.runs.wait(None, "echo", input={"messages": [{"type": "human", "content": "typed"}]})
    check_echo(values, "typed")


@aio
async def test_on_run_created_callback(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    seen = []
    parts = await collect(
        c.runs.stream(tid, "echo", input=user("cb"), stream_mode="values", on_run_created=seen.append)
    )
    assert len(seen) == 1, "the SDK parses Content-Location of the stream response into on_run_created"
    assert seen[0]["thread_id"] == tid and seen[0]["run_id"] == parts[0].data["run_id"], seen
    check_echo([p.data for p in parts if p.event == "values"][-1], "cb")
