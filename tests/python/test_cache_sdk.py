"""The response cache seen through the official SDKs: a cached answer
replayed as a stream must parse exactly like a live one (`openai` chunk
streams, `anthropic` event streams), with the `x-tollgate-cache` header."""

import json
import time

import pytest
from anthropic import Anthropic
from openai import OpenAI

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Search the docs",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def cached(gateway, upstream, tmp_path_factory):
    """Tenant `cache-co` with caching on, an OpenAI and an Anthropic provider."""
    key_file = tmp_path_factory.mktemp("cache-keys") / "key.txt"
    key_file.write_text(upstream["api_key"] + "\n")
    gateway.cli("tenant", "create", "cache-co")
    for name, kind in [("openai-up", "openai"), ("anthropic-up", "anthropic")]:
        gateway.cli(
            "provider", "add", "--tenant", "cache-co", "--name", name, "--kind", kind,
            "--base-url", upstream["base_url"], "--api-key-file", str(key_file),
        )
    for model, provider in [("gpt-cached", "openai-up"), ("claude-cached", "anthropic-up")]:
        gateway.cli(
            "model", "add", "--tenant", "cache-co", "--name", model,
            "--provider", provider, "--upstream-model", "mock-small",
        )
    gateway.cli("cache", "set", "--tenant", "cache-co", "--ttl-secs", "600")
    shown = json.loads(gateway.cli("--json", "cache", "show", "--tenant", "cache-co").stdout)
    assert shown[0]["scope"] == "tenant" and shown[0]["enabled"] is True
    secret = json.loads(
        gateway.cli("--json", "key", "create", "--tenant", "cache-co", "--name", "sdk").stdout
    )["secret"]
    client = OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)
    # Wait until the key, models and policy reach the data plane.
    deadline = time.monotonic() + 10
    while True:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-cached",
                messages=[{"role": "user", "content": "ready?"}],
                extra_headers={"x-tollgate-cache": "refresh"},
            )
            if raw.headers.get("x-tollgate-cache") == "miss":
                break
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the cache policy never reached the data plane")
        time.sleep(0.05)
    root = gateway.base_url.rsplit("/v1", 1)[0]
    return {
        "openai": client,
        "anthropic": Anthropic(base_url=root, api_key=secret, max_retries=0),
    }


def test_openai_stream_replay_parses_like_a_live_stream(cached):
    client = cached["openai"]
    messages = [{"role": "user", "content": "replay me through the openai sdk"}]
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-cached", messages=messages, temperature=0
    )
    assert raw.headers["x-tollgate-cache"] == "miss"
    live = raw.parse()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-cached",
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-tollgate-cache"] == "hit"
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == live.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [live.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == live.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == live.usage.prompt_tokens


def test_openai_tool_call_replay(cached):
    client = cached["openai"]
    messages = [{"role": "user", "content": "look up the cache docs"}]
    live = client.chat.completions.create(model="gpt-cached", messages=messages, tools=TOOLS)
    assert live.choices[0].finish_reason == "tool_calls"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-cached", messages=messages, tools=TOOLS, stream=True
    )
    assert raw.headers["x-tollgate-cache"] == "hit"
    calls = {}
    for c in raw.parse():
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = tc.id or entry["id"]
            entry["name"] += (tc.function.name or "") if tc.function else ""
            entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    want = live.choices[0].message.tool_calls[0]
    assert calls[0] == {
        "id": want.id,
        "name": want.function.name,
        "arguments": want.function.arguments,
    }
    assert json.loads(calls[0]["arguments"])  # well-formed JSON arguments


@pytest.mark.parametrize("model", ["claude-cached", "gpt-cached"])
def test_anthropic_stream_replay_parses_like_a_live_stream(cached, model):
    client = cached["anthropic"]
    messages = [{"role": "user", "content": f"replay me through the anthropic sdk ({model})"}]
    raw = client.messages.with_raw_response.create(model=model, max_tokens=200, messages=messages)
    assert raw.headers["x-tollgate-cache"] == "miss"
    live = raw.parse()
    with client.messages.stream(model=model, max_tokens=200, messages=messages) as stream:
        assert stream.response.headers["x-tollgate-cache"] == "hit"
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == live.content[0].text
    assert final.stop_reason == live.stop_reason
    assert final.usage.output_tokens == live.usage.output_tokens
    assert final.usage.input_tokens == live.usage.input_tokens
