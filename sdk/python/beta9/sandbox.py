"""Sandboxes: isolated containers for code you do not trust (an LLM's, a user's), with processes,
files and ports. A sandbox ends at its TTL (``keep_warm_seconds``, default 600 s) even when the
process that created it died; ``Sandbox.connect(id)`` reattaches from anywhere.

    from beam import Image, Sandbox

    sandbox = Sandbox(image=Image()).create()
    response = sandbox.process.run_code("print('I am running remotely')")
    print(response.result)
    sandbox.terminate()

The same API as the TypeScript SDK (``packages/sdk/src/sandbox.ts``), over the gateway's
``/api/v1/sandbox`` routes. Exec output (NDJSON events) and file bodies stream on connections of
their own, so neither is ever held in memory whole.
"""
from __future__ import annotations

import builtins
import http.client
import json
import os
import posixpath
import re
import signal as _signal
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Callable, Iterator, Literal

from .client import API_PREFIX, ApiError, Client, _error_from, default_client
from .deploy import build_image
from .image import Image
from .options import OptionError, Volume, build_config

__all__ = [
    "OutputStream", "RunCodeResult", "Sandbox", "SandboxFileInfo", "SandboxFileSystem", "SandboxInstance",
    "SandboxError", "SandboxProcess", "SandboxProcessInfo", "SandboxProcessManager", "ExecResult",
]

