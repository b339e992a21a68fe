"""Sandboxes end to end, on a real platform (the shared ``platform`` fixture of conftest.py: a
gateway and a runc worker), plus the option checks, which need no platform.

Every sandbox a test creates is terminated, pass or fail. Network: loopback only.
"""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

# The SDK from this checkout, whether or not conftest.py has put it on the path already.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beta9  # noqa: E402
from beta9 import ApiError, Client, Image, OptionError, Sandbox, SandboxInstance, Volume  # noqa: E402
from beta9.sandbox import SandboxError  # noqa: E402

SDK_ROOT = Path(beta9.__file__).resolve().parents[1]

SEED = """\
from beam import Image, Sandbox
sandbox = Sandbox(image=Image()).create()
response = sandbox.process.run_code("print('I am running remotely')")
print(response.result)
"""


@pytest.fixture
def sandbox_platform(request: pytest.FixtureRequest) -> Any:
    """conftest.py's ``platform`` (.gateway, .token, .client); without it, BETA9_GATEWAY and
    BETA9_TOKEN name a running one; with neither, the end-to-end tests skip."""
    try:
        return request.getfixturevalue("platform")
    except pytest.FixtureLookupError:
        gateway, token = os.environ.get("BETA9_GATEWAY"), os.environ.get("BETA9_TOKEN")
        if not gateway or not token:
            pytest.skip("no platform: conftest.py's `platform` fixture is missing and BETA9_GATEWAY/BETA9_TOKEN are unset")
        return SimpleNamespace(gateway=gateway, token=token, client=Client(gateway, token))


@pytest.fixture
def make_sandbox(sandbox_platform: Any) -> Iterator[Callable[..., SandboxInstance]]:
    """Creates sandboxes on the platform's client and terminates each one when the test ends."""
    created: list[SandboxInstance] = []

    def make(**options: Any) -> SandboxInstance:
        instance = Sandbox(client=sandbox_platform.client, **options).create()
        created.append(instance)
        return instance

    yield make
    for instance in created:
        try:
            instance.terminate()
        except ApiError:
            pass


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SandboxInstance]) -> SandboxInstance:
    return make_sandbox(image=Image())


def _get(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


# -- the seed's example ------------------------------------------------------------------------------

def test_sandbox_seed_example_runs_as_written(sandbox_platform: Any) -> None:
    # The seed runs unchanged, as its own program; the wrapper only reports the sandbox it made, to end it.
    wrapper = textwrap.dedent(f"""\
        import sys
        ns = {{"__name__": "__main__"}}
        try:
            exec(compile({SEED!r}, "seed.py", "exec"), ns)
        finally:
            sb = ns.get("sandbox")
            if sb is not None:
                print("SANDBOX_ID=" + sb.id, file=sys.stderr)
        """)
    env = {**os.environ, "BETA9_GATEWAY": sandbox_platform.gateway, "BETA9_TOKEN": sandbox_platform.token,
           "PYTHONPATH": str(SDK_ROOT)}
    env.pop("BETA9_CONTEXT", None)
    proc = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True, timeout=600)
    ids = [line.split("=", 1)[1] for line in proc.stderr.splitlines() if line.startswith("SANDBOX_ID=")]
    try:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "I am running remotely\n"
        assert len(ids) == 1
    finally:
        for sandbox_id in ids:
            Sandbox.connect(sandbox_id, client=sandbox_platform.client).terminate()


def test_sandbox_run_code_languages_and_limits(sandbox: SandboxInstance) -> None:
    r = sandbox.process.run_code("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(4)")
    assert (r.result, r.stdout, r.stderr, r.exit_code) == ("out", "out\n", "err\n", 4)
    assert sandbox.process.run_code("console.log(1 + 1)", language="javascript").result == "2"
    assert sandbox.process.run_code("const n: number = 21; console.log(n * 2)", language="typescript").result == "42"
    slow = sandbox.process.run_code("import time; print('before', flush=True); time.sleep(60)", timeout=1)
    assert slow.stopped == "timeout" and slow.exit_code == 137 and slow.result == "before"
    assert sandbox.process.run_code("import os; print(os.environ['GREETING'], os.getcwd())", env={"GREETING": "hi"}, cwd="/tmp").result == "hi /tmp"


# -- processes ---------------------------------------------------------------------------------------

