"""``sandbox.process``: run code, start commands and stream their output, list and kill them."""
from __future__ import annotations

import http.client
import json
import signal as _signal
import threading
from typing import Any, Iterator

from .options import OptionError
from .sandbox_support import (
    ExecResult,
    Language,
    RunCodeResult,
    SandboxError,
    SandboxProcessInfo,
    Signal,
    _Http,
    _LANGUAGES,
    _check_env,
    _check_path,
    _check_signal,
    _quote,
)


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
