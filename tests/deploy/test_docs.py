"""docs/self-hosting.md matches the programs: every flag after a Tollgate
program or image in its code blocks exists in that program's --help, and every
TOLLGATE_* variable it names is read by some program (or by the build and
health-check scripts that define it)."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import lru_cache

from conftest import GUIDE, ROOT, binary, help_text

PROGRAMS = ("tollgate-cp", "tollgate-dp", "tollgate-mock", "tollgate")


def code_lines() -> list[str]:
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", GUIDE.read_text(), re.S)
    lines = []
    for b in blocks:
        lines.extend(l for l in b.replace("\\\n", " ").splitlines() if l.strip())
    return lines


@lru_cache(maxsize=None)
def sub_help(words: tuple[str, ...]) -> str:
    return subprocess.run(
        [str(binary("tollgate")), *words, "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def program_of(token: str, first: bool) -> str | None:
    """A program run by name (or by path as the command), or an image."""
    for name in PROGRAMS:
        if token == name or (first and token.endswith("/" + name)):
            return name
        if re.fullmatch(rf"(\S+/)?{re.escape(name)}:[\w.-]+", token):
            return name
    return None


def test_flags_in_the_guide_exist():
    checked = 0
    for line in code_lines():
        if line.lstrip().startswith(("#", "$")) or line.startswith("tollgate-") and "(" in line:
            continue
        try:
            argv = shlex.split(line, comments=True)
        except ValueError:
            continue
        if argv and (argv[0] in ("cargo", "helm", "git", "docker-compose") or argv[:2] in (["docker", "compose"], ["docker", "build"])):
            continue
        prog, start = None, 0
        for i, tok in enumerate(argv):
            found = program_of(tok, i == 0)
            if found:
                prog, start = found, i + 1
        if prog is None:
            continue
        rest = argv[start:]
        if prog == "tollgate":
            words = tuple(w for w in rest[: next((i for i, w in enumerate(rest) if w.startswith("-")), len(rest))])
            text = sub_help(words[:2]) if words else help_text("tollgate")
        else:
            text = help_text(prog)
        for tok in rest:
            if tok.startswith("--"):
                flag = tok.split("=", 1)[0]
                assert re.search(rf"\s{re.escape(flag)}[\s=,]", text), f"{prog} has no flag {flag}: {line}"
                checked += 1
    assert checked >= 5, "the guide's commands were not found"


def test_prose_flags_exist_somewhere():
    helps = "\n".join(help_text(p) for p in PROGRAMS)
    prose = re.sub(r"```.*?```", "", GUIDE.read_text(), flags=re.S)
    for flag in set(re.findall(r"`(--[a-z][a-z-]*)", prose)):
        assert re.search(rf"\s{flag}[\s=]", helps), f"no program has {flag}"


def test_environment_variables_in_the_guide_exist():
    helps = "\n".join(help_text(p) for p in PROGRAMS)
    defined_elsewhere = {
        "TOLLGATE_GIT_COMMIT": (ROOT / "deploy/build_info.rs").read_text(),
        "TOLLGATE_HEALTHCHECK_TIMEOUT_SECS": (ROOT / "deploy/docker/healthcheck.sh").read_text(),
        # Hidden from the CP's --help; test_binaries starts the CP with it.
        "TOLLGATE_DP_TOKEN": helps,
    }
    for var in set(re.findall(r"\bTOLLGATE_[A-Z_]+\b", GUIDE.read_text())):
        source = defined_elsewhere.get(var)
        if source is not None:
            assert var in source, var
        else:
            assert f"[env: {var}" in helps, f"no program reads {var}"