def test_sandbox_exec_streams_while_running_and_keeps_the_tail(sandbox: SandboxInstance) -> None:
    # The process prints a line, then waits until the test answers through a file: the first line
    # can only be seen while it still runs. Then a burst and a last line without a newline.
    script = ("echo ready; while [ ! -e go ]; do sleep 0.05; done; echo oops >&2; "
              "seq 1 20000; printf 'the tail'")
    p = sandbox.process.exec("sh", "-c", script, cwd="/workspace")
    assert p.pid > 0
    lines = iter(p.stdout)
    assert next(lines) == "ready"
    assert p.running() and p.exit_code is None
    sandbox.fs.write("/workspace/go", b"")
    rest = list(lines)
    assert rest == [str(i) for i in range(1, 20001)] + ["the tail"]
    assert p.wait(timeout=60) == 0 and p.exit_code == 0
    assert p.stderr.read() == "oops\n"
    # A reader that starts late still sees everything, and the process shows up in the listing.
    assert p.stdout.read().endswith("19999\n20000\nthe tail")
    listed = {info.pid: info for info in sandbox.process.list()}
    assert listed[p.pid].running is False and listed[p.pid].exit_code == 0

    env_run = sandbox.process.run("sh", "-c", 'echo "$A-$B"; exit 7', env={"A": "x", "B": "y"})
    assert (env_run.stdout, env_run.exit_code) == ("x-y\n", 7)
    with pytest.raises(SandboxError, match="no-such-command"):
        sandbox.process.exec("no-such-command")


def test_sandbox_kill_ends_one_process_only(sandbox: SandboxInstance) -> None:
    p = sandbox.process.exec("sh", "-c", "echo started; sleep 300")
    assert next(iter(p.stdout)) == "started"
    other = sandbox.process.exec("sleep", "300")
    t0 = time.monotonic()
    p.kill()
    assert p.wait(timeout=30) == 137
    assert p.signal == "SIGKILL"
    assert time.monotonic() - t0 < 20
    listed = {info.pid: info for info in sandbox.process.list()}
    assert listed[p.pid].running is False
    assert listed[other.pid].running is True
    sandbox.process.kill(other.pid, "SIGTERM")
    assert other.wait(timeout=30) == 128 + 15 and other.signal == "SIGTERM"
    assert sandbox.process.run_code("print('still here')").result == "still here"


# -- files ---------------------------------------------------------------------------------------------

