"""The README quickstart with the official OpenAI Python SDK, unchanged."""

import json

import openai
import pytest
from openai import OpenAI

EXPECTED = 'Hello from mock-small, the Tollgate mock provider. You said: "hi"'


def client(gw, **kw):
    return OpenAI(base_url=gw.base_url, api_key=gw.api_key, max_retries=0, **kw)


def test_chat_completion(gateway):
    r = client(gateway).chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content == EXPECTED
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 10
    assert r.usage.total_tokens == 14


def test_streamed_chat_completion(gateway):
    chunks = list(
        client(gateway).chat.completions.create(
            model="mock-small", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The caller did not ask for usage, so no usage-only chunk reaches it.
    assert all(c.choices for c in chunks)


def test_streamed_usage_when_asked(gateway):
    chunks = list(
        client(gateway).chat.completions.create(
            model="mock-small",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 10


def test_models_list(gateway):
    ids = sorted(m.id for m in client(gateway).models.list())
    assert ids == ["mock-large", "mock-small"]


def test_errors_map_to_sdk_exceptions(gateway):
    bad = OpenAI(base_url=gateway.base_url, api_key="tg-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="mock-small", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    assert e.value.response.headers.get("x-request-id")

    with pytest.raises(openai.NotFoundError) as e:
        client(gateway).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="mock-small", messages="not a list")


def test_raw_response_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="mock-large", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-tollgate-provider"] == "mock"
    assert raw.headers["x-request-id"]
    body = json.loads(raw.http_response.text)
    assert body["model"] == "mock-large"
