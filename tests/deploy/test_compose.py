"""deploy/compose/docker-compose.yml read statically: the topology of the
scale-out tests, health-gated start order, secrets as files, and flags and
variables that the programs really read."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import COMPOSE, ROOT, help_text
from test_docker import stages

PROGRAM_OF_TARGET = {"cp": "tollgate-cp", "dp": "tollgate-dp", "mock": "tollgate-mock"}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_topology():
    services = compose()["services"]
    assert set(services) == {"postgres", "etcd", "cp", "dp-1", "dp-2", "mock"}
    targets = {name: s["build"]["target"] for name, s in services.items() if "build" in s}
    assert targets == {"cp": "cp", "dp-1": "dp", "dp-2": "dp", "mock": "mock"}
    dockerfile_stages = stages()
    for s in services.values():
        if "build" in s:
            assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).resolve() == (
                ROOT / "deploy/docker/Dockerfile"
            )
            assert s["build"]["target"] in dockerfile_stages
        else:
            repo, _, tag = s["image"].rpartition(":")
            assert repo and re.search(r"\d", tag), f"unpinned image {s['image']}"


def test_every_service_has_a_health_check_and_start_waits_for_health():
    c = compose()
    services = c["services"]
    for name, s in services.items():
        assert s["healthcheck"]["test"][0] == "CMD", name
        for dep, cond in s.get("depends_on", {}).items():
            assert dep in services
            assert cond == {"condition": "service_healthy"}, (name, dep)
    assert set(services["cp"]["depends_on"]) == {"postgres", "etcd"}
    for dp in ("dp-1", "dp-2"):
        assert set(services[dp]["depends_on"]) == {"cp", "mock"}


def test_secrets_volumes_and_ports():
    c = compose()
    for name, s in c["services"].items():
        for secret in s.get("secrets", []):
            assert secret in c["secrets"], (name, secret)
        for v in s.get("volumes", []):
            assert v.split(":")[0] in c["volumes"], (name, v)
        for p in s.get("ports", []):
            assert p.startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"
        env = s.get("environment", {})
        for k, v in env.items():
            assert not re.search(r"(?i)password|secret|token$", k) or "FILE" in k, f"{name}: {k} in plain env"
    for secret in c["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    ignore = (COMPOSE.parent / ".gitignore").read_text()
    assert "secrets/" in ignore.split()


def test_flags_and_environment_exist_in_the_binaries():
    c = compose()
    for name, s in c["services"].items():
        target = s.get("build", {}).get("target")
        if target is None:
            continue
        prog = PROGRAM_OF_TARGET[target]
        text = help_text(prog)
        for k in s.get("environment", {}):
            if k.startswith("TOLLGATE_"):
                assert f"[env: {k}" in text, f"{name}: {prog} reads no {k}"
        for flag in [a for a in s.get("command", []) if a.startswith("--")]:
            assert re.search(rf"\s{flag}[\s=]", text), f"{name}: {prog} has no flag {flag}"
        if prog == "tollgate-cp":
            script = "\n".join(s["entrypoint"])
            # Variables the entrypoint exports: TOLLGATE_DP_TOKEN is hidden in
            # --help (test_binaries proves the CP reads it).
            for var in re.findall(r"export (TOLLGATE_[A-Z_]+)=", script):
                assert var == "TOLLGATE_DP_TOKEN" or f"[env: {var}" in text, var
            assert re.search(r"exec tollgate-cp \"\$\$@\"", script)


def test_data_planes_reach_the_control_plane_service():
    c = compose()["services"]
    cp_port = c["cp"]["environment"]["TOLLGATE_CP_LISTEN"].rsplit(":", 1)[1]
    for dp in ("dp-1", "dp-2"):
        env = c[dp]["environment"]
        assert env["TOLLGATE_CP_URL"] == f"http://cp:{cp_port}"
        assert env["TOLLGATE_DP_TOKEN_FILE"] == "/run/secrets/dp_token"
        assert "dp_token" in c[dp]["secrets"] and "dp_token" in c["cp"]["secrets"]
        listen = env["TOLLGATE_DP_LISTEN"].rsplit(":", 1)[1]
        assert c[dp]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{listen}/readyz"


def test_init_secrets_writes_valid_secrets_once(tmp_path):
    script = tmp_path / "init-secrets.sh"
    shutil.copy(COMPOSE.parent / "init-secrets.sh", script)
    first = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    assert first.stdout.count("wrote") == 3
    secrets = tmp_path / "secrets"
    assert (secrets.stat().st_mode & 0o777) == 0o700
    assert len(base64.b64decode((secrets / "master.key").read_text().strip())) == 32
    token = (secrets / "dp.token").read_text().strip()
    assert re.fullmatch(r"tgdp-[A-Za-z0-9]{43}", token)
    assert len((secrets / "postgres.password").read_text().strip()) == 32
    second = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    assert second.stdout.count("kept") == 3
    assert (secrets / "dp.token").read_text().strip() == token


def test_compose_schema_accepts_the_file(tmp_path):
    """Compose's own schema validation (Debian's docker-compose; run.sh
    installs it). It needs no daemon."""
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed: tests/deploy/run.sh installs it")
        pytest.skip("docker-compose not installed")
    r = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
