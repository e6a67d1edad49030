"""What the artifacts rely on in the programs themselves: `--version` build
information, and the control plane's hidden TOLLGATE_DP_TOKEN."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
from conftest import ROOT, binary


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


@pytest.mark.parametrize("prog", ["tollgate-cp", "tollgate-dp", "tollgate", "tollgate-mock"])
def test_version_names_crate_version_commit_and_profile(prog):
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    out = subprocess.run([str(binary(prog)), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    profile = binary(prog).parent.name
    m = re.fullmatch(rf"{re.escape(prog)} (\S+) \(commit (\S+), profile (\S+), (\S+)\)", out)
    assert m, out
    assert m.group(1) == version
    assert m.group(2) == git_commit()
    assert m.group(3) == profile
    assert m.group(4).startswith(("x86_64-", "aarch64-"))
    short = subprocess.run([str(binary(prog)), "-V"], capture_output=True, text=True, check=True).stdout.strip()
    assert short == f"{prog} {version}"


def test_cp_reads_hidden_dp_token_from_the_environment(tmp_path):
    """The compose stack and the chart give the CP its data-plane token as
    TOLLGATE_DP_TOKEN (hidden from --help): the CP must take it."""
    proc = subprocess.Popen(
        [str(binary("tollgate-cp")), "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"],
        env={"TOLLGATE_DP_TOKEN": "tgdp-from-env", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert lines[0].startswith("tollgate-cp ready: http://127.0.0.1:")
    assert lines[2] == "data-plane token: from TOLLGATE_DP_TOKEN"
    assert not (tmp_path / "dp.token").exists()
