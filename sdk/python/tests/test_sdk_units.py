"""The SDK's pieces without a platform: options checked at decoration time, schemas, the
describe contract the CLI relies on, code bundles, configuration, and the Python runner itself
served on a loopback port and spoken to with the runner protocol."""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import gzip
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import SDK_ROOT, write, wait_until

import beam
import beta9
from beta9 import QueueDepthAutoscaler, TaskPolicy, Volume, endpoint, function, schema, task_queue
from beta9.bundle import BundleError, bundle
from beta9.config import ConfigError, resolve
from beta9.options import OptionError


# --- decorator options -------------------------------------------------------------------------

def test_beam_is_an_alias_of_beta9() -> None:
    assert beam.endpoint is beta9.endpoint and beam.Image is beta9.Image and beam.Sandbox is beta9.Sandbox


def test_unknown_option_names_it() -> None:
    with pytest.raises(TypeError, match="colour"):
        endpoint(cpu=1, colour="red")  # type: ignore[call-arg]


@pytest.mark.parametrize("kwargs, named", [
    ({"cpu": "lots"}, "cpu="), ({"cpu": True}, "cpu="), ({"memory": "16 parsecs"}, "memory="),
    ({"memory": -1}, "memory="), ({"gpu": 3}, "gpu="), ({"gpu_count": 9}, "gpu_count="),
    ({"workers": 0}, "workers="), ({"keep_warm_seconds": "ten"}, "keep_warm_seconds="),
    ({"retries": 99}, "retries="), ({"timeout": 1.5}, "timeout="), ({"callback_url": "ftp://x"}, "callback_url="),
    ({"secrets": ["bad-name"]}, "secrets="), ({"env": {"A": 1}}, "env="), ({"authorized": "yes"}, "authorized="),
    ({"autoscaler": {"max_containers": 2}}, "autoscaler="), ({"autoscaler": QueueDepthAutoscaler(max_containers=0)}, "max_containers="),
    ({"task_policy": TaskPolicy(max_retries=-1)}, "max_retries="), ({"volumes": ["data"]}, "volumes="),
    ({"volumes": [Volume("Bad Name", "/data")]}, "Volume(name="), ({"volumes": [Volume("data", "rel")]}, "mount_path="),
    ({"on_start": 5}, "on_start="), ({"name": "Not A Name!"}, "name"),
])
def test_invalid_option_names_it(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises((OptionError, TypeError)) as info:
        task_queue(**kwargs)(lambda x: x)
    assert named in str(info.value), str(info.value)


def test_options_become_the_gateway_config() -> None:
    @endpoint(name="classify", cpu=2, memory="16Gi", gpu="A10G", gpu_count=1, keep_warm_seconds=60, workers=2,
              concurrent_requests=4, timeout=30, retries=2, env={"MODE": "fast"}, authorized=False,
              autoscaler=QueueDepthAutoscaler(max_containers=3, tasks_per_container=5), volumes=[Volume("weights", "/weights")])
    def predict(x: int) -> int:
        return x

    config = predict.stub_config()
    assert predict.name == "classify" and predict.kind == "endpoint"
    assert config["cpu"] == 2 and config["memory"] == "16Gi" and config["gpu"] == "A10G" and config["gpuCount"] == 1
    assert config["taskPolicy"] == {"timeout": 30, "maxRetries": 2}
    assert config["autoscaler"] == {"type": "queue_depth", "maxContainers": 3, "tasksPerContainer": 5, "minContainers": 0}
    assert config["volumes"] == [{"name": "weights", "mountPath": "/weights"}]
    assert predict(x=3) == 3, "a decorated function stays callable locally"


def test_task_policy_and_gpu_list() -> None:
    @function(gpu=["H100", "A100"], task_policy=TaskPolicy(max_retries=3, timeout=600, ttl=3600))
    def train() -> None:
        return None

    config = train.stub_config()
    assert config["gpu"] == ["H100", "A100"]
    assert config["taskPolicy"] == {"maxRetries": 3, "timeout": 600, "ttl": 3600}


# --- schemas -----------------------------------------------------------------------------------

class Inner(schema.Schema):
    tag = schema.String()


class Inputs(schema.Schema):
    url = schema.String()
    n = schema.Integer(required=False, default=1)
    ratio = schema.Float(required=False)
    flag = schema.Boolean(required=False)
    extra = schema.Json(required=False)
    sizes = schema.List(schema.Integer(), required=False)
    inner = schema.Object(Inner, required=False)


def test_schema_parses_and_names_the_failing_field() -> None:
    parsed = Inputs.from_dict({"url": "http://x", "sizes": [1, 2], "inner": {"tag": "a"}, "ratio": 2})
    assert parsed.url == "http://x" and parsed.n == 1 and parsed.sizes == [1, 2] and parsed.inner.tag == "a"
    assert parsed.ratio == 2.0
    for payload, field in [({}, "url"), ({"url": 5}, "url"), ({"url": "x", "n": "2"}, "n"), ({"url": "x", "n": True}, "n"),
                           ({"url": "x", "sizes": [1, "b"]}, "sizes"), ({"url": "x", "inner": {"tag": 1}}, "inner.tag"),
                           ({"url": "x", "nope": 1}, "nope"), ({"url": "x", "flag": "yes"}, "flag")]:
        with pytest.raises(schema.SchemaError) as info:
            Inputs.from_dict(payload)
        assert str(info.value).startswith(field), (payload, str(info.value))
    assert Inputs.json_schema()["required"] == ["url"]


# --- describe: the CLI's contract with the SDK ---------------------------------------------------

def describe(target: str, cwd: Path) -> tuple[int, dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "beta9", "describe", target], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SDK_ROOT)}, timeout=60)
    return out.returncode, json.loads(out.stdout)


