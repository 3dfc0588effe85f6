"""Helpers shared by the agent-API tests (imported as `support_agents`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import time
import uuid

import httpx
from typing import Any, Awaitable, Callable

# The namespace LangGraph servers use for each graph's "system" assistant:
# assistant_id = uuid5(NAMESPACE_GRAPH, graph_id).
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
AGENTS = ("echo", "react")

TEST_TIMEOUT_S = 120.0
# 20 tokens x 200 ms: a run that lasts ~4 s, long enough to cancel it or start another on its thread.
SLOW = "mock:token_delay_ms=200"
RUN_STATUSES = {"pending", "running", "error", "success", "timeout", "interrupted"}
TERMINAL = {"error", "success", "timeout", "interrupted"}
CONTENT_LOCATION_RE = re.compile(r"^(/threads/(?P<thread_id>[^/]+))?/runs/(?P<run_id>[^/]+)$")


def assistant_uuid(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def aio(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Runs an `async def` test in a fresh event loop, bounded by TEST_TIMEOUT_S (or by
    `@aio_timeout(s)` placed under `@aio`)."""
    timeout = getattr(fn, "_aio_timeout", TEST_TIMEOUT_S)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout))

    return wrapper


def aio_timeout(seconds: float):
    def deco(fn):
        fn._aio_timeout = seconds
        return fn

    return deco


def user(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ result checks (as the bench's)
def msgs(values: Any) -> list[dict]:
    assert isinstance(values, dict) and isinstance(values.get("messages"), list), (
        f"expected state values {{'messages': [...]}}, got {str(values)[:300]}"
    )
    return values["messages"]


def kind(m: dict) -> str:
    return m.get("type") or m.get("role") or "?"


def text(m: dict) -> str:
    c = m.get("content")
    if isinstance(c, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
    return c or ""


def summary(ms: list[dict]) -> list[tuple[str, str]]:
    return [(kind(m), text(m)[:40]) for m in ms]


def check_langchain_message(m: dict) -> None:
    """LangChain dict shape: type in human|ai|tool|system, string content, an id."""
    assert m.get("type") in ("human", "ai", "tool", "system"), f"message type must be LangChain's: {m}"
    assert isinstance(m.get("content"), (str, list)), f"message content: {m}"
    assert isinstance(m.get("id"), str) and m["id"], f"message id must be a non-empty string: {m}"


def check_echo(values: Any, prompt: str | None = None) -> list[dict]:
    ms = msgs(values)
    assert [kind(m) for m in ms] == ["human", "ai"], f"echo: expected [human, ai], got {summary(ms)}"
    for m in ms:
        check_langchain_message(m)
    assert text(ms[1]).startswith("Mock reply to:"), f"echo: ai must be the mock's reply, got {summary(ms)}"
    if prompt is not None:
        assert text(ms[0]) == prompt, f"echo: the human message must be the input, got {summary(ms)}"
    return ms


def check_react(values: Any) -> list[dict]:
    ms = msgs(values)
    kinds = [kind(m) for m in ms]
    assert kinds == ["human", "ai", "tool", "ai"], f"react: expected [human, ai, tool, ai], got {summary(ms)}"
    for m in ms:
        check_langchain_message(m)
    calls = ms[1].get("tool_calls")
    assert isinstance(calls, list) and len(calls) == 1, f"react: the first ai message must carry one tool call: {ms[1]}"
    call = calls[0]
    assert call.get("name") == "lookup" and isinstance(call.get("args"), dict) and call.get("id"), (
        f"react: tool call must be LangChain-shaped {{name: 'lookup', args: {{...}}, id}}: {call}"
    )
    assert ms[2].get("tool_call_id") == call["id"], f"react: tool message must answer the call: {ms[2]}"
    assert "42" in text(ms[2]), f"react: tool result must be the static lookup result: {ms[2]}"
    assert text(ms[3]).startswith("Mock reply to tool result"), f"react: final ai: {summary(ms)}"
    return ms


# ------------------------------------------------------------------ polling
async def wait_status(client, thread_id: str, run_id: str, statuses: set[str], timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    run = await client.runs.get(thread_id, run_id)
    while run["status"] not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']!r} after {timeout}s, expected one of {statuses}")
        await asyncio.sleep(0.05)
        run = await client.runs.get(thread_id, run_id)
    return run


async def collect(stream) -> list:
    return [part async for part in stream]


def event_ids(parts: list) -> list[int]:
    """The SSE ids of a list of StreamParts, as integers; each event must carry one."""
    ids = []
    for p in parts:
        assert p.id is not None and p.id != "", f"every SSE event must carry an id: {p.event} {str(p.data)[:100]}"
        try:
            ids.append(int(p.id))
        except ValueError:
            raise AssertionError(f"SSE ids must be integers (the run event seq), got {p.id!r}") from None
    return ids


def assert_consecutive(ids: list[int], what: str) -> None:
    assert all(b == a + 1 for a, b in zip(ids, ids[1:])), f"{what}: ids must increase by 1, got {ids}"


# ------------------------------------------------------------------ raw SSE (httpx)
def parse_sse(raw: str) -> list[dict]:
    """Strict SSE parse: frames end with a blank line; `event`, `data`, `id` fields; `:` comments."""
    assert raw.endswith("\n\n"), f"SSE body must end with a blank line, ends with {raw[-60:]!r}"
    out = []
    for frame in raw.split("\n\n"):
        if not frame.strip():
            continue
        ev: dict = {"event": None, "data": [], "id": None}
        for line in frame.split("\n"):
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                ev["event"] = value
            elif key == "data":
                ev["data"].append(value)
            elif key == "id":
                ev["id"] = value
            elif key == "retry":
                pass
            else:
                raise AssertionError(f"unexpected SSE line {line!r} in frame {frame!r}")
        if ev["event"] is None and not ev["data"]:
            continue
        ev["data"] = json.loads("\n".join(ev["data"])) if ev["data"] else None
        out.append(ev)
    return out


class _Raised:
    value: Any = None

    @property
    def message(self) -> str:
        e = self.value
        if isinstance(e, httpx.HTTPStatusError):
            return e.response.text
        return getattr(e, "message", None) or str(e)


@contextlib.contextmanager
def raises_status(code: int):
    """Expects an HTTP error `code`, raised either as the SDK's typed error or, on the SDK calls
    that do not map errors (runs.wait, runs.join), as httpx.HTTPStatusError."""
    holder = _Raised()
    try:
        yield holder
    except httpx.HTTPStatusError as e:
        holder.value = e
        assert e.response.status_code == code, f"expected HTTP {code}, got {e.response.status_code}: {e.response.text}"
        return
    except Exception as e:  # the SDK's typed errors carry the status
        holder.value = e
        status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
        assert status == code, f"expected HTTP {code}, got {type(e).__name__} ({status}): {e}"
        return
    raise AssertionError(f"expected HTTP {code}, nothing was raised")
