"""The images' configuration run for real, without a container engine: the
debug binaries started with each final stage's ENV and CMD from the
Dockerfile (ports moved to free ones), and each stage's HEALTHCHECK command
run against them."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time

import pytest
from conftest import ROOT, binary
from test_docker import stages

SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.sh"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stage_config(stage: str) -> tuple[dict[str, str], list[str], str]:
    """(ENV, CMD, HEALTHCHECK URL) of a final stage, runtime base included."""
    st = stages()
    env: dict[str, str] = {}
    for word, rest in st["runtime"] + st[stage]:
        if word == "ENV":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                env[k] = v
    cmd = json.loads([r for w, r in st[stage] if w == "CMD"][-1])
    check = [r for w, r in st[stage] if w == "HEALTHCHECK"][-1]
    url = re.search(r'"(http://[^"]+)"', check).group(1)
    return env, cmd, url


def healthcheck(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), url], capture_output=True, text=True, timeout=20)


def start(prog: str, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(binary(prog)), *args],
        env={"PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    if not line.startswith(f"{prog} ready: "):
        proc.kill()
        pytest.fail(f"{prog} did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc, line.split(": ", 1)[1]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def with_port(url: str, port: int) -> str:
    return re.sub(r":\d+/", f":{port}/", url, count=1)


def test_cp_image_config_refuses_plaintext_until_allowed(tmp_path):
    env, cmd, _ = stage_config("cp")
    env.update(TOLLGATE_DATA_DIR=str(tmp_path), TOLLGATE_CP_LISTEN=f"0.0.0.0:{free_port()}")
    r = subprocess.run([str(binary("tollgate-cp")), *cmd], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "TOLLGATE_CP_ALLOW_PLAINTEXT" in r.stderr or "--allow-plaintext" in r.stderr


def test_cp_dp_and_mock_images_pass_their_health_checks(tmp_path):
    procs = []
    try:
        # Control plane as the image runs it, with the opt-in compose and the
        # chart set, the master key from a secret file and the DP token in env.
        env, cmd, cp_check = stage_config("cp")
        cp_port = free_port()
        key = tmp_path / "master.key"
        key.write_text("bWFzdGVyLWtleS1vZi0zMi1ieXRlcy1leGFjdGx5ISE=\n")
        env.update(
            TOLLGATE_DATA_DIR=str(tmp_path / "cp"),
            TOLLGATE_CP_LISTEN=f"0.0.0.0:{cp_port}",
            TOLLGATE_CP_ALLOW_PLAINTEXT="true",
            TOLLGATE_MASTER_KEY_FILE=str(key),
            TOLLGATE_DP_TOKEN="tgdp-runtime-test",
            TOLLGATE_DASHBOARD_DIR=str(ROOT / "dashboard" / "dist"),
        )
        cp, _ = start("tollgate-cp", cmd, env)
        procs.append(cp)
        assert not (tmp_path / "cp" / "master.key").exists(), "the key file must be used, not a generated one"
        r = healthcheck(with_port(cp_check, cp_port))
        assert r.returncode == 0, r.stderr

        # Data plane: only environment, as in `docker run -e … tollgate-dp`.
        env, cmd, dp_check = stage_config("dp")
        dp_port = free_port()
        token = tmp_path / "dp.token"
        token.write_text("tgdp-runtime-test\n")
        env.update(
            TOLLGATE_DP_LISTEN=f"127.0.0.1:{dp_port}",
            TOLLGATE_DP_DATA_DIR=str(tmp_path / "dp"),
            TOLLGATE_CP_URL=f"http://127.0.0.1:{cp_port}",
            TOLLGATE_DP_TOKEN_FILE=str(token),
        )
        dp, _ = start("tollgate-dp", cmd, env)
        procs.append(dp)
        r = healthcheck(with_port(dp_check, dp_port))
        assert r.returncode == 0, r.stderr
        # Ready (compose's check) once the snapshot from the CP is applied.
        deadline = time.monotonic() + 30
        while healthcheck(f"http://127.0.0.1:{dp_port}/readyz").returncode != 0:
            assert time.monotonic() < deadline, "data plane never became ready"
            time.sleep(0.2)
        assert (tmp_path / "dp").is_dir()

        env, cmd, mock_check = stage_config("mock")
        mock_port = free_port()
        cmd = [a.replace("0.0.0.0:7490", f"127.0.0.1:{mock_port}") for a in cmd]
        mock, _ = start("tollgate-mock", cmd, env)
        procs.append(mock)
        r = healthcheck(with_port(mock_check, mock_port))
        assert r.returncode == 0, r.stderr
    finally:
        for p in reversed(procs):
            stop(p)
