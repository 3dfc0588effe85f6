"""Errors as the SDKs see them (the right exception class) and as the wire carries them (OpenAI's
shape on the OpenAI routes, Anthropic's shape on /v1/messages)."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import openai
import pytest
from support import CHAT_MODELS

BAD_KEY = "sk-agentd-this-key-does-not-exist-0000000000000000"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_openai_error(r, status: int, etype: str | None = None) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"].strip()
    assert isinstance(err["type"], str) and err["type"]
    if etype is not None:
        assert err["type"] == etype, err
    return err


def assert_anthropic_error(r, status: int, etype: str) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body.get("type") == "error", body
    err = body["error"]
    assert err.get("type") == etype, body
    assert isinstance(err.get("message"), str) and err["message"].strip()
    return err


# --- authentication -------------------------------------------------------------------------


def test_openai_bad_key(agentd):
    # A fresh client (connection) per call: see test_connection_reusable_after_auth_rejection.
    with pytest.raises(openai.AuthenticationError) as ei:
        agentd.openai(api_key=BAD_KEY).chat.completions.create(model="mock", messages=user("hi"))
    assert ei.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        agentd.openai(api_key=BAD_KEY).models.list()
    with pytest.raises(openai.AuthenticationError):
        agentd.openai(api_key=BAD_KEY).embeddings.create(model="mock-embedding", input="x")


def test_anthropic_bad_key(agentd):
    client = agentd.anthropic(api_key=BAD_KEY)
    with pytest.raises(anthropic.AuthenticationError) as ei:
        client.messages.create(model="mock", max_tokens=16, messages=user("hi"))
    assert ei.value.status_code == 401
    bearer = agentd.anthropic(auth_token=BAD_KEY)
    with pytest.raises(anthropic.AuthenticationError):
        bearer.messages.create(model="mock", max_tokens=16, messages=user("hi"))


def test_auth_error_shapes(agentd):
    # One connection per request: reusing a connection after a 401 is test_connection_reusable_after_auth_rejection.
    for headers in ({}, {"Authorization": f"Bearer {BAD_KEY}"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        with agentd.http() as http:
            r = http.post("/v1/chat/completions", headers=headers, json={"model": "mock", "messages": user("hi")})
        assert_openai_error(r, 401, "authentication_error")
    for headers in ({}, {"x-api-key": BAD_KEY}, {"Authorization": f"Bearer {BAD_KEY}"}):
        with agentd.http() as http:
            r = http.post(
                "/v1/messages",
                headers={**ANTHROPIC_HEADERS, **headers},
                json={"model": "mock", "max_tokens": 16, "messages": user("hi")},
            )
        assert_anthropic_error(r, 401, "authentication_error")


def read_http_response(sock: socket.socket) -> tuple[str, dict[str, str]] | None:
    """One HTTP/1.1 response (status line, lower-cased headers; body skipped), or None on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return status, headers


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/chat/completions", {"model": "mock", "messages": user("hi")}),
        ("/v1/messages", {"model": "mock", "max_tokens": 16, "messages": user("hi")}),
        ("/v1/embeddings", {"model": "mock-embedding", "input": "hi"}),
    ],
    ids=["chat", "messages", "embeddings"],
)
def test_connection_reusable_after_auth_rejection(agentd, path, body):
    """A request refused by auth is answered before its body has arrived. The server must then
    read (drain) the body and keep serving the connection, or say `Connection: close`. Closing the
    keep-alive connection silently makes the client's next request on it fail with "Server
    disconnected without sending a response" (seen with httpx/the SDKs under load). Raw socket,
    so the body's late arrival is deterministic rather than a race."""
    payload = json.dumps(body).encode()
    host, port = agentd.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"anthropic-version: 2023-06-01\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
        )
        time.sleep(0.1)  # the body comes later, as it does from a slow or busy client
        sock.sendall(payload)
        first = read_http_response(sock)
        assert first is not None and first[0].startswith("HTTP/1.1 401"), first
        if first[1].get("connection", "").lower() == "close":
            return  # the server said so: a client will not reuse this connection
        try:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            second = read_http_response(sock)
        except OSError as e:
            second = f"{type(e).__name__}: {e}"
        assert isinstance(second, tuple) and second[0].startswith("HTTP/1.1 200"), (
            f"after a 401 without `Connection: close`, the next request on the connection got {second!r}: "
            "the server closed a connection it had advertised as reusable"
        )


