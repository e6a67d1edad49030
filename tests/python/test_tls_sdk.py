"""The data plane's HTTPS listener (docs/tls.md) with the official OpenAI
Python SDK: a private CA made here with the openssl CLI, the SDK trusting it
through its httpx client, and refusing the gateway without it."""

import ssl
import subprocess

import httpx
import openai
import pytest
from openai import OpenAI

from conftest import Running, binary

KEY = "tg-tls-sdk-test-key"
EXPECTED = 'Hello from mock-small, the Tollgate mock provider. You said: "hi"'


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def https_gateway(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tollgate-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "dp.key", "-out", "dp.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "dp.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "dp.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    (d / "gateway.yaml").write_text(
        "tenants:\n"
        "  - name: acme\n"
        "    providers:\n"
        "      - {name: builtin, kind: mock}\n"
        "    models:\n"
        "      - {name: mock-small, provider: builtin}\n"
        "    keys:\n"
        f"      - {{name: sdk, key: {KEY}}}\n"
    )
    run = Running([
        binary("tollgate-dp"), "--config", str(d / "gateway.yaml"), "--listen", "127.0.0.1:0",
        "--tls-cert", str(d / "dp.crt"), "--tls-key", str(d / "dp.key"), "--shutdown-grace-secs", "1",
    ])
    try:
        url = run.wait_for(r"tollgate-dp ready: (\S+)").group(1)
        yield {"base_url": url + "/v1", "ca": str(d / "ca.pem")}
    finally:
        run.stop()


def test_openai_sdk_over_https_with_the_gateway_ca(https_gateway):
    assert https_gateway["base_url"].startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=https_gateway["ca"])
    with httpx.Client(verify=ctx) as http:
        client = OpenAI(base_url=https_gateway["base_url"], api_key=KEY, max_retries=0, http_client=http)
        r = client.chat.completions.create(model="mock-small", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == EXPECTED
        chunks = list(client.chat.completions.create(
            model="mock-small", messages=[{"role": "user", "content": "hi"}], stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED


def test_openai_sdk_refuses_an_untrusted_gateway_certificate(https_gateway):
    client = OpenAI(base_url=https_gateway["base_url"], api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
