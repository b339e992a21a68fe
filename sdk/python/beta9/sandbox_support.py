"""What the sandbox modules share: limits, option checks, result types and the HTTP helper."""
from __future__ import annotations

import http.client
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from .client import API_PREFIX, ApiError, Client, _error_from
from .options import OptionError

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
        conn = self.client.new_connection(timeout, blocksize=_CHUNK)
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


@dataclass(frozen=True)
class ExecResult:
    """What ``process.run`` collects: the output of a command run to completion."""
    stdout: str
    stderr: str
    exit_code: int
    signal: str | None


_EGRESS_RULE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?(:\d{1,5}(-\d{1,5})?)?$")


def _check_network(where: str, block_network: Any, allow_list: Any) -> dict[str, Any]:
    """``block_network`` / ``allow_list`` → the create body's fields (the gateway checks each CIDR fully)."""
    if not isinstance(block_network, bool):
        raise OptionError(f"{where}(block_network={block_network!r}): expected True or False")
    if allow_list is None:
        return {"blockNetwork": True} if block_network else {}
    if block_network:
        raise OptionError(f"{where}(block_network=True, allow_list=...): they are mutually exclusive; "
                          "block_network allows nothing, allow_list only what it lists")
    if not isinstance(allow_list, (list, tuple)) or len(allow_list) > 64:
        raise OptionError(f"{where}(allow_list={allow_list!r}): expected a list of at most 64 IPv4 CIDRs")
    for entry in allow_list:
        if not isinstance(entry, str) or not _EGRESS_RULE.match(entry):
            raise OptionError(f"{where}(allow_list=[{entry!r}]): expected an IPv4 CIDR with an optional port or range, "
                              "e.g. '203.0.113.0/24', '203.0.113.7:443' or '0.0.0.0/0:8000-8100'")
    return {"allowList": list(allow_list)}