def test_describe_reports_code_problems_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "syn.py", "from beta9 import endpoint\n\n@endpoint()\ndef f(x):\n    return x +\n")
    write(tmp_path, "unk.py", "from beta9 import endpoint\n\n@endpoint(colour='red')\ndef f(x):\n    return x\n")
    write(tmp_path, "imp.py", "import nosuchmodule_beta9\n")
    write(tmp_path, "ok.py", "from beta9 import endpoint\nprint('imported')\n\n@endpoint(cpu=1)\ndef f(x: int = 1):\n    return x\n\ndef plain():\n    pass\n")
    cases = {"syn.py:f": ("PYTHON_SYNTAX_ERROR", "syn.py:5"), "unk.py:f": ("PYTHON_IMPORT_ERROR", "unk.py:3"),
             "imp.py:f": ("PYTHON_IMPORT_ERROR", "imp.py:1"), "ok.py:missing": ("EXPORT_NOT_FOUND", "missing"),
             "ok.py:plain": ("NOT_A_WORKLOAD", "plain"), "ok.py": ("TARGET_INVALID", "FILE.py:FUNCTION"),
             "none.py:f": ("FILE_NOT_FOUND", "none.py")}
    for target, (code, text) in cases.items():
        status, answer = describe(target, tmp_path)
        assert status == 2 and answer["error"]["code"] == code and text in answer["error"]["message"], (target, answer)
    status, answer = describe("ok.py:f", tmp_path)
    assert status == 0, answer
    # A file named like a standard module is the user's file, not the standard one.
    write(tmp_path, "queue.py", "from beta9 import task_queue\n\n@task_queue(retries=1)\ndef work(x: int = 0):\n    return x\n")
    status, shadow = describe("queue.py:work", tmp_path)
    assert status == 0 and shadow["kind"] == "taskqueue" and shadow["config"]["taskPolicy"] == {"maxRetries": 1}, shadow
    assert answer["kind"] == "endpoint" and answer["name"] == "f" and answer["handler"] == "ok.py:f"
    assert answer["config"]["cpu"] == 1 and len(answer["codeSha256"]) == 64


# --- bundles -----------------------------------------------------------------------------------

