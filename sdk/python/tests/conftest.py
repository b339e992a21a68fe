"""Shared fixtures: the SDK from this checkout on sys.path, and ``platform``, a real gateway and a
real runc worker started with this checkout's CLI (``beta9 gateway`` / ``beta9 worker``), once per
test session. Tests that need it skip where it cannot run (not root, no runc, CLI not built).

Network: the gateway listens on loopback; containers live on the worker's own bridge.
Everything started here is stopped and removed at the end, pass or fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

SDK_ROOT = Path(__file__).resolve().parents[1]
REPO = SDK_ROOT.parents[1]
CLI = REPO / "packages" / "cli" / "dist" / "main.js"
CACHE = Path(os.environ.get("BETA9_TEST_CACHE", "/var/tmp/beta9-test-cache"))
NODE = shutil.which("node") or sys.executable.replace("python3", "node")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

if str(SDK_ROOT) not in sys.path:
    sys.path.insert(0, str(SDK_ROOT))

from beta9 import Client  # noqa: E402


def skip_reason() -> str | None:
    if not CLI.exists():
        return "the CLI is not built (npm run build)"
    if shutil.which("node") is None:
        return "node is not on PATH"
    if os.geteuid() != 0:
        return "the runc worker needs root"
    if shutil.which("runc") is None:
        return "runc is not installed"
    return None


class Process:
    """A child process whose output is drained by a thread (kept for diagnostics)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: deque[str] = deque(maxlen=400)
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, errors="replace", start_new_session=True)
        self._seen = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(ANSI.sub("", line.rstrip("\n")))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    m = regex.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: never printed /{pattern}/:\n" + "\n".join(self.lines))
                self._seen.wait(0.2)

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class Platform:
    gateway: str
    token: str
    dir: Path
    client: Client
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True, timeout: float = 300, cwd: str | Path | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Runs this checkout's ``beta9`` CLI against the platform."""
        result = subprocess.run([NODE, str(CLI), *args], env={**self.env, **(extra_env or {})}, capture_output=True, text=True,
                                timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(f"beta9 {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def python(self, *args: str, timeout: float = 300, cwd: str | Path | None = None,
               extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Runs ``python3 ARGS`` as a user would, with the SDK importable and the platform in the env."""
        return subprocess.run([sys.executable, *args], env={**self.env, **(extra_env or {})}, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)

    def post(self, target: str, body: Any, timeout: float = 300) -> tuple[int, Any]:
        """POSTs JSON to a gateway path (or a full URL) with the admin token: (status, parsed body), errors included."""
        url = target if target.startswith("http") else f"{self.gateway}{target}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def start_worker(self, name: str, subnet: str, *extra: str) -> Process:
        """Starts one more runc worker (its own bridge and subnet); it is stopped at the end."""
        token = json.loads(self.cli("token", "create", "--type", "worker", "--name", name, "--json").stdout)["key"]
        state = self.dir / f"worker-{name}"
        state.mkdir()
        (CACHE / "base-images").mkdir(parents=True, exist_ok=True)
        (state / "base-images").symlink_to(CACHE / "base-images")
        worker = Process(f"worker {name}", [NODE, str(CLI), "worker", "--gateway", self.gateway, "--token", token, "--runtime", "runc",
                                            "--name", name, "--subnet", subnet, "--id", name, "--state-dir", str(state),
                                            "--log-level", "warn", *extra], self.env)
        self.processes.append(worker)
        worker.wait_for(r"connected", timeout=120)
        return worker


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="beta9-pytest-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BETA9_")}
    env.update(NO_COLOR="1", BETA9_CONFIG_DIR=str(work / "config"), PYTHONPATH=str(SDK_ROOT), PYTHONDONTWRITEBYTECODE="1")
    gateway = Process("gateway", [NODE, str(CLI), "gateway", "--port", "0", "--data-dir", str(work / "data"), "--log-level", "warn"], env)
    platform: Platform | None = None
    try:
        url = gateway.wait_for(r"^gateway: (http://\S+)").group(1)
        token = gateway.wait_for(r"^admin token: (\S+)").group(1)
        env.update(BETA9_GATEWAY=url, BETA9_TOKEN=token)
        platform = Platform(url, token, work, Client(url, token), env, [gateway])
        # The operator opens the host's bridge address to this worker's containers: the test package
        # index (test_image_packages) listens there; everything else private stays closed.
        platform.start_worker("pyt", "10.219.77.0/24", "--egress-allow", "10.219.77.1/32")
        yield platform
    finally:
        for process in reversed(platform.processes if platform else [gateway]):
            process.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An empty directory for one test's app files."""
    d = tmp_path / "app"
    d.mkdir()
    return d


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wait_until(what: str, probe: Any, timeout: float = 120.0, interval: float = 0.2) -> Any:
    """Polls ``probe`` until it returns something truthy (bounded generously; never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(interval)
