"""The operator flow of the README: point the gateway at a real
OpenAI-compatible provider with the `tollgate` CLI, call it with the SDK, and
read the usage back."""

import json
import time

from openai import OpenAI


def test_operator_flow(gateway, upstream, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(upstream["api_key"] + "\n")

    out = gateway.cli("tenant", "create", "acme").stdout
    assert "Created tenant acme" in out

    out = gateway.cli(
        "provider", "add", "--tenant", "acme", "--name", "openai-main", "--kind", "openai",
        "--base-url", upstream["base_url"], "--api-key-file", str(key_file),
    ).stdout
    assert "Added provider openai-main" in out
    # The key is never printed back, only its last 4 characters.
    assert upstream["api_key"] not in out
    assert "6789" in out

    listed = gateway.cli("provider", "list", "--tenant", "acme").stdout
    assert upstream["api_key"] not in listed

    gateway.cli(
        "model", "add", "--tenant", "acme", "--name", "gpt-4o-mini",
        "--provider", "openai-main", "--upstream-model", "gpt-4o-mini",
    )
    created = json.loads(
        gateway.cli("--json", "key", "create", "--tenant", "acme", "--name", "backend").stdout
    )
    secret = created["secret"]
    assert secret.startswith("tg-")
    # Listing shows a prefix, never the key.
    keys = gateway.cli("key", "list", "--tenant", "acme").stdout
    assert secret not in keys and "backend" in keys

    c = OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)
    # The new key reaches the data plane within moments of its creation.
    deadline = time.monotonic() + 10
    while True:
        try:
            r = c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "through the provider"}]
            )
            break
        except Exception:  # noqa: BLE001 - config still propagating
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert r.choices[0].message.content.endswith('You said: "through the provider"')
    assert r.model == "gpt-4o-mini"
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}], stream=True
        )
        if ch.choices
    )
    assert streamed.endswith('You said: "again"')

    # Usage: two calls on gpt-4o-mini for tenant acme.
    deadline = time.monotonic() + 15
    while True:
        rows = json.loads(gateway.cli("--json", "usage", "--tenant", "acme").stdout)
        calls = sum(r["calls"] for r in rows)
        if calls >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [r["model"] for r in rows] == ["gpt-4o-mini"]
    assert rows[0]["calls"] == 2
    assert rows[0]["errors"] == 0
    assert rows[0]["prompt_tokens"] == (3 + 3) + (1 + 3)
    table = gateway.cli("usage", "--tenant", "acme").stdout
    assert "gpt-4o-mini" in table and "CALLS" in table

    # Revoking the key locks it out.
    gateway.cli("key", "revoke", "--tenant", "acme", "--key", "backend")
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        try:
            c.models.list()
        except Exception as e:  # noqa: BLE001
            status = getattr(e, "status_code", None)
            if status == 401:
                break
        time.sleep(0.05)
    assert status == 401