def names_in(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def test_bundle_respects_ignore_files_and_is_deterministic(tmp_path: Path) -> None:
    app = tmp_path / "proj"
    write(app, "app.py", "x = 1\n")
    write(app, "lib/util.py", "y = 2\n")
    write(app, "data/big.bin", "z" * 100)
    write(app, "data/keep.txt", "k")
    write(app, "notes.log", "log")
    write(app, ".git/config", "[core]")
    write(app, "__pycache__/app.cpython-311.pyc", "pyc")
    write(app, ".gitignore", "*.log\ndata/\n")
    write(app, ".beta9ignore", "!data/keep.txt\n")
    first = bundle(app / "app.py", "f", app)
    names = {n.lstrip("./") for n in names_in(first.data)}
    assert "app.py" in names and "lib/util.py" in names
    assert not any(n.startswith((".git/", "__pycache__")) or n.endswith(".log") or n == "data/big.bin" for n in names), names
    time.sleep(1.1)
    (app / "app.py").touch()
    assert bundle(app / "app.py", "f", app).sha256 == first.sha256, "same content, same bundle whatever the mtimes"


def test_bundle_size_limit_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import beta9.bundle as bundle_module
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 1024)
    write(tmp_path, "app.py", "x = 1\n")
    (tmp_path / "weights.bin").write_bytes(os.urandom(4096))
    with pytest.raises(BundleError) as info:
        bundle(tmp_path / "app.py", "f", tmp_path)
    assert "weights.bin" in str(info.value) or ".beta9ignore" in str(info.value), str(info.value)


# --- configuration -----------------------------------------------------------------------------

def test_config_env_wins_then_saved_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("BETA9_GATEWAY", "BETA9_TOKEN", "BETA9_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BETA9_CONFIG_DIR", str(tmp_path))
    fresh = resolve()
    assert (fresh.gateway, fresh.token) == ("http://127.0.0.1:1994", None), "no config: the local default, no token"
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        resolve()
    (tmp_path / "config.json").write_text(json.dumps({"current": "b", "contexts": {
        "a": {"gateway": "http://127.0.0.1:1", "token": "ta"}, "b": {"gateway": "http://127.0.0.1:2", "token": "tb"}}}))
    saved = resolve()
    assert (saved.gateway, saved.token) == ("http://127.0.0.1:2", "tb")
    monkeypatch.setenv("BETA9_GATEWAY", "http://127.0.0.1:3")
    monkeypatch.setenv("BETA9_TOKEN", "tenv")
    env = resolve()
    assert (env.gateway, env.token) == ("http://127.0.0.1:3", "tenv")


# --- the runner, served locally -----------------------------------------------------------------