#: The longest lifetime a sandbox may be given (7 days); -1 means until terminated.
MAX_TTL_SECONDS = 7 * 24 * 3600
_LANGUAGES = ("python", "javascript", "typescript")
_SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
_RESERVED_MOUNT_PATHS = ("/", "/beta9", "/app", "/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHUNK = 1 << 20

Language = Literal["python", "javascript", "typescript"]
Signal = Literal["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]


class SandboxError(Exception):
    """A process could not start, or its output stream broke before its exit status came."""


class _DefaultImage:
    """Marks ``image`` left out: the default ``Image()`` (``image=None`` means no image at all)."""

    def __repr__(self) -> str:
        return "Image()"


_DEFAULT_IMAGE = _DefaultImage()


# -- what the gateway answers ---------------------------------------------------------------------

@dataclass(frozen=True)
class RunCodeResult:
    """What ``process.run_code`` answers once the code has ended."""
    #: What the code printed, without the last newline.
    result: str
    stdout: str
    stderr: str
    #: 128 + the signal's number when a signal ended it (137: SIGKILL, e.g. at the memory limit).
    exit_code: int | None
    signal: str | None
    #: Set when the sandbox killed the code: "output_limit" (it printed more than 16 MiB) or "timeout".
    stopped: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunCodeResult":
        return cls(result=str(data.get("result", "")), stdout=str(data.get("stdout", "")), stderr=str(data.get("stderr", "")),
                   exit_code=data.get("exitCode"), signal=data.get("signal"), stopped=data.get("stopped"))


@dataclass(frozen=True)
class SandboxProcessInfo:
    """A process started by ``exec`` (running, or recently ended), as ``process.list()`` gives it."""
    pid: int
    cmd: str
    args: list[str]
    cwd: str
    running: bool
    exit_code: int | None
    signal: str | None
    started_at: str
    ended_at: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SandboxProcessInfo":
        return cls(pid=int(data["pid"]), cmd=str(data.get("cmd", "")), args=list(data.get("args") or []), cwd=str(data.get("cwd", "")),
                   running=bool(data.get("running")), exit_code=data.get("exitCode"), signal=data.get("signal"),
                   started_at=str(data.get("startedAt", "")), ended_at=data.get("endedAt"))


@dataclass(frozen=True)
class SandboxFileInfo:
    """A path in the sandbox: ``type`` is "file", "directory", "symlink" or "other"; ``mode`` the permission bits."""
    name: str
    path: str
    type: str
    size: int
    mode: int
    modified_at: str

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SandboxFileInfo":
        return cls(name=str(data.get("name", "")), path=str(data.get("path", "")), type=str(data.get("type", "other")),
                   size=int(data.get("size") or 0), mode=int(data.get("mode") or 0), modified_at=str(data.get("modifiedAt", "")))


# -- the HTTP layer for streams ---------------------------------------------------------------------

class _Http:
    """JSON calls go through the Client; streaming ones (exec, run_code, file bodies) get a connection each."""

    def __init__(self, client: Client) -> None:
        self.client = client
        url = urllib.parse.urlsplit(client.gateway)
        self.https = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.https else 80)
        self.base = url.path.rstrip("/")

    def json(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        return self.client.request(method, path, body, query=query)

    def open(self, method: str, path: str, *, query: dict[str, str] | None = None, body: bytes | BinaryIO | None = None,
             content_type: str | None = None, length: int | None = None,
             timeout: float | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Sends one request on a fresh connection and answers it with the open response (2xx only;
        anything else becomes an ApiError). The caller reads the body and closes the connection."""
        full = f"{self.base}{API_PREFIX}{path}"
        if query:
            full += "?" + urllib.parse.urlencode(query)
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout, blocksize=_CHUNK)
        headers = {"accept": "application/json, application/x-ndjson, application/octet-stream"}
        if self.client.token:
            headers["authorization"] = f"Bearer {self.client.token}"
        if content_type:
            headers["content-type"] = content_type
        if length is not None:
            headers["content-length"] = str(length)
        try:
            try:
                conn.request(method, full, body=body, headers=headers)
                res = conn.getresponse()
            except OSError as err:
                raise ApiError(0, "UNREACHABLE", f"cannot reach the gateway at {self.client.gateway} ({err}); is it running (beta9 up)?") from None
            if not 200 <= res.status < 300:
                raise _error_from(res.status, method, path, res.read(), res.getheader("retry-after"))
            return conn, res
        except BaseException:
            conn.close()
            raise

    def call(self, method: str, path: str, **options: Any) -> Any:
        """Like ``open``, for an answer that is one JSON document (None when empty)."""
        conn, res = self.open(method, path, **options)
        try:
            data = res.read()
        finally:
            conn.close()
        return json.loads(data) if data else None


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _check_env(where: str, env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, dict) or not all(isinstance(k, str) and _ENV.match(k) and isinstance(v, str) for k, v in env.items()):
        raise OptionError(f"{where}(env={env!r}): expected a dict of NAME -> string value")
    return dict(env)


def _check_path(where: str, option: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value) or len(str(value)) > 4096:
        raise OptionError(f"{where}({option}={value!r}): expected a path in the sandbox (relative ones start at /workspace)")
    return str(value)


def _check_signal(where: str, value: Any) -> str:
    if value not in _SIGNALS:
        raise OptionError(f"{where}(signal={value!r}): expected one of {', '.join(_SIGNALS)}")
    return str(value)


def _check_ttl(where: str, option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_TTL_SECONDS:
        raise OptionError(f"{where}({option}={value!r}): expected seconds as an integer from 0 to {MAX_TTL_SECONDS} (7 days), or -1 for until terminated")
    return value


# -- processes --------------------------------------------------------------------------------------

class OutputStream:
    """One output stream of a process: iterate it for lines (streamed while the process runs; the
    iteration ends once it has exited, the last line without a newline included), or ``read()``
    for everything once it has ended. Every reader sees the stream from its start."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._ended = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def _push(self, data: str) -> None:
        with self._cond:
            self._chunks.append(data)
            self._cond.notify_all()

    def _end(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._ended = True
            self._error = error
            self._cond.notify_all()

    def chunks(self) -> Iterator[str]:
        """Raw chunks as they arrive (split anywhere)."""
        i = 0
        while True:
            with self._cond:
                while i >= len(self._chunks) and not self._ended:
                    self._cond.wait()
                if i >= len(self._chunks):
                    if self._error is not None:
                        raise self._error
                    return
                pending = self._chunks[i:]
            i += len(pending)
            yield from pending

    def __iter__(self) -> Iterator[str]:
        """Lines without their newline; a last line without one comes at the end."""
        partial = ""
        for chunk in self.chunks():
            partial += chunk
            *lines, partial = partial.split("\n")
            yield from lines
        if partial:
            yield partial

    def read(self) -> str:
        """Everything the stream carried; waits until the process has ended."""
        return "".join(self.chunks())


class SandboxProcess:
    """A process started by ``sandbox.process.exec``: ``stdout``/``stderr`` stream its output while it
    runs (a thread reads it, so neither stream blocks the other), ``wait()`` gives its exit code once
    all of its output has arrived, ``kill()`` ends it (and its children), never the sandbox."""

    def __init__(self, pid: int, sandbox_id: str, transport: _Http, conn: http.client.HTTPConnection,
                 res: http.client.HTTPResponse, cmd: str) -> None:
        self.pid = pid
        self.cmd = cmd
        self.sandbox_id = sandbox_id
        self.stdout = OutputStream()
        self.stderr = OutputStream()
        self._http = transport
        self._conn = conn
        self._res = res
        self._done = threading.Event()
        self._exit_code: int | None = None
        self._signal: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"beta9-sandbox-exec-{pid}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        error: BaseException | None = None
        try:
            while True:
                line = self._res.readline()
                if not line:
                    raise SandboxError(f"the output stream of process {self.pid} ended before its exit status (was the sandbox terminated?)")
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                if kind == "stdout":
                    self.stdout._push(event["data"])
                elif kind == "stderr":
                    self.stderr._push(event["data"])
                elif kind == "error":
                    self.stderr._push(f"{event.get('message', '')}\n")
                elif kind == "exit":
                    self._signal = event.get("signal")
                    code = event.get("exitCode")
                    if code is None:
                        number = getattr(_signal, str(self._signal), None) if self._signal else None
                        code = 128 + int(number) if number is not None else -1
                    self._exit_code = int(code)
                    return
        except BaseException as err:  # noqa: BLE001 (handed to wait() and the streams)
            if isinstance(err, (OSError, http.client.HTTPException, ValueError)):
                err = SandboxError(f"the output stream of process {self.pid} broke: {err!r}")
            error = err
        finally:
            self._error = error
            self.stdout._end(error)
            self.stderr._end(error)
            self._conn.close()
            self._done.set()

    @property
    def exit_code(self) -> int | None:
        """The exit code once it has exited (128 + the signal's number when a signal ended it), else None."""
        return self._exit_code if self._done.is_set() else None

    @property
    def signal(self) -> str | None:
        """The signal that ended it ("SIGKILL"), if one did."""
        return self._signal

    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (128 + the signal's number when killed), once all of its output has arrived."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"process {self.pid} ({self.cmd}) still runs after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._exit_code is not None
        return self._exit_code

    def kill(self, signal: Signal = "SIGKILL") -> None:
        """Signals this process and its children (default SIGKILL); other processes and the sandbox go on."""
        sig = _check_signal("SandboxProcess.kill", signal)
        self._http.json("POST", f"/sandbox/{_quote(self.sandbox_id)}/process/{self.pid}/kill", {"signal": sig})

    def close(self) -> None:
        """Stops reading its output (the process itself goes on; kill it by pid)."""
        self._conn.close()

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exit_code={self._exit_code}"
        return f"SandboxProcess(pid={self.pid}, cmd={self.cmd!r}, {state})"


@dataclass(frozen=True)
class ExecResult:
    """What ``process.run`` collects: the output of a command run to completion."""
    stdout: str
    stderr: str
    exit_code: int
    signal: str | None


class SandboxProcessManager:
    """``sandbox.process``: run code, start commands, list and kill them."""

    def __init__(self, sandbox_id: str, http: _Http) -> None:
        self._id = sandbox_id
        self._http = http

    def run_code(self, code: str, language: Language = "python", timeout: float | None = None, *,
                 cwd: str | None = None, env: dict[str, str] | None = None) -> RunCodeResult:
        """Runs code to completion (python by default; javascript and typescript with the sandbox's
        own node). ``timeout`` in seconds; output is capped at 16 MiB. Either limit kills the code,
        and the result's ``stopped`` says which."""
        where = "run_code"
        if not isinstance(code, str):
            raise OptionError(f"{where}(code={code!r}): expected the code as a string")
        if len(code.encode("utf-8")) > 512 * 1024:
            raise OptionError(f"{where}(code=...): at most 512 KiB of code; upload a file and exec it instead")
        if language not in _LANGUAGES:
            raise OptionError(f"{where}(language={language!r}): expected one of {', '.join(map(repr, _LANGUAGES))}")
        body: dict[str, Any] = {"code": code, "language": language}
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86_400:
                raise OptionError(f"{where}(timeout={timeout!r}): expected seconds, more than 0 and at most 86400")
            body["timeout"] = timeout
        if cwd is not None:
            body["cwd"] = _check_path(where, "cwd", cwd)
        if (checked := _check_env(where, env)) is not None:
            body["env"] = checked
        data = self._http.call("POST", f"/sandbox/{_quote(self._id)}/run-code", body=json.dumps(body).encode(),
                               content_type="application/json")
        return RunCodeResult.from_json(data)

    def exec(self, *args: str, cwd: str | None = None, env: dict[str, str] | None = None,
             stdin: str | None = None) -> SandboxProcess:
        """Starts ``args[0] args[1:]…`` (looked up in PATH; cwd defaults to /workspace) and streams its output."""
        where = "exec"
        if not args:
            raise OptionError(f"{where}(): expected a command, e.g. exec(\"ls\", \"-la\")")
        if not all(isinstance(a, str) for a in args):
            raise OptionError(f"{where}(args={args!r}): expected the command and its arguments as strings")
        if not args[0]:
            raise OptionError(f"{where}(args={args!r}): the command is empty")
        body: dict[str, Any] = {"cmd": args[0], "args": list(args[1:])}
        if cwd is not None:
            body["cwd"] = _check_path(where, "cwd", cwd)
        if (checked := _check_env(where, env)) is not None:
            body["env"] = checked
        if stdin is not None:
            if not isinstance(stdin, str):
                raise OptionError(f"{where}(stdin={stdin!r}): expected a string")
            body["stdin"] = stdin
        conn, res = self._http.open("POST", f"/sandbox/{_quote(self._id)}/exec", body=json.dumps(body).encode(),
                                    content_type="application/json")
        try:
            first: dict[str, Any] | None = None
            error: str | None = None
            while first is None:
                line = res.readline()
                if not line:
                    raise SandboxError(error or f"exec {args[0]}: the sandbox closed the stream before the process started")
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "error":
                    error = str(event.get("message") or f"exec {args[0]} failed")
                elif event.get("type") == "exit" and error is not None:
                    raise SandboxError(error)
                elif event.get("type") == "start":
                    first = event
                else:
                    raise SandboxError(f"exec {args[0]}: unexpected first event {event.get('type')!r}")
        except BaseException:
            conn.close()
            raise
        return SandboxProcess(int(first["pid"]), self._id, self._http, conn, res, args[0])

    def run(self, *args: str, cwd: str | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None) -> ExecResult:
        """Runs a command to completion and collects its output."""
        p = self.exec(*args, cwd=cwd, env=env, stdin=stdin)
        code = p.wait()
        return ExecResult(stdout=p.stdout.read(), stderr=p.stderr.read(), exit_code=code, signal=p.signal)

    def list(self) -> list[SandboxProcessInfo]:
        """Processes started by exec (running and recently ended)."""
        data = self._http.json("GET", f"/sandbox/{_quote(self._id)}/process")
        return [SandboxProcessInfo.from_json(item) for item in data.get("items", [])]

    def kill(self, pid: int, signal: Signal = "SIGKILL") -> None:
        """Signals one exec'd process and its children (default SIGKILL)."""
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
            raise OptionError(f"kill(pid={pid!r}): expected a process id from exec")
        sig = _check_signal("kill", signal)
        self._http.json("POST", f"/sandbox/{_quote(self._id)}/process/{pid}/kill", {"signal": sig})


# -- files ------------------------------------------------------------------------------------------

class SandboxFileSystem:
    """``sandbox.fs``: files in and out (streamed, any size), listings and directories. Paths are as
    the sandbox sees them; relative ones start at /workspace."""

    def __init__(self, sandbox_id: str, http: _Http) -> None:
        self._id = sandbox_id
        self._http = http

    @property
    def _file(self) -> str:
        return f"/sandbox/{_quote(self._id)}/fs/file"

    def upload_file(self, local_path: str | os.PathLike[str], remote_path: str, *, mode: int | None = None) -> SandboxFileInfo:
        """Streams a local file into the sandbox (any size; never held in memory whole)."""
        remote = _check_path("upload_file", "remote_path", remote_path)
        query = {"path": remote, **self._mode("upload_file", mode)}
        local = Path(local_path)
        if not local.is_file():
            raise OptionError(f"upload_file(local_path={str(local_path)!r}): no such file")
        with open(local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = self._http.call("PUT", self._file, query=query, body=f, content_type="application/octet-stream",
                                   length=size, timeout=self._http.client.timeout)
        return SandboxFileInfo.from_json(data)

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str]) -> int:
        """Streams a sandbox file to a local path (written whole or not at all); answers its size."""
        remote = _check_path("download_file", "remote_path", remote_path)
        local = Path(local_path)
        part = local.with_name(f".{local.name}.{os.getpid()}.part")
        conn, res = self._http.open("GET", self._file, query={"path": remote}, timeout=self._http.client.timeout)
        size = 0
        try:
            with open(part, "wb") as out:
                while chunk := res.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(part, local)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
        return size

    def read(self, path: str) -> bytes:
        """A file's bytes."""
        remote = _check_path("read", "path", path)
        conn, res = self._http.open("GET", self._file, query={"path": remote}, timeout=self._http.client.timeout)
        try:
            return res.read()
        finally:
            conn.close()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: bytes | bytearray | memoryview | str, *, mode: int | None = None) -> SandboxFileInfo:
        """Writes a file (replaced atomically; its parents are created); ``str`` is written as UTF-8."""
        remote = _check_path("write", "path", path)
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:
            raise OptionError(f"write(data={type(data).__name__}): expected bytes or str")
        result = self._http.call("PUT", self._file, query={"path": remote, **self._mode("write", mode)}, body=body,
                                 content_type="application/octet-stream", length=len(body), timeout=self._http.client.timeout)
        return SandboxFileInfo.from_json(result)

    def list(self, path: str = ".") -> list[SandboxFileInfo]:
        """A directory's entries."""
        data = self._http.json("GET", f"/sandbox/{_quote(self._id)}/fs/list", query={"path": _check_path("list", "path", path)})
        return [SandboxFileInfo.from_json(item) for item in data.get("items", [])]

    def stat(self, path: str) -> SandboxFileInfo:
        """A path's type, size, mode and time (a symlink is described, not followed)."""
        return SandboxFileInfo.from_json(self._http.json("GET", f"/sandbox/{_quote(self._id)}/fs/stat",
                                                         query={"path": _check_path("stat", "path", path)}))

    def mkdir(self, path: str) -> SandboxFileInfo:
        """Creates a directory and its parents."""
        return SandboxFileInfo.from_json(self._http.json("POST", f"/sandbox/{_quote(self._id)}/fs/mkdir",
                                                         query={"path": _check_path("mkdir", "path", path)}))

    def remove(self, path: str, recursive: bool = False) -> None:
        """Removes a file, symlink or directory (``recursive=True`` for one that is not empty)."""
        if not isinstance(recursive, bool):
            raise OptionError(f"remove(recursive={recursive!r}): expected True or False")
        query: dict[str, Any] = {"path": _check_path("remove", "path", path)}
        if recursive:
            query["recursive"] = "true"
        self._http.json("DELETE", f"/sandbox/{_quote(self._id)}/fs", query=query)

    # beta9's names for the same operations.
    def list_files(self, path: str = ".") -> builtins.list[SandboxFileInfo]:
        return self.list(path)

    def stat_file(self, path: str) -> SandboxFileInfo:
        return self.stat(path)

    def create_directory(self, path: str) -> SandboxFileInfo:
        return self.mkdir(path)

    def delete_file(self, path: str) -> None:
        self.remove(path)

    def delete_directory(self, path: str) -> None:
        self.remove(path, recursive=True)

    @staticmethod
    def _mode(where: str, mode: Any) -> dict[str, str]:
        if mode is None:
            return {}
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise OptionError(f"{where}(mode={mode!r}): expected permission bits such as 0o644")
        return {"mode": format(mode, "03o")}


# -- sandboxes --------------------------------------------------------------------------------------

class SandboxInstance:
    """A running (or ended) sandbox. ``terminate()`` ends it; so does leaving a ``with`` block."""

    def __init__(self, sandbox_id: str, client: Client) -> None:
        self.id = sandbox_id
        self.client = client
        self._http = _Http(client)
        self.process = SandboxProcessManager(sandbox_id, self._http)
        self.fs = SandboxFileSystem(sandbox_id, self._http)

    @property
    def sandbox_id(self) -> str:
        return self.id

    def status(self) -> dict[str, Any]:
        """The gateway's record: ``state`` (PENDING, RUNNING, TERMINATED), ``reason``, ``expiresAt``, ``exposed``…"""
        info: dict[str, Any] = self._http.json("GET", f"/sandbox/{_quote(self.id)}")
        return info

    def terminate(self) -> dict[str, Any]:
        """Ends the sandbox: its container and everything in it. Answers the ended record."""
        info: dict[str, Any] = self._http.json("POST", f"/sandbox/{_quote(self.id)}/terminate")
        return info

    def update_ttl(self, seconds: int) -> dict[str, Any]:
        """The sandbox now ends ``seconds`` from now (-1: only when terminated)."""
        ttl = _check_ttl("update_ttl", "seconds", seconds)
        info: dict[str, Any] = self._http.json("POST", f"/sandbox/{_quote(self.id)}/ttl", {"ttlSeconds": ttl})
        return info

    def expose_port(self, port: int, public: bool = False) -> str:
        """A URL through the gateway that reaches ``port`` in the sandbox (it needs a token unless ``public``)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65_535:
            raise OptionError(f"expose_port(port={port!r}): expected a port number from 1 to 65535")
        if not isinstance(public, bool):
            raise OptionError(f"expose_port(public={public!r}): expected True or False")
        return str(self._http.json("POST", f"/sandbox/{_quote(self.id)}/port", {"port": port, "public": public})["url"])

    def __enter__(self) -> "SandboxInstance":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"SandboxInstance(id={self.id!r})"


class Sandbox:
    """A sandbox to create: ``Sandbox(image=Image(), cpu=1, memory="1Gi").create()``.

    ``image`` defaults to ``Image()`` (Debian with python3, built once and cached); ``image=None``
    runs on the worker's own root filesystem. ``cpu``: cores or "500m" (default 1); ``memory``: MiB
    or "2Gi" (default 1024); ``keep_warm_seconds``: lifetime (default 600, -1 until terminated);
    ``volumes``: named volumes mounted read-write, kept on the worker. Options are checked here,
    before anything is sent, and a bad one raises an OptionError that names it.
    """

    def __init__(self, image: Image | None | _DefaultImage = _DEFAULT_IMAGE, cpu: float | str | None = None,
                 memory: int | str | None = None, keep_warm_seconds: int | None = None,
                 env: dict[str, str] | None = None, volumes: list[Volume] | None = None, pool: str | None = None,
                 client: Client | None = None, on_build_log: Callable[[str], None] | None = None,
                 secrets: list[str] | None = None) -> None:
        where = "Sandbox"
        if isinstance(image, _DefaultImage):
            image = Image()
        if image is not None and not isinstance(image, Image):
            raise OptionError(f"{where}(image={image!r}): expected an Image (from beta9 import Image), or None for the worker's root filesystem")
        if image is not None:
            image.to_spec()  # an image that cannot be built fails here, by option name
        if volumes is not None and not isinstance(volumes, (list, tuple)):
            raise OptionError(f"{where}(volumes={volumes!r}): expected a list of Volume(name=…, mount_path=…)")
        self.config = build_config(where, cpu=cpu, memory=memory, env=env, secrets=secrets, volumes=list(volumes) if volumes else None)
        mounts: list[str] = []
        for v in self.config.get("volumes", []):
            path = posixpath.normpath(v["mountPath"]).rstrip("/")
            if path.startswith("//"):
                path = path[1:]
            if path == "" or any(path == r or (r != "/" and path.startswith(f"{r}/")) for r in _RESERVED_MOUNT_PATHS):
                raise OptionError(f"{where}(volumes=[Volume(mount_path={v['mountPath']!r})]): {v['mountPath']} is reserved; "
                                  "mount volumes elsewhere, e.g. /workspace/data or /mnt/models")
            if path in mounts:
                raise OptionError(f"{where}(volumes=...): two volumes share mount_path {path!r}")
            mounts.append(path)
        if len(mounts) > 16:
            raise OptionError(f"{where}(volumes=...): at most 16 volumes, got {len(mounts)}")
        if keep_warm_seconds is not None:
            self.config["keepWarmSeconds"] = _check_ttl(where, "keep_warm_seconds", keep_warm_seconds)
        if pool is not None:
            if not isinstance(pool, str) or not _NAME.match(pool):
                raise OptionError(f"{where}(pool={pool!r}): expected a pool name (lowercase letters, digits, '.', '_' or '-')")
            self.config["pool"] = pool
        if client is not None and not isinstance(client, Client):
            raise OptionError(f"{where}(client={client!r}): expected a beta9.Client, or None for the environment's")
        if on_build_log is not None and not callable(on_build_log):
            raise OptionError(f"{where}(on_build_log={on_build_log!r}): expected a function that takes a line")
        self.image = image
        self.client = client
        self.on_build_log = on_build_log

    def create(self) -> SandboxInstance:
        """Builds the image if needed (once per spec), starts the sandbox and answers once it runs."""
        client = self.client or default_client()
        body = dict(self.config)
        if self.image is not None:
            body["imageId"] = build_image(client, self.image.to_spec(), self.on_build_log)
        created = client.request("POST", "/sandbox", body)
        instance = SandboxInstance(str(created["id"]), client)
        try:
            client.request("GET", f"/sandbox/{_quote(instance.id)}", query={"wait": "ready"})
        except BaseException:
            # One that never got ready is not left to run out its TTL.
            try:
                instance.terminate()
            except ApiError:
                pass
            raise
        return instance

    @staticmethod
    def connect(sandbox_id: str, client: Client | None = None) -> SandboxInstance:
        """Reattaches to a sandbox by id (from another process, after a crash, from the CLI's list)."""
        if not isinstance(sandbox_id, str) or not sandbox_id or len(sandbox_id) > 128:
            raise OptionError(f"Sandbox.connect(sandbox_id={sandbox_id!r}): expected a sandbox id")
        if client is not None and not isinstance(client, Client):
            raise OptionError(f"Sandbox.connect(client={client!r}): expected a beta9.Client")
        client = client or default_client()
        client.request("GET", f"/sandbox/{_quote(sandbox_id)}")
        return SandboxInstance(sandbox_id, client)

    def __repr__(self) -> str:
        return f"Sandbox(image={self.image!r}, config={self.config!r})"