def test_auth_error_does_not_echo_the_key(agentd):
    with agentd.http() as http:
        r = http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {BAD_KEY}"},
            json={"model": "mock", "messages": user("hi")},
        )
    assert r.status_code == 401
    assert BAD_KEY not in r.text


# --- unknown model --------------------------------------------------------------------------


def test_openai_unknown_model(oai):
    with pytest.raises(openai.NotFoundError) as ei:
        oai.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert "no-such-model" in ei.value.message
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="no-such-embedding-model", input="x")


def test_anthropic_unknown_model(ant):
    with pytest.raises(anthropic.NotFoundError) as ei:
        ant.messages.create(model="no-such-model", max_tokens=16, messages=user("hi"))
    assert "no-such-model" in ei.value.message


def test_unknown_model_shapes(agentd):
    with agentd.http() as http:
        auth = {"Authorization": f"Bearer {agentd.key}"}
        r = http.post("/v1/chat/completions", headers=auth, json={"model": "no-such-model", "messages": user("hi")})
        err = assert_openai_error(r, 404, "invalid_request_error")
        assert err["code"] == "model_not_found", err
        assert "no-such-model" in err["message"]
        r = http.post(
            "/v1/messages",
            headers={**ANTHROPIC_HEADERS, "x-api-key": agentd.key},
            json={"model": "no-such-model", "max_tokens": 16, "messages": user("hi")},
        )
        err = assert_anthropic_error(r, 404, "not_found_error")
        assert "no-such-model" in err["message"]


# --- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_openai_messages_not_a_list(oai, model):
    with pytest.raises(openai.BadRequestError) as ei:
        oai.chat.completions.create(model=model, messages=user("hi"), extra_body={"messages": "not a list"})
    assert ei.value.status_code == 400
    assert "messages" in ei.value.message, ei.value.message


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_messages_not_a_list(ant, model):
    with pytest.raises(anthropic.BadRequestError) as ei:
        ant.messages.create(model=model, max_tokens=16, messages=user("hi"), extra_body={"messages": "not a list"})
    assert ei.value.status_code == 400
    assert "messages" in ei.value.message, ei.value.message


def test_malformed_request_shapes(agentd):
    with agentd.http() as http:
        auth = {"Authorization": f"Bearer {agentd.key}", "content-type": "application/json"}
        r = http.post("/v1/chat/completions", headers=auth, content=b'{"model": "mock", "messages": [')
        assert_openai_error(r, 400, "invalid_request_error")

        r = http.post("/v1/chat/completions", headers=auth, json={"model": "mock", "messages": "nope"})
        err = assert_openai_error(r, 400, "invalid_request_error")
        assert "messages" in err["message"]

        r = http.post("/v1/chat/completions", headers=auth, json={"messages": user("hi")})
        err = assert_openai_error(r, 400, "invalid_request_error")
        assert "model" in err["message"]

        r = http.post("/v1/embeddings", headers=auth, json={"model": "mock-embedding"})
        err = assert_openai_error(r, 400, "invalid_request_error")
        assert "input" in err["message"]

        ant = {**ANTHROPIC_HEADERS, "x-api-key": agentd.key}
        r = http.post("/v1/messages", headers=ant, content=b'{"model": "mock", ')
        assert_anthropic_error(r, 400, "invalid_request_error")

        r = http.post("/v1/messages", headers=ant, json={"model": "mock", "max_tokens": 16, "messages": "nope"})
        err = assert_anthropic_error(r, 400, "invalid_request_error")
        assert "messages" in err["message"]

        r = http.post("/v1/messages", headers=ant, json={"model": "mock", "messages": user("hi")})
        err = assert_anthropic_error(r, 400, "invalid_request_error")
        assert "max_tokens" in err["message"]


def test_bad_request_reaches_no_upstream(agentd, oai):
    """Bad input is rejected by the gateway itself: nothing is sent to the provider."""
    agentd.clear_mock_requests()
    for model in ("gpt-up", "claude-up"):
        with pytest.raises(openai.BadRequestError):
            oai.chat.completions.create(model=model, messages=user("hi"), extra_body={"messages": "not a list"})
    assert [r for r in agentd.mock_requests() if r["method"] == "POST"] == []