RUNNER_APP = '''
import asyncio, time
from beta9 import endpoint, schema

class In(schema.Schema):
    n = schema.Integer()

def setup():
    return {"loaded": True}

@endpoint(on_start=setup, concurrent_requests=4)
def handler(n: int, *, context):
    if n < 0:
        raise ValueError("negative input")
    if n == 999:
        while not context.wait_cancelled(0.05):
            pass
        return "cancelled"
    return {"double": n * 2, "on_start": context.on_start_value, "task": context.task_id, "retries": context.retry_count}

@endpoint(inputs=In)
async def typed(data: In):
    await asyncio.sleep(0.01)
    return data.n + 1

class Out(schema.Schema):
    label = schema.String()

@endpoint(outputs=Out)
def labelled(kind: str):
    return {"label": "cat"} if kind == "good" else {"label": 3}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def start_runner(code: Path, handler: str, concurrency: int = 4) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SDK_ROOT), "PORT": str(port), "BETA9_HANDLER": handler, "BETA9_CODE_DIR": str(code),
           "BETA9_CONCURRENCY": str(concurrency), "BETA9_CONTAINER_ID": "c-test", "BETA9_STUB_ID": "s-test"}
    proc = subprocess.Popen([sys.executable, "-m", "beta9.runner"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as res:
                return res.status == 200
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "runner exited"
            return False
    wait_until("the runner to answer /health", healthy, timeout=30)
    return proc, base


@contextlib.contextmanager
def running_runner(code: Path, handler: str, concurrency: int = 4) -> Iterator[str]:
    """The runner serving ``handler`` on a loopback port (its base URL), stopped on exit."""
    proc, base = start_runner(code, handler, concurrency)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def test_runner_protocol(tmp_path: Path) -> None:
    write(tmp_path, "app.py", RUNNER_APP)
    with running_runner(tmp_path, "app.py:handler") as base:
        status, body = post(base + "/invoke", {"input": {"n": 21}}, {"x-beta9-task-id": "t1", "x-beta9-task-retries": "2"})
        assert status == 200 and json.loads(body)["result"] == {"double": 42, "on_start": {"loaded": True}, "task": "t1", "retries": 2}
        status, body = post(base + "/invoke", {"input": {"m": 1}}, {"x-beta9-task-id": "t2"})
        assert status == 422 and json.loads(body)["error"]["code"] == "INPUT_INVALID"
        status, body = post(base + "/invoke", {"input": {"n": -1}}, {"x-beta9-task-id": "t3"})
        error = json.loads(body)["error"]
        assert status == 500 and error["code"] == "HANDLER_ERROR" and "negative input" in error["message"]
        assert "Traceback" in error.get("stack", "") and "app.py" in error["stack"]
        # A batch answers one line per task as each ends.
        req = urllib.request.Request(base + "/invoke-batch", method="POST", headers={"content-type": "application/json"},
                                     data=json.dumps({"tasks": [{"id": f"b{i}", "retries": i, "input": {"n": i}} for i in range(5)]}).encode())
        with urllib.request.urlopen(req, timeout=30) as res:
            lines = [json.loads(line) for line in res.read().decode().splitlines() if line.strip()]
        assert sorted(line["id"] for line in lines) == [f"b{i}" for i in range(5)]
        assert all(line["status"] == 200 and line["body"]["result"]["double"] == int(line["id"][1:]) * 2
                   and line["body"]["result"]["retries"] == int(line["id"][1:]) for line in lines)
        # Cancel reaches a running handler.
        answer: dict[str, Any] = {}
        t = threading.Thread(target=lambda: answer.update(r=post(base + "/invoke", {"input": {"n": 999}}, {"x-beta9-task-id": "slow"})))
        t.start()
        wait_until("cancel to reach the running task", lambda: post(base + "/cancel/slow", {})[0] == 204, timeout=30)
        t.join(30)
        assert answer["r"][0] == 200 and json.loads(answer["r"][1])["result"] == "cancelled"
        assert post(base + "/cancel/unknown", {})[0] == 404


def test_runner_requires_its_gateway_secret_when_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "app.py", RUNNER_APP)
    monkeypatch.setenv("BETA9_RUNNER_SECRET", "s3cret")
    with running_runner(tmp_path, "app.py:handler") as base:
        assert post(base + "/invoke", {"input": {"n": 1}})[0] == 401
        status, body = post(base + "/invoke", {"input": {"n": 1}}, {"authorization": "Bearer nope"})
        assert status == 401 and json.loads(body)["error"]["code"] == "AUTH_TOKEN_INVALID"
        assert post(base + "/cancel/x", {}, {"authorization": "Bearer nope"})[0] == 401
        assert post(base + "/invoke", {"input": {"n": 1}}, {"authorization": "Bearer s3cret"})[0] == 200


def test_runner_async_handler_with_schema(tmp_path: Path) -> None:
    write(tmp_path, "app.py", RUNNER_APP)
    with running_runner(tmp_path, "app.py:typed") as base:
        status, body = post(base + "/invoke", {"input": {"n": 1}})
        assert status == 200 and json.loads(body)["result"] == 2
        status, body = post(base + "/invoke", {"input": {"n": "one"}})
        assert status == 422 and json.loads(body)["error"]["message"].startswith("n:")


def test_runner_checks_results_against_outputs(tmp_path: Path) -> None:
    write(tmp_path, "app.py", RUNNER_APP)
    with running_runner(tmp_path, "app.py:labelled") as base:
        assert post(base + "/invoke", {"input": {"kind": "good"}}) == (200, b'{"result":{"label":"cat"}}')
        status, body = post(base + "/invoke", {"input": {"kind": "bad"}})
        error = json.loads(body)["error"]
        assert status == 500 and error["code"] == "HANDLER_ERROR" and "outputs=Out" in error["message"] and "label" in error["message"]
