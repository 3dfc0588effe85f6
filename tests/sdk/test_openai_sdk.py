"""The official `openai` SDK against the gateway, for every chat model (in-process mock, OpenAI
upstream, Anthropic upstream translated to the OpenAI shape)."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import pytest
from support import CHAT_MODELS, EMBEDDING_MODEL, parse_json_events, sse_events

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
# A second tool, so "the model picked the right one" means something.
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_plain(oai, model):
    resp = oai.chat.completions.create(model=model, messages=user("Say hello to the SDK tests."))
    assert resp.object == "chat.completion"
    assert resp.id
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_is_deterministic_and_prompt_dependent(oai, model):
    """The mock answers deterministically, so two identical calls must agree through every path,
    and a different prompt must give a different answer (the prompt really reached the model)."""
    a = oai.chat.completions.create(model=model, messages=user("Tell me about lighthouses."))
    b = oai.chat.completions.create(model=model, messages=user("Tell me about lighthouses."))
    c = oai.chat.completions.create(model=model, messages=user("Explain quantum tunnelling briefly."))
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream(oai, model):
    messages = user("Stream a short answer about rivers.")
    chunks = list(oai.chat.completions.create(model=model, messages=messages, stream=True))
    assert chunks, "no chunks"
    for ch in chunks:
        assert ch.object == "chat.completion.chunk"
        assert ch.usage is None, "usage chunk sent without stream_options.include_usage"
        assert len(ch.choices) == 1, f"chunk without exactly one choice: {ch}"
    assert len({ch.id for ch in chunks}) == 1, "all chunks of one completion share its id"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text.strip()
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason is not None]
    assert finishes == ["stop"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"

    # Streaming and non-streaming must say the same thing (the mock is deterministic).
    plain = oai.chat.completions.create(model=model, messages=messages)
    assert text == plain.choices[0].message.content


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream_include_usage(oai, model):
    messages = user("Stream with usage please.")
    chunks = list(
        oai.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == [], "the usage chunk has empty choices"
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    for ch in chunks[:-1]:
        assert ch.usage is None, "only the last chunk carries usage"
        assert len(ch.choices) == 1
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks[:-1])
    finishes = [ch.choices[0].finish_reason for ch in chunks[:-1] if ch.choices[0].finish_reason]
    assert finishes == ["stop"]

    plain = oai.chat.completions.create(model=model, messages=messages)
    assert text == plain.choices[0].message.content
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_stream_raw_sse_framing(agentd, model):
    """What the SDK hides: `data: {json}` frames, a `data: [DONE]` terminator, SSE content type."""
    with agentd.http() as http:
        with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {agentd.key}"},
            json={"model": model, "messages": user("Raw framing check."), "stream": True},
        ) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = r.read().decode()
    events = sse_events(raw)
    assert events[-1] == (None, "[DONE]"), f"stream must end with data: [DONE], got {events[-1]!r}"
    chunks = parse_json_events(events[:-1])
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(name is None for name, _ in events), "OpenAI streams use unnamed events"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tools_plain(oai, model):
    resp = oai.chat.completions.create(
        model=model,
        messages=user("What is the weather in Paris?"),
        # The forced tool is not the first one, so the choice has to be honoured end to end.
        tools=[TIME_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.id
    assert call.type == "function"
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict)
    assert isinstance(args.get("city"), str)
    assert args.get("unit") in ("celsius", "fahrenheit")


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tools_auto_picks_a_declared_tool(oai, model):
    resp = oai.chat.completions.create(
        model=model, messages=user("What time is it in Tokyo?"), tools=[TIME_TOOL], tool_choice="auto"
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    (call,) = resp.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    assert isinstance(json.loads(call.function.arguments).get("tz"), str)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tools_streamed(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=user("What is the weather in Paris?"),
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict] = {}
    finishes = []
    fragments = 0
    for ch in stream:
        if not ch.choices:
            continue
        c = ch.choices[0]
        if c.finish_reason:
            finishes.append(c.finish_reason)
        for tc in c.delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            if tc.id:
                assert slot["id"] is None, "a tool call's id is sent once, in its first delta"
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["args"] += tc.function.arguments
                fragments += 1
    assert finishes == ["tool_calls"]
    assert list(calls) == [0]
    call = calls[0]
    assert call["id"] and call["name"] == "get_weather"
    args = json.loads(call["args"])
    assert isinstance(args, dict) and isinstance(args.get("city"), str)
    assert fragments >= 1


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_round_trip(oai, model):
    messages = user("What is the weather in Paris?")
    first = oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    messages = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny-17C in Paris"},
    ]
    second = oai.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    choice = second.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert "Sunny-17C" in choice.message.content, choice.message.content


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_max_tokens_length(oai, model):
    resp = oai.chat.completions.create(model=model, messages=user("Write a long essay about the sea."), max_tokens=3)
    assert resp.choices[0].finish_reason == "length"
    assert 0 < resp.usage.completion_tokens <= 3
    assert resp.choices[0].message.content


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_max_completion_tokens_length_streamed(oai, model):
    stream = oai.chat.completions.create(
        model=model,
        messages=user("Write a long essay about the sea."),
        max_completion_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert 0 < chunks[-1].usage.completion_tokens <= 3


def test_models_list(oai):
    models = list(oai.models.list())
    ids = {m.id for m in models}
    assert {"mock", "gpt-up", "claude-up", "mock-embedding"} <= ids, ids
    for m in models:
        assert m.object == "model"
        assert m.owned_by
        assert isinstance(m.created, int)


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_embeddings_float(oai):
    a = oai.embeddings.create(model=EMBEDDING_MODEL, input="the quick brown fox", encoding_format="float")
    b = oai.embeddings.create(model=EMBEDDING_MODEL, input="the quick brown fox", encoding_format="float")
    c = oai.embeddings.create(model=EMBEDDING_MODEL, input="a lazy dog", encoding_format="float")
    va, vb, vc = a.data[0].embedding, b.data[0].embedding, c.data[0].embedding
    assert a.object == "list" and a.data[0].object == "embedding" and a.data[0].index == 0
    assert len(va) > 0 and all(isinstance(x, float) for x in va)
    assert va == vb
    assert va != vc and len(va) == len(vc)
    assert abs(norm(va) - 1.0) < 1e-3
    assert a.usage.prompt_tokens > 0 and a.usage.total_tokens >= a.usage.prompt_tokens


def test_embeddings_batch_keeps_order(oai):
    single = [
        oai.embeddings.create(model=EMBEDDING_MODEL, input=t, encoding_format="float").data[0].embedding
        for t in ("alpha", "beta")
    ]
    batch = oai.embeddings.create(model=EMBEDDING_MODEL, input=["alpha", "beta"], encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1]
    assert [d.embedding for d in batch.data] == single


def test_embeddings_sdk_default_base64(oai):
    """The SDK asks for base64 by default and decodes it itself: the result must match the floats."""
    floats = oai.embeddings.create(model=EMBEDDING_MODEL, input="the quick brown fox", encoding_format="float")
    dflt1 = oai.embeddings.create(model=EMBEDDING_MODEL, input="the quick brown fox")
    dflt2 = oai.embeddings.create(model=EMBEDDING_MODEL, input="the quick brown fox")
    other = oai.embeddings.create(model=EMBEDDING_MODEL, input="something else entirely")
    v = dflt1.data[0].embedding
    assert isinstance(v, list) and len(v) == len(floats.data[0].embedding)
    assert v == dflt2.data[0].embedding
    assert v != other.data[0].embedding
    for x, y in zip(v, floats.data[0].embedding):
        assert abs(x - y) < 1e-6


def test_embeddings_raw_base64_is_little_endian_f32(agentd):
    with agentd.http() as http:
        h = {"Authorization": f"Bearer {agentd.key}"}
        f = http.post("/v1/embeddings", headers=h, json={"model": EMBEDDING_MODEL, "input": "xyz", "encoding_format": "float"})
        b = http.post("/v1/embeddings", headers=h, json={"model": EMBEDDING_MODEL, "input": "xyz", "encoding_format": "base64"})
    assert f.status_code == 200, f.text
    assert b.status_code == 200, b.text
    vec = f.json()["data"][0]["embedding"]
    blob = b.json()["data"][0]["embedding"]
    assert isinstance(blob, str)
    raw = base64.b64decode(blob)
    assert len(raw) == 4 * len(vec)
    decoded = struct.unpack(f"<{len(vec)}f", raw)
    for x, y in zip(decoded, vec):
        assert abs(x - y) < 1e-6


def test_unauthenticated_models_request_is_rejected(agentd):
    r = httpx.get(f"{agentd.url}/v1/models", timeout=5.0)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_system_message_and_content_parts(agentd, oai, model):
    """A system message counts as input and reaches each upstream in its own shape; content given
    as a list of text parts is the same prompt as the plain string."""
    system = "You are a terse assistant that answers in one sentence about astronomy."
    question = "Tell me about lighthouses."
    bare = oai.chat.completions.create(model=model, messages=user(question))
    agentd.clear_mock_requests()
    as_string = oai.chat.completions.create(
        model=model, messages=[{"role": "system", "content": system}, {"role": "user", "content": question}]
    )
    upstream = [r for r in agentd.mock_requests() if r["method"] == "POST"]
    as_parts = oai.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": [{"type": "text", "text": question}]},
        ],
    )
    assert as_string.usage.prompt_tokens > bare.usage.prompt_tokens
    assert as_parts.usage.prompt_tokens == as_string.usage.prompt_tokens
    assert as_parts.choices[0].message.content == as_string.choices[0].message.content

    if model == "mock":
        assert upstream == [], "the in-process mock must not call the upstream server"
        return
    (req,) = upstream
    body = req["body"]
    if model == "claude-up":
        assert req["path"] == "/v1/messages"
        sent = body["system"]
        assert (sent if isinstance(sent, str) else "".join(b["text"] for b in sent)) == system
        assert [m["role"] for m in body["messages"]] == ["user"], "Anthropic has no system role in messages"
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0, "Anthropic requires max_tokens"
    else:
        assert req["path"] == "/v1/chat/completions"
        assert [m["role"] for m in body["messages"]] == ["system", "user"]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_concurrent_streams(agentd, model):
    """Several streams at once through one path each get their own, complete answer."""
    from concurrent.futures import ThreadPoolExecutor

    client = agentd.openai()
    prompts = [f"Concurrent prompt number {i} about {topic}." for i, topic in enumerate(["tea", "ships", "owls", "rain"])]

    def streamed(prompt: str) -> str:
        chunks = client.chat.completions.create(model=model, messages=user(prompt), stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        texts = list(pool.map(streamed, prompts))
    expected = [client.chat.completions.create(model=model, messages=user(p)).choices[0].message.content for p in prompts]
    assert texts == expected
    assert len(set(texts)) == len(prompts)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_choice_none_and_required(oai, model):
    none = oai.chat.completions.create(
        model=model, messages=user("What time is it in Tokyo?"), tools=[TIME_TOOL], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop"
    assert not none.choices[0].message.tool_calls
    assert none.choices[0].message.content

    required = oai.chat.completions.create(
        model=model, messages=user("Hello there."), tools=[TIME_TOOL], tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in required.choices[0].message.tool_calls] == ["get_time"]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stop_sequence(oai, model):
    """`stop` cuts the answer right before the first occurrence of the sequence (not included)."""
    prompt = user("Tell me a story about a lighthouse keeper.")
    full = oai.chat.completions.create(model=model, messages=prompt).choices[0].message.content
    words = full.split()
    stop_word = words[len(words) // 2]
    cut = oai.chat.completions.create(model=model, messages=prompt, stop=[stop_word])
    content = cut.choices[0].message.content
    assert cut.choices[0].finish_reason == "stop"
    assert stop_word not in content
    assert content == full[: full.index(stop_word)], (content, full, stop_word)
