"""Guardrails configured with the `tollgate guardrail` CLI, seen by the
official SDKs: a blocked call is a 400 `BadRequestError` with code
`content_policy_violation` (OpenAI) and an `invalid_request_error`
(Anthropic, on /v1/messages); a redacted call goes through."""

import json
import time

import anthropic
import pytest
from openai import BadRequestError, OpenAI


def test_guardrail_block_seen_by_sdks(gateway, upstream, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(upstream["api_key"] + "\n")
    gateway.cli("tenant", "create", "guarded")
    gateway.cli(
        "provider", "add", "--tenant", "guarded", "--name", "up", "--kind", "openai",
        "--base-url", upstream["base_url"], "--api-key-file", str(key_file),
    )
    gateway.cli("model", "add", "--tenant", "guarded", "--name", "gpt-g", "--provider", "up")
    secret = json.loads(
        gateway.cli("--json", "key", "create", "--tenant", "guarded", "--name", "app").stdout
    )["secret"]

    # A bad regex is refused with the pattern's index.
    bad = gateway.cli(
        "guardrail", "add", "--tenant", "guarded", "--name", "bad", "--kind", "regex",
        "--settings", '{"patterns":["a(b"]}', check=False,
    )
    assert bad.returncode != 0 and "patterns[0]" in bad.stderr

    gateway.cli(
        "guardrail", "add", "--tenant", "guarded", "--name", "no-zeus", "--kind", "keyword",
        "--action", "block", "--settings", '{"words":["project zeus"]}',
    )
    gateway.cli("guardrail", "attach", "--tenant", "guarded", "--name", "no-zeus")
    listed = json.loads(gateway.cli("--json", "guardrail", "list", "--tenant", "guarded").stdout)
    assert [(g["name"], g["kind"], [a["scope"] for a in g["attachments"]]) for g in listed] == [
        ("no-zeus", "keyword", ["tenant"])
    ]

    c = OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0)
    deadline = time.monotonic() + 10
    while True:
        try:
            c.chat.completions.create(
                model="gpt-g", messages=[{"role": "user", "content": "Project Zeus status?"}]
            )
        except BadRequestError as e:
            err = e
            break
        except Exception:  # noqa: BLE001 - key or guardrail still propagating
            pass
        if time.monotonic() > deadline:
            pytest.fail("the guardrail never blocked the call")
        time.sleep(0.05)
    assert err.status_code == 400
    assert err.code == "content_policy_violation"
    assert err.type == "invalid_request_error"
    assert "no-zeus" in err.message
    # Other text passes.
    r = c.chat.completions.create(model="gpt-g", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content.endswith('You said: "hi"')

    a = anthropic.Anthropic(base_url=gateway.base_url.removesuffix("/v1"), api_key=secret, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as info:
        a.messages.create(
            model="gpt-g", max_tokens=20,
            messages=[{"role": "user", "content": "tell me about project ZEUS"}],
        )
    assert info.value.status_code == 400
    assert "no-zeus" in str(info.value)

    gateway.cli("guardrail", "detach", "--tenant", "guarded", "--name", "no-zeus")
    gateway.cli("guardrail", "delete", "--tenant", "guarded", "--name", "no-zeus")
    assert json.loads(gateway.cli("--json", "guardrail", "list", "--tenant", "guarded").stdout) == []