def test_sandbox_files_round_trip_byte_exact(sandbox: SandboxInstance, tmp_path: Path) -> None:
    fs = sandbox.fs
    every_byte = bytes(range(256)) * 17
    info = fs.write("data/bin/all.bin", every_byte)
    assert info.size == len(every_byte) and info.path == "/workspace/data/bin/all.bin"
    assert fs.read("/workspace/data/bin/all.bin") == every_byte
    fs.write("data/text.txt", "héllo ✓\n")
    assert fs.read("data/text.txt") == "héllo ✓\n".encode()
    assert fs.write("data/run.sh", "#!/bin/sh\necho ran\n", mode=0o755).mode & 0o777 == 0o755
    assert sandbox.process.run("./data/run.sh").stdout == "ran\n"

    fs.mkdir("data/empty/nested")
    assert fs.stat("data/empty").is_dir
    names = {f.name: f for f in fs.list("data")}
    assert set(names) == {"bin", "text.txt", "run.sh", "empty"}
    assert names["text.txt"].type == "file" and names["text.txt"].size == len("héllo ✓\n".encode())

    # ~20 MB, streamed both ways; compared by sha256 here and inside the sandbox.
    big = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(big, "wb") as out:
        for _ in range(20):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    uploaded = fs.upload_file(big, "/workspace/big/big.bin")
    assert uploaded.size == 20 << 20
    inside = sandbox.process.run_code("import hashlib; print(hashlib.sha256(open('/workspace/big/big.bin','rb').read()).hexdigest())")
    assert inside.result == digest.hexdigest()
    back = tmp_path / "back.bin"
    assert fs.download_file("/workspace/big/big.bin", back) == 20 << 20
    with open(back, "rb") as f:
        assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()

    with pytest.raises(ApiError) as missing:
        fs.read("data/nope")
    assert missing.value.status == 404
    with pytest.raises(ApiError):
        fs.download_file("data/nope", tmp_path / "nope")
    assert not (tmp_path / "nope").exists() and [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    with pytest.raises(ApiError):
        fs.remove("data")  # not empty
    fs.remove("data", recursive=True)
    fs.remove("big/big.bin")
    assert [f.name for f in fs.list("/workspace")] == ["big"]


# -- ports, connect, ttl, terminate --------------------------------------------------------------------

def test_sandbox_expose_port_serves_through_the_gateway(sandbox: SandboxInstance, sandbox_platform: Any) -> None:
    sandbox.fs.write("/workspace/site/index.html", "<h1>from the sandbox</h1>")
    server = sandbox.process.exec("python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", "/workspace/site")
    url = sandbox.expose_port(8080)
    assert url.endswith(f"/sandbox/{sandbox.id}/port/8080/")
    deadline = time.monotonic() + 30
    while True:
        status, body = _get(url, sandbox_platform.token)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (status, body) == (200, b"<h1>from the sandbox</h1>")
    assert _get(url)[0] == 401  # a private port needs a token
    public = sandbox.expose_port(8080, public=True)
    assert _get(public) == (200, b"<h1>from the sandbox</h1>")
    assert [e["port"] for e in sandbox.status()["exposed"]] == [8080]
    server.kill()
    server.wait(timeout=30)


def test_sandbox_connect_from_a_second_client_and_ttl(sandbox: SandboxInstance, sandbox_platform: Any) -> None:
    sandbox.fs.write("shared.txt", "written by the first client")
    second = Client(sandbox_platform.gateway, sandbox_platform.token)
    again = Sandbox.connect(sandbox.id, client=second)
    assert again.id == sandbox.id and again.client is second
    assert again.fs.read("shared.txt") == b"written by the first client"
    assert again.process.run_code("print(open('shared.txt').read())").result == "written by the first client"
    assert again.update_ttl(3600)["ttlSeconds"] == 3600
    assert sandbox.status()["ttlSeconds"] == 3600
    assert sandbox.update_ttl(-1)["expiresAt"] is None
    with pytest.raises(ApiError) as unknown:
        Sandbox.connect("no-such-sandbox", client=second)
    assert unknown.value.status == 404


def test_sandbox_terminate_leaves_nothing(make_sandbox: Callable[..., SandboxInstance], sandbox_platform: Any) -> None:
    sb = make_sandbox(image=Image(), keep_warm_seconds=120, env={"FROM_OPTIONS": "yes"}, cpu=0.5, memory="512Mi")
    assert sb.process.run_code("import os; print(os.environ['FROM_OPTIONS'])").result == "yes"
    info = sb.status()
    assert (info["state"], info["cpuMillicores"], info["memoryMiB"], info["ttlSeconds"]) == ("RUNNING", 500, 512, 120)
    sleeper = sb.process.exec("sleep", "300")
    sb.process.exec("python3", "-m", "http.server", "8081", "--bind", "127.0.0.1")
    url = sb.expose_port(8081, public=True)
    ended = sb.terminate()
    assert ended["state"] == "TERMINATED" and ended["reason"] == "terminated"
    # The exec stream ends with the container: wait() says so instead of hanging.
    with pytest.raises(SandboxError):
        sleeper.wait(timeout=60)
    again = sb.status()
    assert again["state"] == "TERMINATED" and again["endedAt"] is not None
    active = sandbox_platform.client.request("GET", "/sandbox", query={"active": True, "limit": 1000})["items"]
    assert sb.id not in [s["id"] for s in active]
    with pytest.raises(ApiError) as gone:
        sb.process.run_code("print(1)")
    assert gone.value.status == 409 and gone.value.code == "SANDBOX_NOT_RUNNING"
    with pytest.raises(ApiError):
        sb.expose_port(8082)
    assert _get(url)[0] >= 400


def test_sandbox_context_manager_terminates(sandbox_platform: Any) -> None:
    with Sandbox(client=sandbox_platform.client).create() as sb:
        assert sb.process.run_code("print(2 * 21)").result == "42"
    assert sb.status()["state"] == "TERMINATED"


def test_sandbox_egress_block_network_and_allow_list(platform: Any, make_sandbox: Callable[..., SandboxInstance],
                                                     sandbox: SandboxInstance) -> None:
    # conftest's worker lets its containers reach the host's bridge address (--egress-allow 10.219.77.1/32);
    # a sandbox's own policy can only narrow that.
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        probe = ("import socket\ns = socket.socket(); s.settimeout(3)\n"
                 f"try:\n    s.connect(('10.219.77.1', {port})); print('reached')\nexcept OSError:\n    print('blocked')\n")
        assert sandbox.process.run_code(probe).result == "reached", "the operator's allowance applies by default"
        small: dict[str, Any] = {"image": Image(), "cpu": "100m", "memory": 256}
        blocked = make_sandbox(**small, block_network=True)
        assert blocked.process.run_code(probe).result == "blocked"
        assert blocked.status()["blockNetwork"] is True
        blocked.terminate()
        other_port = make_sandbox(**small, allow_list=[f"10.219.77.1/32:{port + 1 if port < 65535 else 1}"])
        assert other_port.process.run_code(probe).result == "blocked"
        other_port.terminate()
        listed = make_sandbox(**small, allow_list=[f"10.219.77.1:{port}"])
        assert listed.process.run_code(probe).result == "reached"
        assert listed.status()["allowList"] == [f"10.219.77.1/32:{port}"]
        listed.terminate()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ApiError) as err:
        make_sandbox(image=Image(), allow_list=["10.1.2.3/8"])
    assert err.value.code == "INVALID_CONFIG" and "did you mean 10.0.0.0/8" in str(err.value)


