"""Crons and thread TTL through `langgraph-sdk`."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError
from support_agents import raises_status, aio, aio_timeout, assistant_uuid, check_echo, user


# ------------------------------------------------------------------ 9. crons
@aio
async def test_cron_create_search_delete(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    # 00:00 on January 1st: never fires during the test.
    cron = await c.crons.create_for_thread(tid, "echo", schedule="0 0 1 1 *", input=user("yearly"))
    for k in ("cron_id", "assistant_id", "thread_id", "schedule", "created_at", "updated_at", "payload", "metadata"):
        assert k in cron, f"Cron must carry {k}: {cron}"
    assert cron["thread_id"] == tid and cron["schedule"] == "0 0 1 1 *", cron
    assert cron["assistant_id"] in (assistant_uuid("echo"), "echo"), cron
    assert cron.get("next_run_date"), f"a cron tells when it fires next: {cron}"

    stateless = await c.crons.create("echo", schedule="0 0 1 1 *", input=user("yearly stateless"))
    assert stateless.get("thread_id") is None, stateless

    found = await c.crons.search(thread_id=tid)
    assert [x["cron_id"] for x in found] == [cron["cron_id"]], found
    found = await c.crons.search(assistant_id="echo", limit=100)
    ids = {x["cron_id"] for x in found}
    assert {cron["cron_id"], stateless["cron_id"]} <= ids, found

    await c.crons.delete(cron["cron_id"])
    await c.crons.delete(stateless["cron_id"])
    assert await c.crons.search(thread_id=tid) == []
    ids = {x["cron_id"] for x in await c.crons.search(assistant_id="echo", limit=100)}
    assert not ({cron["cron_id"], stateless["cron_id"]} & ids), "deleted crons are not listed"
    with raises_status(404):
        await c.crons.delete(cron["cron_id"])


@aio
async def test_cron_invalid_schedule_is_422_and_creates_nothing(rt):
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    before = len(await c.crons.search(limit=1000))
    with raises_status(422) as e:
        await c.crons.create_for_thread(tid, "echo", schedule="61 * * * *", input=user("never"))
    assert "schedule" in e.message, f"the 422 must name the schedule: {e.message!r}"
    with raises_status(422) as e:
        await c.crons.create("echo", schedule="not a schedule", input=user("never"))
    assert "schedule" in e.message, e.message
    assert await c.crons.search(thread_id=tid) == []
    assert len(await c.crons.search(limit=1000)) == before
    with raises_status(404):
        await c.crons.create_for_thread(tid, "no-such-agent", schedule="0 0 1 1 *", input=user("x"))
    with raises_status(404):
        await c.crons.create_for_thread(str(uuid.uuid4()), "echo", schedule="0 0 1 1 *", input=user("x"))


@pytest.mark.slow
@aio
@aio_timeout(150)
async def test_cron_fires_a_run_on_its_thread(rt):
    """`* * * * *` fires at the next minute boundary: up to 60 s of waiting, once per suite."""
    c = rt.client()
    tid = (await c.threads.create())["thread_id"]
    cron = await c.crons.create_for_thread(tid, "echo", schedule="* * * * *", input=user("tick"))
    try:
        deadline = time.monotonic() + 90
        runs = []
        while not runs:
            assert time.monotonic() < deadline, "the every-minute cron made no run within 90 s"
            await asyncio.sleep(1)
            runs = await c.runs.list(tid)
        run = runs[-1]
        check_echo(await c.runs.join(tid, run["run_id"]), "tick")
        assert (await c.runs.get(tid, run["run_id"]))["status"] == "success"
    finally:
        await c.crons.delete(cron["cron_id"])
    assert await c.crons.search(thread_id=tid) == []


# ------------------------------------------------------------------ 11. thread TTL
@aio
async def test_thread_ttl_deletes_the_thread(rt):
    c = rt.client()
    # 0.02 minutes = 1.2 s; the fixture's sweep runs every second.
    doomed = await c.threads.create(ttl={"ttl": 0.02, "strategy": "delete"}, metadata={"ttl": "short"})
    kept = await c.threads.create(metadata={"ttl": "none"})
    await c.threads.get(doomed["thread_id"])
    deadline = time.monotonic() + 8
    while True:
        try:
            await c.threads.get(doomed["thread_id"])
        except NotFoundError:
            break
        assert time.monotonic() < deadline, "a thread with a 1.2 s TTL still exists after 8 s"
        await asyncio.sleep(0.25)
    await c.threads.get(kept["thread_id"])  # no TTL: still there
    with raises_status(422):
        await c.threads.create(ttl={"ttl": 1, "strategy": "bogus"})
