"""The runner's HTTP surface, the same protocol the Node runner speaks (runner-protocol.ts):

  GET  /health        503 {"status": phase} while loading or running on_start, then 200
  POST /invoke        {"input": …} → 200 {"result": …} | 422 INPUT_INVALID | 500 HANDLER_ERROR | 503 BUSY,
                      or an endpoint's generator streamed (stream.py)
  POST /invoke-batch  {"tasks": [{"id", "input"}, …]} → 200 NDJSON, one {"id", "status", "body"} per task as it ends
  POST /cancel/<id>   → 204, or 404 when no invocation of that task runs here
  ANY  /web/<path>    an ASGI app's request (asgi.py): the app's own status, headers and body

A thread per connection; a closed connection cancels the endpoint invocations it carried (it is
their heartbeat). A task attempt (/invoke-batch, or /invoke with a retry count: only the task
dispatcher sends one) outlives its caller instead: see attempts.py.
"""
from __future__ import annotations

import hmac
import json
import select
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .asgi import is_web_path
from .attempts import Attempt, TaskAttempts
from .invoker import Invoker, error_reply
from .stream import Stream, send_stream

MAX_BODY_BYTES = 64 * 1024 * 1024
TASK_ID_HEADER = "x-beta9-task-id"
TASK_RETRIES_HEADER = "x-beta9-task-retries"


