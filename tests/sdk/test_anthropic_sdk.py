"""The official `anthropic` SDK against the gateway's `/v1/messages`, for every chat model (in-process
mock, OpenAI upstream translated to the Anthropic shape, Anthropic upstream)."""

from __future__ import annotations

import json

import pytest
from support import CHAT_MODELS, parse_json_events, sse_events

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
TIME_TOOL = {
    "name": "get_time",
    "description": "Current time in a timezone.",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def text_of(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_plain(ant, model):
    msg = ant.messages.create(model=model, max_tokens=256, messages=user("Say hello to the SDK tests."))
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.id
    assert msg.stop_reason == "end_turn"
    assert [b.type for b in msg.content] == ["text"]
    assert text_of(msg).strip()
    assert msg.usage.input_tokens > 0
    assert msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_content_blocks_and_determinism(ant, model):
    """Content given as a list of text blocks is the same prompt as the plain string."""
    as_string = ant.messages.create(model=model, max_tokens=256, messages=user("Tell me about lighthouses."))
    as_blocks = ant.messages.create(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Tell me about lighthouses."}]}],
    )
    other = ant.messages.create(model=model, max_tokens=256, messages=user("Explain quantum tunnelling briefly."))
    assert text_of(as_string) == text_of(as_blocks)
    assert text_of(as_string) != text_of(other)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_stream_helper(ant, model):
    messages = user("Stream a short answer about rivers.")
    with ant.messages.stream(model=model, max_tokens=256, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip()
    assert text_of(final) == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0

    plain = ant.messages.create(model=model, max_tokens=256, messages=messages)
    assert text == text_of(plain)
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_stream_true_events(ant, model):
    events = list(ant.messages.create(model=model, max_tokens=256, messages=user("Events please."), stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types[-2] == "message_delta"
    assert "content_block_start" in types and "content_block_stop" in types
    assert types.index("content_block_start") < types.index("content_block_delta") < types.index("content_block_stop")
    start = events[0].message
    assert start.role == "assistant" and start.content == []
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text.strip()
    (delta,) = [e for e in events if e.type == "message_delta"]
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens > 0
    # Input tokens belong in message_start; a translated stream may only learn them at the end
    # and report them (cumulatively) in message_delta instead. Either way they must arrive.
    assert max(start.usage.input_tokens, delta.usage.input_tokens or 0) > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_messages_stream_raw_sse_framing(agentd, model):
    """What the SDK hides (it silently drops events without an `event:` line): every frame is named,
    and the name matches the JSON `type`."""
    with agentd.http() as http:
        with http.stream(
            "POST",
            "/v1/messages",
            headers={"x-api-key": agentd.key, "anthropic-version": "2023-06-01"},
            json={"model": model, "max_tokens": 64, "messages": user("Raw framing check."), "stream": True},
        ) as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = r.read().decode()
    events = sse_events(raw)
    payloads = parse_json_events(events)
    for (name, _), payload in zip(events, payloads):
        assert name == payload["type"], f"event name {name!r} != data type {payload['type']!r}"
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    assert "[DONE]" not in raw


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_system_prompt(agentd, ant, model):
    """A system prompt (string or blocks) reaches the model: it counts as input and, on upstream
    providers, is sent in the upstream's own shape."""
    question = user("What is your role?")
    system = "You are a terse assistant that answers in one sentence about astronomy."
    bare = ant.messages.create(model=model, max_tokens=64, messages=question)
    agentd.clear_mock_requests()
    with_str = ant.messages.create(model=model, max_tokens=64, system=system, messages=question)
    # Only the model calls: the gateway may also talk to the upstream for other reasons (probes).
    upstream = [r for r in agentd.mock_requests() if r["method"] == "POST"]
    with_blocks = ant.messages.create(
        model=model, max_tokens=64, system=[{"type": "text", "text": system}], messages=question
    )
    assert with_str.stop_reason == "end_turn"
    assert with_str.usage.input_tokens > bare.usage.input_tokens
    assert with_blocks.usage.input_tokens == with_str.usage.input_tokens

    if model == "mock":
        assert upstream == [], "the in-process mock must not call the upstream server"
        return
    (req,) = upstream
    body = req["body"]
    if model == "claude-up":
        assert req["path"] == "/v1/messages"
        sent = body["system"]
        sent_text = sent if isinstance(sent, str) else "".join(b["text"] for b in sent)
        assert sent_text == system
    else:
        assert req["path"] == "/v1/chat/completions"
        assert body["messages"][0]["role"] in ("system", "developer")
        content = body["messages"][0]["content"]
        sent_text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        assert sent_text == system


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tools(ant, model):
    msg = ant.messages.create(
        model=model,
        max_tokens=256,
        messages=user("What's the weather in Paris?"),
        # The forced tool is not the first one, so the choice has to be honoured end to end.
        tools=[TIME_TOOL, WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.id
    assert use.name == "get_weather"
    assert isinstance(use.input, dict)
    assert isinstance(use.input.get("city"), str)
    assert use.input.get("unit") in ("celsius", "fahrenheit")


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tools_streamed(ant, model):
    with ant.messages.stream(
        model=model, max_tokens=256, messages=user("What's the weather in Paris?"), tools=[WEATHER_TOOL]
    ) as stream:
        partial = "".join(
            e.delta.partial_json for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        )
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = [b for b in final.content if b.type == "tool_use"]
    assert use.name == "get_weather"
    assert json.loads(partial) == use.input
    assert isinstance(use.input.get("city"), str)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_result_round_trip(ant, model):
    messages = user("What's the weather in Paris?")
    first = ant.messages.create(model=model, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    messages = messages + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny-17C in Paris"}],
        },
    ]
    second = ant.messages.create(model=model, max_tokens=256, messages=messages, tools=[WEATHER_TOOL])
    assert second.stop_reason == "end_turn"
    assert not [b for b in second.content if b.type == "tool_use"]
    assert "Sunny-17C" in text_of(second), text_of(second)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_max_tokens_small(ant, model):
    msg = ant.messages.create(model=model, max_tokens=3, messages=user("Write a long essay about the sea."))
    assert msg.stop_reason == "max_tokens"
    assert 0 < msg.usage.output_tokens <= 3
    assert text_of(msg)


def test_bearer_auth_is_accepted(agentd):
    """Anthropic-style clients may send the key as `Authorization: Bearer` instead of `x-api-key`."""
    client = agentd.anthropic(auth_token=agentd.key)
    msg = client.messages.create(model="mock", max_tokens=32, messages=user("hi"))
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert text_of(msg)


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_choice_any_and_none(ant, model):
    any_ = ant.messages.create(
        model=model,
        max_tokens=256,
        messages=user("Hello there."),
        tools=[TIME_TOOL],
        tool_choice={"type": "any"},
    )
    assert any_.stop_reason == "tool_use"
    assert [b.name for b in any_.content if b.type == "tool_use"] == ["get_time"]

    none = ant.messages.create(
        model=model,
        max_tokens=256,
        messages=user("What time is it in Tokyo?"),
        tools=[TIME_TOOL],
        tool_choice={"type": "none"},
    )
    assert none.stop_reason == "end_turn"
    assert [b.type for b in none.content] == ["text"]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_stop_sequences(ant, model):
    """`stop_sequences` cuts the answer right before the sequence, and says which one matched."""
    prompt = user("Tell me a story about a lighthouse keeper.")
    full = text_of(ant.messages.create(model=model, max_tokens=256, messages=prompt))
    words = full.split()
    stop_word = words[len(words) // 2]
    cut = ant.messages.create(model=model, max_tokens=256, messages=prompt, stop_sequences=[stop_word])
    assert text_of(cut) == full[: full.index(stop_word)], (text_of(cut), full, stop_word)
    if model == "gpt-up":
        # An OpenAI upstream answers finish_reason "stop" both for a natural end and for a stop
        # sequence, so a translating gateway cannot tell which: either answer is honest.
        assert (cut.stop_reason, cut.stop_sequence) in (("stop_sequence", stop_word), ("end_turn", None))
        return
    assert cut.stop_reason == "stop_sequence", (
        f"stop_reason={cut.stop_reason!r}: the answer was cut by the stop sequence {stop_word!r}, "
        "so Anthropic clients expect stop_reason 'stop_sequence'"
    )
    assert cut.stop_sequence == stop_word
