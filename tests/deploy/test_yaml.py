"""Every YAML file in the repository parses (Helm templates are rendered and
parsed by test_chart.py instead)."""

from __future__ import annotations

import subprocess

import yaml
from conftest import ROOT


def test_every_yaml_file_parses():
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yml", "*.yaml"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    files = [f for f in files if "/templates/" not in f]
    assert "deploy/compose/docker-compose.yml" in files and "deploy/helm/tollgate/values.yaml" in files
    for f in files:
        docs = list(yaml.safe_load_all((ROOT / f).read_text()))
        assert docs and all(d is not None for d in docs), f"{f} is empty"