def retries_of(value: Any) -> int:
    """A retry count from the gateway: a small non-negative integer, else 0."""
    try:
        n = int(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else 0
    except ValueError:
        return 0
    return n if 0 <= n <= 1000 else 0


class State:
    def __init__(self, container_id: str, concurrency: int, secret: str = "") -> None:
        #: The gateway's per-container secret (BETA9_RUNNER_SECRET): when set, every route but /health needs it.
        self.secret = secret
        self.phase = "starting"
        self.invoker: Invoker | None = None
        self.container_id = container_id
        self.concurrency = concurrency
        self.started = time.monotonic()
        self._attempts: TaskAttempts | None = None
        self._attempts_lock = threading.Lock()
        #: Seconds an orphaned task attempt waits to be asked for again (attempts.py).
        self.orphan_grace_s = 120.0

    def attempts(self, invoker: Invoker) -> TaskAttempts:
        """The loaded workload's task attempts (one table per invoker)."""
        with self._attempts_lock:  # connection threads ask at once: one table, or a join could miss
            if self._attempts is None or self._attempts.invoker is not invoker:
                self._attempts = TaskAttempts(invoker, orphan_grace_s=self.orphan_grace_s)
            return self._attempts


def _watch_disconnect(sock: socket.socket, on_close: Callable[[], None], done: threading.Event) -> None:
    """Calls on_close if the peer closes the connection before ``done`` is set."""
    def watch() -> None:
        while not done.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], 0.25)
                if readable and not done.is_set() and sock.recv(1, socket.MSG_PEEK) == b"":
                    on_close()
                    return
                if readable:
                    time.sleep(0.05)  # data waiting (a pipelined request): not a close
            except (OSError, ValueError):
                if not done.is_set():
                    on_close()
                return
    threading.Thread(target=watch, name="beta9-conn-watch", daemon=True).start()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "beta9-python-runner"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # the container log belongs to the user's code
            return

        def setup(self) -> None:
            super().setup()
            # Answers are small writes; without this, Nagle holds each behind the peer's delayed
            # ACK (40 ms per request on Linux).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, content_type: str = "application/json", extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            # Headers and body in one write (end_headers would send the headers alone first).
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()

        def _error(self, status: int, code: str, message: str, extra: dict[str, str] | None = None) -> None:
            self._send(status, error_reply(status, code, message)[1], extra=extra)

        def _body(self) -> bytes | None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._error(413, "PAYLOAD_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes", {"connection": "close"})
                return None
            return self.rfile.read(length) if length else b""

        def _ready_invoker(self) -> Invoker | None:
            if state.phase == "stopping":
                self._error(503, "SHUTTING_DOWN", "the runner is shutting down; send the task to another container")
                return None
            if state.invoker is None:
                self._error(503, "NOT_READY", "the workload is still loading; retry when GET /health answers 200")
                return None
            return state.invoker

        def _authorized(self) -> bool:
            """Every route but /health needs the gateway's per-container secret, when one is set."""
            if state.secret and not hmac.compare_digest((self.headers.get("authorization") or "").encode(), f"Bearer {state.secret}".encode()):
                self.close_connection = True  # its body is not read: the connection ends with the answer
                self._error(401, "AUTH_TOKEN_INVALID", "this runner answers its gateway only")
                return False
            return True

        def _web(self) -> None:
            """An ASGI app's request: /web + its path and query (asgi.py streams the answer)."""
            if not self._authorized():
                return
            invoker = self._ready_invoker()
            if invoker is None:
                self.close_connection = True
                return
            host = invoker.asgi
            if host is None:
                self.close_connection = True
                return self._error(404, "NOT_A_WEB_APP", "this workload is not a web app (@asgi from beta9); call POST /invoke")
            task_id = (self.headers.get(TASK_ID_HEADER) or "").strip() or str(uuid.uuid4())
            inv = invoker.begin(task_id)
            if inv is None:
                self.close_connection = True
                return self._error(503, "BUSY", f"all {state.concurrency} invocation slot(s) of this container are taken")

            def watch(on_close: Callable[[], None]) -> Callable[[], None]:
                done = threading.Event()
                _watch_disconnect(self.connection, on_close, done)
                return done.set
            try:
                failure = host.serve(self, self.path[len("/web"):] or "/", inv, watch)
            finally:
                inv.end()
            if failure is not None:
                self.close_connection = True
                self._send(*failure)

        def do_GET(self) -> None:
            if is_web_path(self.path):
                return self._web()
            path = urllib.parse.urlsplit(self.path).path
            if path != "/health":
                return self._error(404, "ROUTE_NOT_FOUND", f"the runner has no route GET {path}")
            if state.phase != "ready":
                return self._send(503, json.dumps({"status": state.phase}).encode())
            self._send(200, json.dumps({"status": "ok", "containerId": state.container_id or None,
                                        "uptimeMs": int((time.monotonic() - state.started) * 1000)}).encode())

        do_HEAD = do_GET

        def _web_only(self) -> None:
            if is_web_path(self.path):
                return self._web()
            self.close_connection = True
            self._error(405, "METHOD_NOT_ALLOWED", f"the runner has no route {self.command} {urllib.parse.urlsplit(self.path).path}")

        do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _web_only

        def do_POST(self) -> None:
            if is_web_path(self.path):
                return self._web()
            path = urllib.parse.urlsplit(self.path).path
            if not self._authorized():
                return
            if path == "/invoke":
                return self._invoke()
            if path == "/invoke-batch":
                return self._invoke_batch()
            if path.startswith("/cancel/") and path.count("/") == 2:
                self._body()
                task_id = urllib.parse.unquote(path[len("/cancel/"):])
                if state.invoker is not None and state.invoker.cancel(task_id):
                    return self._send(204, b"")
                return self._error(404, "TASK_NOT_FOUND", f"no invocation of task {task_id} is running in this container")
            self._body()
            self._error(404, "ROUTE_NOT_FOUND", f"the runner has no route POST {path}")

        def _invoke(self) -> None:
            invoker = self._ready_invoker()
            if invoker is None:
                return
            if invoker.asgi is not None:
                self.close_connection = True
                return self._error(404, "WEB_APP_ONLY", "this workload is an ASGI app (@asgi): its requests arrive under /web")
            raw = self._body()
            if raw is None:
                return
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as err:
                return self._error(400, "INVALID_JSON", f"the body is not valid JSON: {err}")
            if not isinstance(body, dict):
                return self._error(400, "INVALID_JSON", 'the body must be a JSON object like {"input": …}')
            task_id = (self.headers.get(TASK_ID_HEADER) or "").strip() or str(uuid.uuid4())
            if self.headers.get(TASK_RETRIES_HEADER) is not None:
                return self._invoke_task(invoker, task_id, body.get("input"))
            inv = invoker.begin(task_id)
            if inv is None:
                return self._error(503, "BUSY", f"all {state.concurrency} invocation slot(s) of this container are taken")
            done = threading.Event()
            _watch_disconnect(self.connection, inv.cancel, done)
            try:
                outcome = invoker.run(inv, body.get("input"), stream=True)
                if isinstance(outcome, Stream):
                    # The slot stays taken, and a dropped connection still cancels, until the stream ends.
                    return send_stream(self, outcome, self.headers.get("accept"), task_id)
            finally:
                done.set()
                inv.end()
            status, reply = outcome
            try:
                self._send(status, reply)
            except OSError:
                self.close_connection = True

        def _invoke_task(self, invoker: Invoker, task_id: str, payload: Any) -> None:
            """One task attempt: joined to a running attempt of the same task, or answered from a kept success."""
            attempt = state.attempts(invoker).begin(task_id, retries_of(self.headers.get(TASK_RETRIES_HEADER)))
            if attempt is None:
                return self._error(503, "BUSY", f"all {state.concurrency} invocation slot(s) of this container are taken")
            done = threading.Event()
            _watch_disconnect(self.connection, attempt.left, done)
            try:
                reply = attempt.answer(payload)
            finally:
                done.set()
            try:
                self._send(*reply)
            except OSError:
                self.close_connection = True

        def _invoke_batch(self) -> None:
            invoker = self._ready_invoker()
            if invoker is None:
                return
            raw = self._body()
            if raw is None:
                return
            try:
                tasks = (json.loads(raw) or {}).get("tasks")
            except (ValueError, AttributeError) as err:
                return self._error(400, "INVALID_JSON", f"the body is not valid JSON: {err}")
            if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), str) for t in tasks):
                return self._error(400, "INVALID_JSON", 'the body must be a JSON object like {"tasks": [{"id": …, "input": …}]}')
            self.send_response(200)
            self.send_header("content-type", "application/x-ndjson")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            write_lock = threading.Lock()
            attempts = state.attempts(invoker)
            begun: list[Attempt] = []
            gone = threading.Event()
            done = threading.Event()

            def left_all() -> None:
                with write_lock:
                    gone.set()
                    callers = list(begun)
                for attempt in callers:
                    attempt.left()

            def answer(task_id: str, status: int, body: bytes) -> None:
                line = b'{"id":' + json.dumps(task_id).encode() + b',"status":' + str(status).encode() + b',"body":' + body + b"}\n"
                with write_lock:
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    except OSError:
                        pass

            def one(task: dict[str, Any]) -> None:
                attempt = attempts.begin(task["id"], retries_of(task.get("retries")))
                if attempt is None:
                    return answer(task["id"], *error_reply(503, "BUSY", f"all {state.concurrency} invocation slot(s) of this container are taken"))
                with write_lock:
                    begun.append(attempt)
                    already_gone = gone.is_set()
                if already_gone:
                    attempt.left()
                answer(task["id"], *attempt.answer(task.get("input")))

            _watch_disconnect(self.connection, left_all, done)
            threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in tasks[1:]]
            for t in threads:
                t.start()
            if tasks:
                one(tasks[0])
            for t in threads:
                t.join()
            done.set()
            with write_lock:
                try:
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True

    return Handler


class RunnerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        sys.stderr.write(f"runner: internal error serving {client_address}: {err!r}\n")
