"""Rate limits seen through the official `openai` SDK: a 429 from a limit
carries `Retry-After` (seconds) and the `x-ratelimit-*` headers, and the SDK's
own retry waits it out and then succeeds. The limit is set with the CLI."""

import json
import time

import httpx
import openai
import pytest
from openai import OpenAI


@pytest.fixture(scope="module")
def limited(gateway, upstream, tmp_path_factory):
    """Tenant `limit-co` whose key may make one request per second."""
    key_file = tmp_path_factory.mktemp("limit-keys") / "key.txt"
    key_file.write_text(upstream["api_key"] + "\n")
    gateway.cli("tenant", "create", "limit-co")
    gateway.cli(
        "provider", "add", "--tenant", "limit-co", "--name", "up", "--kind", "openai",
        "--base-url", upstream["base_url"], "--api-key-file", str(key_file),
    )
    gateway.cli(
        "model", "add", "--tenant", "limit-co", "--name", "gpt-limited",
        "--provider", "up", "--upstream-model", "mock-small",
    )
    secret = json.loads(
        gateway.cli("--json", "key", "create", "--tenant", "limit-co", "--name", "sdk").stdout
    )["secret"]
    shown = json.loads(
        gateway.cli("--json", "limit", "set", "--tenant", "limit-co", "--key", "sdk", "--rps", "1").stdout
    )
    assert shown[0]["scope"] == "key" and shown[0]["effective"]["rps"] == 1
    # Wait until the key and its limit reach the data plane.
    deadline = time.monotonic() + 10
    while True:
        r = httpx.post(
            gateway.base_url + "/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={"model": "gpt-limited", "messages": [{"role": "user", "content": "ready?"}]},
        )
        if r.headers.get("x-ratelimit-limit-requests") == "1":
            break
        assert time.monotonic() < deadline, (r.status_code, r.text)
        time.sleep(0.05)
    return secret


def test_a_429_with_retry_after_is_retried_by_the_sdk_and_succeeds(gateway, limited):
    raw_client = OpenAI(base_url=gateway.base_url, api_key=limited, max_retries=0)
    # Use up this second's request, then see the refusal as the SDK does.
    refused = None
    for _ in range(3):
        try:
            raw_client.chat.completions.create(
                model="gpt-limited", messages=[{"role": "user", "content": "one"}]
            )
        except openai.RateLimitError as e:
            refused = e
            break
    assert refused is not None, "a second call within one second was not refused"
    assert refused.status_code == 429
    assert refused.code == "rate_limit_exceeded"
    assert refused.response.headers["retry-after"] == "1"
    assert refused.response.headers["x-ratelimit-limit-requests"] == "1"
    assert refused.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.response.headers["x-ratelimit-reset-requests"].endswith("s")

    # The SDK's default retry honours Retry-After and then gets through.
    # Early in a second, use up its request so the SDK's first attempt is
    # refused for certain.
    while time.time() % 1 > 0.3:
        time.sleep(0.02)
    try:
        raw_client.chat.completions.create(
            model="gpt-limited", messages=[{"role": "user", "content": "use it up"}]
        )
    except openai.RateLimitError:
        pass
    client = OpenAI(base_url=gateway.base_url, api_key=limited, max_retries=3)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-limited", messages=[{"role": "user", "content": "again"}]
    )
    elapsed = time.monotonic() - started
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.retries_taken >= 1, "the first attempt should have been refused"
    assert elapsed >= 0.5, elapsed
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
