"""The official `anthropic` and `openai` Python SDKs, unchanged, through the
gateway to a mock Anthropic provider and a mock OpenAI provider (the
`tollgate-mock` binary speaks both wire formats). Models are switched by name
only: `claude-mock` is served by Anthropic, `gpt-mock` by OpenAI,
`gemini-mock` by Gemini, `azure-mock` by Azure OpenAI (deployment
`mock-small`)."""

import json
import time

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

HELLO = 'Hello from mock-small, the Tollgate mock provider. You said: "hello gateway"'
TOOLS = [
    {
        "name": "lookup",
        "description": "Search the docs",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def claude(gateway, upstream, tmp_path_factory):
    """Tenant `claude-co` with an Anthropic and an OpenAI provider."""
    key_file = tmp_path_factory.mktemp("keys") / "key.txt"
    key_file.write_text(upstream["api_key"] + "\n")
    gateway.cli("tenant", "create", "claude-co")
    for name, kind in [
        ("anthropic-up", "anthropic"),
        ("openai-up", "openai"),
        ("gemini-up", "gemini"),
    ]:
        gateway.cli(
            "provider", "add", "--tenant", "claude-co", "--name", name, "--kind", kind,
            "--base-url", upstream["base_url"], "--api-key-file", str(key_file),
        )
    # Azure's base URL is the resource root; the api-version is a setting.
    gateway.cli(
        "provider", "add", "--tenant", "claude-co", "--name", "azure-up", "--kind", "azure",
        "--base-url", upstream["base_url"].rsplit("/v1", 1)[0], "--api-key-file", str(key_file),
        "--setting", "api_version=2024-10-21",
    )
    for model, provider, upstream_model in [
        ("claude-mock", "anthropic-up", "mock-small"),
        ("gpt-mock", "openai-up", "mock-small"),
        ("gemini-mock", "gemini-up", "mock-small"),
        ("azure-mock", "azure-up", "mock-small"),
        ("claude-overloaded", "anthropic-up", "mock-error-529"),
        ("embed-openai", "openai-up", "mock-embed"),
        ("embed-azure", "azure-up", "mock-embed"),
        ("embed-gemini", "gemini-up", "mock-embed"),
    ]:
        gateway.cli(
            "model", "add", "--tenant", "claude-co", "--name", model,
            "--provider", provider, "--upstream-model", upstream_model,
        )
    secret = json.loads(
        gateway.cli("--json", "key", "create", "--tenant", "claude-co", "--name", "sdk").stdout
    )["secret"]
    root = gateway.base_url.rsplit("/v1", 1)[0]
    client = Anthropic(base_url=root, api_key=secret, max_retries=0)
    # The new key and models reach the data plane within moments.
    deadline = time.monotonic() + 10
    while True:
        try:
            client.messages.create(
                model="gpt-mock",
                max_tokens=10,
                messages=[{"role": "user", "content": "ready?"}],
            )
            break
        except anthropic.APIStatusError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return {"root": root, "secret": secret, "client": client}


@pytest.mark.parametrize("model", ["claude-mock", "gpt-mock", "gemini-mock", "azure-mock"])
def test_messages(claude, model):
    m = claude["client"].messages.create(
        model=model,
        max_tokens=200,
        system="be brief",
        messages=[{"role": "user", "content": "hello gateway"}],
    )
    assert m.type == "message"
    assert m.content[0].type == "text"
    assert m.content[0].text == HELLO
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 10
    assert m.usage.output_tokens == 11


@pytest.mark.parametrize("model", ["claude-mock", "gpt-mock", "gemini-mock", "azure-mock"])
def test_streaming(claude, model):
    with claude["client"].messages.stream(
        model=model,
        max_tokens=200,
        system="be brief",
        messages=[{"role": "user", "content": "hello gateway"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == HELLO
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 11
    assert final.usage.input_tokens == 10


@pytest.mark.parametrize("model", ["claude-mock", "gpt-mock", "gemini-mock", "azure-mock"])
def test_tools(claude, model):
    client = claude["client"]
    question = [{"role": "user", "content": "find the docs"}]
    m = client.messages.create(model=model, max_tokens=200, tools=TOOLS, messages=question)
    assert m.stop_reason == "tool_use"
    call = [b for b in m.content if b.type == "tool_use"][0]
    assert call.name == "lookup"
    assert call.input == {"query": "find the docs"}

    # Streamed, the SDK assembles the input from input_json_delta pieces.
    with client.messages.stream(model=model, max_tokens=200, tools=TOOLS, messages=question) as s:
        final = s.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"][0]
    assert streamed.input == {"query": "find the docs"}
    assert final.stop_reason == "tool_use"

    answer = client.messages.create(
        model=model,
        max_tokens=200,
        tools=TOOLS,
        messages=question
        + [
            {"role": "assistant", "content": [b.model_dump() for b in m.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "42 results"}],
            },
        ],
    )
    assert answer.content[0].text.endswith('The tool said: "42 results"')


def test_anthropic_errors(claude):
    with pytest.raises(anthropic.AuthenticationError) as e:
        Anthropic(base_url=claude["root"], api_key="tg-wrong", max_retries=0).messages.create(
            model="claude-mock", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError):
        claude["client"].messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )

    with pytest.raises(anthropic.APIStatusError) as e:
        claude["client"].messages.create(
            model="claude-overloaded", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_openai_sdk_to_anthropic_provider(claude, gateway):
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    r = client.chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "hello gateway"}]
    )
    assert r.choices[0].message.content == HELLO
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 11

    chunks = list(
        client.chat.completions.create(
            model="claude-mock",
            messages=[{"role": "user", "content": "find the docs"}],
            tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
    )
    assert json.loads(args) == {"query": "find the docs"}
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.prompt_tokens == 6

    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(
            model="claude-overloaded", messages=[{"role": "user", "content": "x"}]
        )
    # OpenAI has no 529: an overloaded Anthropic is a 503 to OpenAI callers.
    assert e.value.status_code == 503


@pytest.mark.parametrize("model", ["claude-mock", "gemini-mock", "azure-mock"])
def test_openai_sdk_streams_from_translated_providers(claude, gateway, model):
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hello gateway"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == HELLO
    assert chunks[-1].usage.completion_tokens == 11


@pytest.mark.parametrize("model", ["embed-openai", "embed-azure", "embed-gemini"])
def test_embeddings_float_and_base64(claude, gateway, model):
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    # The SDK asks for base64 by default and decodes it.
    default = client.embeddings.create(model=model, input=["hello world", "other"])
    floats = client.embeddings.create(
        model=model, input=["hello world", "other"], encoding_format="float"
    )
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    for a, b in zip(default.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert default.data[0].embedding != default.data[1].embedding


@pytest.mark.parametrize("model", ["gpt-mock", "azure-mock", "claude-mock", "gemini-mock"])
def test_responses_api(claude, gateway, model):
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    r = client.responses.create(model=model, instructions="be brief", input="hello gateway")
    assert r.output_text == HELLO
    assert r.usage.input_tokens == 10 and r.usage.output_tokens == 11

    with client.responses.stream(model=model, instructions="be brief", input="hello gateway") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert deltas == HELLO
    assert final.output_text == HELLO

    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    r = client.responses.create(model=model, input="find the docs", tools=tools)
    call = [o for o in r.output if o.type == "function_call"][0]
    assert json.loads(call.arguments) == {"query": "find the docs"}


def test_responses_unsupported_feature_is_a_400(claude, gateway):
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude-mock", input="x", previous_response_id="resp_1")
    assert e.value.body["param"] == "previous_response_id"


def test_anthropic_sdk_against_the_builtin_mock(gateway):
    # The README's example: the dev gateway's built-in mock, through /v1/messages.
    a = Anthropic(base_url=gateway.base_url.rsplit("/v1", 1)[0], api_key=gateway.api_key, max_retries=0)
    m = a.messages.create(model="mock-small", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == 'Hello from mock-small, the Tollgate mock provider. You said: "hi"'
    with a.messages.stream(model="mock-small", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == m.content[0].text


def test_openai_sdk_json_schema_through_anthropic(claude, gateway):
    # Anthropic has no JSON mode: the schema becomes a forced tool whose
    # input is returned as the content, streamed or not.
    client = OpenAI(base_url=gateway.base_url, api_key=claude["secret"], max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "search", "schema": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
    r = client.chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "find the docs"}],
        response_format=fmt,
    )
    assert json.loads(r.choices[0].message.content) == {"query": "find the docs"}
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="claude-mock", messages=[{"role": "user", "content": "find the docs"}],
            response_format=fmt, stream=True,
        )
        if c.choices
    )
    assert json.loads(streamed) == {"query": "find the docs"}
