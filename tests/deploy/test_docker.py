"""deploy/docker/Dockerfile read statically (no container engine in CI):
pinned bases, non-root final stages with health checks on served paths, and
the release build command identical to the documented one."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib

import pytest
from conftest import DOCKERFILE, GUIDE, ROOT, help_text

FINAL_STAGES = {"cp": "tollgate-cp", "dp": "tollgate-dp", "mock": "tollgate-mock"}


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, rest
            current = m.group(2) or f"stage{len(result)}"
            result[current] = [(word, m.group(1))]
        elif current is not None:
            result[current].append((word, rest))
    return result


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
    return args


def documented_build_command() -> str:
    cmds = [l.strip() for l in GUIDE.read_text().splitlines() if l.strip().startswith("cargo build") and "--profile dist" in l]
    assert len(set(cmds)) == 1, f"docs/self-hosting.md must document one dist build command, found {cmds}"
    return cmds[0]


def test_base_images_are_pinned():
    args = global_args()
    st = stages()
    for name, instrs in st.items():
        image = instrs[0][1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if image in st:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d|bookworm", tag), f"{name}: unpinned base {image}"


def test_final_stages_run_as_non_root_with_a_health_check():
    st = stages()
    for stage, prog in FINAL_STAGES.items():
        instrs = st[stage]
        users = [r for w, r in instrs if w == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root"), f"{stage}: no non-root USER"
        assert re.fullmatch(r"\d+:\d+", users[-1]), "numeric USER so runAsNonRoot can verify it"
        checks = [r for w, r in instrs if w == "HEALTHCHECK"]
        assert len(checks) == 1, f"{stage}: HEALTHCHECK missing"
        m = re.search(r'CMD \["tollgate-healthcheck", "http://127\.0\.0\.1:(\d+)(/[^"]*)"\]', checks[0])
        assert m, checks[0]
        port, path = m.groups()
        exposed = [r for w, r in instrs if w == "EXPOSE"]
        assert exposed == [port], f"{stage}: health check on {port}, EXPOSE {exposed}"
        entry = [r for w, r in instrs if w == "ENTRYPOINT"]
        assert entry == [f'["{prog}"]'], entry
        served = {
            "cp": lambda p: p == "/",  # every path answers while the CP runs
            "dp": lambda p: f'"{p}" =>' in (ROOT / "data-plane/src/pipeline/mod.rs").read_text(),
            "mock": lambda p: f'.route("{p}", get(' in (ROOT / "crates/tollgate-mock/src/server.rs").read_text(),
        }[stage]
        assert served(path), f"{stage}: {path} is not served"


def test_environment_and_flags_exist_in_each_stage_binary():
    st = stages()
    for stage, prog in FINAL_STAGES.items():
        text = help_text(prog)
        env_text = " ".join(r for w, r in st[stage] + st["runtime"] if w == "ENV")
        for name in re.findall(r"\b(TOLLGATE_[A-Z_]+)=", env_text):
            assert f"[env: {name}" in text, f"{prog} reads no {name}"
        listen = re.search(r"TOLLGATE_(?:CP|DP)_LISTEN=0\.0\.0\.0:(\d+)", env_text)
        cmd = [r for w, r in st[stage] if w == "CMD"][0]
        for flag in re.findall(r'"(--[a-z-]+)"', cmd):
            assert re.search(rf"\s{flag}[\s=]", text), f"{prog} has no flag {flag}"
        port = listen.group(1) if listen else re.search(r"0\.0\.0\.0:(\d+)", cmd).group(1)
        assert [r for w, r in st[stage] if w == "EXPOSE"] == [port]


def test_build_command_is_the_documented_one_and_resolves():
    runs = [r for w, r in stages()["build"] if w == "RUN" and r.startswith("cargo ")]
    assert runs == [documented_build_command()]
    argv = shlex.split(runs[0])
    assert argv[:2] == ["cargo", "build"] and "--locked" in argv
    profile = argv[argv.index("--profile") + 1]
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    prof = manifest["profile"][profile]
    assert prof["inherits"] == "release" and prof["lto"] == "fat" and prof["codegen-units"] == 1
    packages = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    # The packages resolve in the locked workspace (what `--locked` needs).
    meta = subprocess.run(
        ["cargo", "metadata", "--locked", "--offline", "--no-deps", "--format-version", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    import json

    pkgs = {p["name"]: p for p in json.loads(meta.stdout)["packages"]}
    bins = {t["name"] for name in packages for t in pkgs[name]["targets"] if "bin" in t["kind"]}
    copied = re.findall(r"/src/target/" + profile + r"/([\w-]+)", DOCKERFILE.read_text())
    assert copied and set(copied) <= bins, (copied, bins)
    assert set(FINAL_STAGES.values()) <= bins


def test_commit_reaches_the_build_script():
    text = DOCKERFILE.read_text()
    assert "ARG TOLLGATE_GIT_COMMIT" in text and "ENV TOLLGATE_GIT_COMMIT=${TOLLGATE_GIT_COMMIT}" in text
    assert 'std::env::var("TOLLGATE_GIT_COMMIT")' in (ROOT / "deploy" / "build_info.rs").read_text()


def test_dockerignore_keeps_what_the_build_copies():
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ".git" in ignored and "**/target" in ignored and "**/node_modules" in ignored
    assert "deploy/compose/secrets" in ignored, "compose secrets must stay out of the build context"
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                for pat in ignored:
                    assert not re.fullmatch(re.escape(pat).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*"), src), (src, pat)
                assert (ROOT / src).exists() or src == ".", src


@pytest.mark.parametrize("stage", sorted(FINAL_STAGES))
def test_data_dir_is_a_volume_owned_by_the_user(stage):
    st = stages()
    if stage == "mock":
        return
    instrs = st[stage]
    assert ("VOLUME", '["/var/lib/tollgate"]') in instrs
    runtime = " ".join(r for w, r in st["runtime"] if w == "RUN")
    assert "install -d -o 10001 -g 10001 -m 0700 /var/lib/tollgate" in runtime