# -- options (no platform needed) ------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "named"), [
    ({"cpu": "lots"}, "cpu="),
    ({"cpu": -1}, "cpu="),
    ({"memory": "a lot"}, "memory="),
    ({"keep_warm_seconds": 10**9}, "keep_warm_seconds="),
    ({"keep_warm_seconds": "600"}, "keep_warm_seconds="),
    ({"env": {"1BAD": "x"}}, "env="),
    ({"env": {"A": 1}}, "env="),
    ({"volumes": [("data", "/data")]}, "volumes="),
    ({"volumes": Volume("data", "/data")}, "volumes="),
    ({"volumes": [Volume("Bad Name", "/data")]}, "name="),
    ({"volumes": [Volume("data", "relative")]}, "mount_path="),
    ({"volumes": [Volume("data", "/etc/data")]}, "mount_path="),
    ({"volumes": [Volume("a", "/mnt/x"), Volume("b", "/mnt/x/")]}, "mount_path"),
    ({"image": "python:3.11"}, "image="),
    ({"image": Image(python_version="python3.12")}, "python_version="),
    ({"pool": "Not A Pool"}, "pool="),
    ({"client": "http://127.0.0.1:1994"}, "client="),
    ({"block_network": "yes"}, "block_network="),
    ({"allow_list": "10.0.0.0/8"}, "allow_list="),
    ({"allow_list": ["example.com"]}, "allow_list="),
    ({"block_network": True, "allow_list": []}, "mutually exclusive"),
])
def test_sandbox_bad_options_name_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError) as err:
        Sandbox(**options)
    assert isinstance(err.value, (OptionError, beta9.ImageError))
    assert named in str(err.value)


def test_sandbox_bad_call_arguments_name_the_argument() -> None:
    # Checked before anything is sent: this client points nowhere.
    sb = SandboxInstance("not-sent", Client("http://127.0.0.1:9", "token"))
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: sb.process.run_code("puts 1", language="ruby"), "language="),  # type: ignore[arg-type]
        (lambda: sb.process.run_code("print(1)", timeout=0), "timeout="),
        (lambda: sb.process.run_code(b"print(1)"), "code="),  # type: ignore[arg-type]
        (lambda: sb.process.exec(), "exec()"),
        (lambda: sb.process.exec("ls", 3), "args="),  # type: ignore[arg-type]
        (lambda: sb.process.exec("ls", env={"A-B": "1"}), "env="),
        (lambda: sb.process.kill(0), "pid="),
        (lambda: sb.process.kill(5, "SIGSTOP"), "signal="),  # type: ignore[arg-type]
        (lambda: sb.expose_port(70000), "port="),
        (lambda: sb.expose_port(8080, public="yes"), "public="),  # type: ignore[arg-type]
        (lambda: sb.update_ttl(-5), "seconds="),
        (lambda: sb.fs.write("x", 5), "data="),  # type: ignore[arg-type]
        (lambda: sb.fs.write("x", b"", mode=0o10000), "mode="),
        (lambda: sb.fs.read(""), "path="),
        (lambda: sb.fs.remove("x", recursive="yes"), "recursive="),  # type: ignore[arg-type]
        (lambda: sb.fs.upload_file("/no/such/local/file", "x"), "local_path="),
        (lambda: Sandbox.connect(""), "sandbox_id="),
    ]
    for call, named in cases:
        with pytest.raises(OptionError) as err:
            call()
        assert named in str(err.value), (named, str(err.value))


def test_sandbox_unreachable_gateway_is_an_api_error() -> None:
    sb = SandboxInstance("x", Client("http://127.0.0.1:9", "token"))
    with pytest.raises(ApiError) as err:
        sb.process.run_code("print(1)")
    assert err.value.code == "UNREACHABLE"
    with pytest.raises(ApiError):
        sb.process.exec("ls")
