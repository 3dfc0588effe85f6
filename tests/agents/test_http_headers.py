"""Wire details the SDK relies on, checked with raw HTTP: Content-Location, Location, SSE framing."""

from __future__ import annotations

import uuid

from support_agents import CONTENT_LOCATION_RE, check_echo, parse_sse, user

BODY = {"assistant_id": "echo", "input": user("headers")}


def test_create_wait_stream_carry_content_location(rt):
    with rt.http() as h:
        tid = h.post("/threads", json={}).json()["thread_id"]

        r = h.post(f"/threads/{tid}/runs", json=BODY)
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        assert r.headers.get("content-location") == f"/threads/{tid}/runs/{run_id}", dict(r.headers)
        h.get(f"/threads/{tid}/runs/{run_id}/join").raise_for_status()

        r = h.post(f"/threads/{tid}/runs/wait", json=BODY)
        assert r.status_code == 200, r.text
        # The thread keeps the first run's exchange: this run added the last two messages.
        check_echo({"messages": r.json()["messages"][-2:]}, "headers")
        m = CONTENT_LOCATION_RE.match(r.headers.get("content-location", ""))
        assert m and m["thread_id"] == tid, f"wait: Content-Location {r.headers.get('content-location')!r}"
        uuid.UUID(m["run_id"])

        r = h.post(f"/threads/{tid}/runs/stream", json={**BODY, "stream_mode": ["values", "messages-tuple"]})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].split(";")[0].strip() == "text/event-stream", r.headers["content-type"]
        events = parse_sse(r.text)
        assert events[0]["event"] == "metadata", events[0]
        run_id = events[0]["data"]["run_id"]
        assert r.headers.get("content-location") == f"/threads/{tid}/runs/{run_id}", dict(r.headers)
        assert r.headers.get("location") == f"/threads/{tid}/runs/{run_id}/stream", dict(r.headers)
        for ev in events:
            assert ev["id"] not in (None, ""), f"every event carries an id: {ev}"
        ids = [int(ev["id"]) for ev in events]
        assert ids == sorted(set(ids)), ids

        # Raw resume with Last-Event-ID through the Location the server gave.
        mid = events[len(events) // 2]
        r = h.get(r.headers["location"], headers={"Last-Event-ID": mid["id"], "Accept": "text/event-stream"})
        assert r.status_code == 200, r.text
        rest = parse_sse(r.text)
        assert [(e["event"], e["id"], e["data"]) for e in rest] == [
            (e["event"], e["id"], e["data"]) for e in events[len(events) // 2 + 1 :]
        ], "GET Location with Last-Event-ID resumes right after it"


def test_stateless_content_location(rt):
    with rt.http() as h:
        r = h.post("/runs/wait", json=BODY)
        assert r.status_code == 200, r.text
        check_echo(r.json(), "headers")
        assert CONTENT_LOCATION_RE.match(r.headers.get("content-location", "")), dict(r.headers)
        r = h.post("/runs/stream", json={**BODY, "stream_mode": "values"})
        assert r.status_code == 200, r.text
        assert CONTENT_LOCATION_RE.match(r.headers.get("content-location", "")), dict(r.headers)
        events = parse_sse(r.text)
        check_echo([e["data"] for e in events if e["event"] == "values"][-1], "headers")


def test_errors_are_json_the_sdk_can_read(rt):
    with rt.http() as h:
        r = h.get(f"/threads/{uuid.uuid4()}")
        assert r.status_code == 404
        body = r.json()
        msg = body.get("detail") or body.get("message") or (body.get("error") or {}).get("message")
        assert isinstance(msg, str) and msg, f"404 body must carry a message (detail/message/error.message): {body}"
