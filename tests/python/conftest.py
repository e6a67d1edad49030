"""Fixtures that run the real binaries: `tollgate dev` (the README's quickstart
gateway) and `tollgate-mock` (an OpenAI-compatible upstream), on free ports."""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("TOLLGATE_BIN_DIR", ROOT / "target" / "debug"))


def binary(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build --workspace --bins` first")
    return str(path)


class Running:
    """A child process whose stdout is collected on a thread."""

    def __init__(self, args, cwd=None, env=None):
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self.err_lines = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err_lines), daemon=True).start()

    def _pump(self, stream, into):
        for line in stream:
            with self._cv:
                into.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"process exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                        + "\n".join(self.lines + self.err_lines)
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout}s:\n"
                        + "\n".join(self.lines + self.err_lines)
                    )
                self._cv.wait(left)

    def stop(self, sig=signal.SIGINT, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("did not stop within %ss after %s" % (timeout, sig))
        return self.proc.returncode


class DevGateway:
    def __init__(self, data_dir: Path, run: Running):
        self.data_dir = data_dir
        self.run = run
        self.base_url = run.wait_for(r"export OPENAI_BASE_URL=(\S+)").group(1)
        self.api_key = run.wait_for(r"export OPENAI_API_KEY=(\S+)").group(1)
        self.admin_url = run.wait_for(r"Admin API \(gRPC\)\s+(\S+)").group(1)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs the `tollgate` admin CLI against this gateway."""
        out = subprocess.run(
            [binary("tollgate"), "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"tollgate {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out


@pytest.fixture(scope="session")
def gateway():
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "state"
        run = Running(
            [
                binary("tollgate"),
                "--data-dir",
                str(data_dir),
                "dev",
                "--admin-listen",
                "127.0.0.1:0",
                "--proxy-listen",
                "127.0.0.1:0",
            ]
        )
        try:
            gw = DevGateway(data_dir, run)
            yield gw
        finally:
            code = run.stop()
        # Ctrl-C stops the dev gateway cleanly.
        assert code == 0, "tollgate dev exited with %s:\n%s" % (code, "\n".join(run.err_lines))


@pytest.fixture(scope="session")
def upstream():
    """A real OpenAI-compatible provider (the mock) requiring its own key."""
    key = "sk-upstream-py-0123456789"
    run = Running([binary("tollgate-mock"), "--listen", "127.0.0.1:0", "--api-key", key])
    try:
        base_url = run.wait_for(r"tollgate-mock ready: (\S+)").group(1)
        yield {"base_url": base_url, "api_key": key}
    finally:
        run.stop()
