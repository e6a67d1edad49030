"""Shared helpers of the deploy artifact tests (tests/deploy/run.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tollgate"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
GUIDE = ROOT / "docs" / "self-hosting.md"

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Program name → binary built by `cargo build --workspace --bins`.
BINARIES = {
    "tollgate-cp": "tollgate-cp",
    "tollgate-dp": "tollgate-dp",
    "tollgate-mock": "tollgate-mock",
    "tollgate": "tollgate",
}


def bin_dir() -> Path:
    return Path(os.environ.get("TOLLGATE_BIN_DIR", ROOT / "target" / "debug"))


def binary(name: str) -> Path:
    path = bin_dir() / BINARIES[name]
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `cargo build --workspace --bins` first")
    return path


@lru_cache(maxsize=None)
def help_text(name: str) -> str:
    out = subprocess.run(
        [str(binary(name)), "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout
