"""ASGI apps (``@asgi``: FastAPI, Starlette, or any ``async def app(scope, receive, send)``) served
by the Python runner under the web prefix, as the Node runner serves a ``webApp()``
(runner-protocol.ts): ``/web`` + the app's path and query, the caller's method, headers and body.

The app runs on the invoker's asyncio loop; the connection's own thread does every read and write
for it, one at a time, in the order the app asks (``receive`` and ``send`` queue a request to that
thread and wait for it). So a slow caller slows the app at its ``await send(...)``, a large upload
is read in bounded chunks as the app asks for them, and nothing is buffered here without bound.

The answer carries x-beta9-stream: response (the gateway relays status, headers and body as they
come). An app that fails before it starts its response answers 500 HANDLER_ERROR with the
traceback, as a handler does; one that fails after is cut (the caller sees an incomplete body).
An upgrade to a WebSocket runs the app's ``websocket`` scope instead (asgi_ws.py).
Lifespan: ``startup`` runs once when the runner loads the app (``startup.failed`` stops the
container with the app's message), ``shutdown`` when the runner stops; an app without lifespan
support is served all the same, as ASGI servers do.
"""
from __future__ import annotations

import asyncio
import inspect
import queue
import sys
import traceback
import urllib.parse
from typing import Any, Callable

from .asgi_ws import is_upgrade, serve_websocket
from .stream import STREAM_HEADER

WEB_PATH_PREFIX = "/web"
WEB_AUTHORIZATION_HEADER = "x-beta9-authorization"
#: Headers of this hop or of the runner protocol, never handed to the app.
_DROP_REQUEST = {"authorization", "connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer",
                 WEB_AUTHORIZATION_HEADER, "x-beta9-task-id", "x-beta9-task-retries"}
_DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", STREAM_HEADER}
#: The most one ``receive()`` hands the app at once.
READ_CHUNK = 64 * 1024


def is_web_path(raw: str) -> bool:
    """A web app's route, told from the raw URL: ``/web/../invoke`` is the app's, never /invoke."""
    return raw.startswith(WEB_PATH_PREFIX) and (len(raw) == len(WEB_PATH_PREFIX) or raw[len(WEB_PATH_PREFIX)] in "/?")


def is_asgi_callable(value: Any) -> bool:
    """``async def app(scope, receive, send)`` itself (or an object with such a ``__call__``)."""
    call = value if inspect.isfunction(value) or inspect.ismethod(value) else getattr(value, "__call__", None)
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        params = [p for p in inspect.signature(call).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 3


class AppFailedError(Exception):
    """The app refused to start (lifespan ``startup.failed``) or is not an ASGI app."""


class _Body:
    """The request body as the app reads it: Content-Length or chunked framing, in bounded chunks."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("transfer-encoding") or "").lower()
        self.left = 0 if self.chunked else int(headers.get("content-length") or 0)
        self.chunk_left = 0
        self.done = not self.chunked and self.left == 0

    def read(self) -> tuple[bytes, bool]:
        """The next piece and whether more follows; raises OSError when the caller went away."""
        if self.done:
            return b"", False
        if not self.chunked:
            data = self.rfile.read1(min(self.left, READ_CHUNK)) if hasattr(self.rfile, "read1") else self.rfile.read(min(self.left, READ_CHUNK))
            if not data:
                raise ConnectionResetError("the caller closed the connection mid-body")
            self.left -= len(data)
            self.done = self.left == 0
            return data, not self.done
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionResetError("the caller closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self.done = True
                return b"", False
            self.chunk_left = size
        data = self.rfile.read(min(self.chunk_left, READ_CHUNK))
        if not data:
            raise ConnectionResetError("the caller closed the connection mid-body")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(8)  # the CRLF after the chunk
        return data, True


def _scope(handler: Any, app_path: str, state: dict[str, Any]) -> dict[str, Any]:
    split = urllib.parse.urlsplit(app_path if app_path.startswith("/") else "/" + app_path)
    headers: list[tuple[bytes, bytes]] = []
    for name, value in handler.headers.items():
        lname = name.lower()
        if lname in _DROP_REQUEST or lname == "host":
            continue
        headers.append((lname.encode("latin-1"), value.encode("latin-1")))
    forwarded_host = handler.headers.get("x-forwarded-host") or "localhost"
    headers.append((b"host", forwarded_host.encode("latin-1")))
    caller = handler.headers.get(WEB_AUTHORIZATION_HEADER)
    if caller is not None:
        headers.append((b"authorization", caller.encode("latin-1")))
    client_ip = (handler.headers.get("x-forwarded-for") or "").split(",")[0].strip() or handler.client_address[0]
    host, _, port = forwarded_host.rpartition(":") if forwarded_host.rsplit(":", 1)[-1].isdigit() else (forwarded_host, "", "")
    scheme = "https" if handler.headers.get("x-forwarded-proto") == "https" else "http"
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": handler.command.upper(), "scheme": scheme,
        "path": urllib.parse.unquote(split.path), "raw_path": split.path.encode("latin-1"),
        "query_string": split.query.encode("latin-1"),
        # Where the gateway mounts the app (/endpoint/<name>): apps build their own URLs with it.
        "root_path": handler.headers.get("x-forwarded-prefix") or "",
        "headers": headers, "client": (client_ip, 0),
        "server": (host or forwarded_host, int(port) if port else (443 if scheme == "https" else 80)),
        "state": dict(state),
    }


class AsgiHost:
    """One ASGI app in a runner: its lifespan and its requests."""

    def __init__(self, app: Any, loop: Callable[[], asyncio.AbstractEventLoop], name: str) -> None:
        self.app = app
        self.loop = loop
        self.name = name
        self.state: dict[str, Any] = {}
        self._lifespan: tuple[asyncio.Queue[dict[str, Any]], asyncio.Future[Any]] | None = None

    # -- lifespan ---------------------------------------------------------------------------------

    def startup(self, timeout: float = 300.0) -> None:
        """Runs the app's lifespan startup; raises AppFailedError when the app says it failed."""
        loop = self.loop()

        async def begin() -> dict[str, Any]:
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            started, stopped = loop.create_future(), loop.create_future()
            self._lifespan = (inbox, stopped)

            async def send(message: dict[str, Any]) -> None:
                kind = str(message.get("type", ""))
                target = started if kind.startswith("lifespan.startup") else stopped if kind.startswith("lifespan.shutdown") else None
                if target is not None and not target.done():
                    target.set_result(message)

            async def run() -> None:
                scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
                try:
                    await self.app(scope, inbox.get, send)
                except BaseException:  # no lifespan support (or a failure it reported first)
                    pass
                for future in (started, stopped):
                    if not future.done():
                        future.set_result({"type": "unsupported"})
            loop.create_task(run())
            await inbox.put({"type": "lifespan.startup"})
            return await started
        message = asyncio.run_coroutine_threadsafe(begin(), loop).result(timeout)
        if message["type"] == "lifespan.startup.failed":
            raise AppFailedError(f'ASGI app "{self.name}" failed to start: {message.get("message") or "lifespan.startup.failed"}')
        if message["type"] == "unsupported":
            self._lifespan = None  # served without lifespan events, as the spec asks of servers

    def shutdown(self, timeout: float = 10.0) -> None:
        if self._lifespan is None:
            return
        inbox, stopped = self._lifespan

        async def main() -> None:
            await inbox.put({"type": "lifespan.shutdown"})
            await asyncio.wait_for(asyncio.shield(stopped), timeout)
        try:
            asyncio.run_coroutine_threadsafe(main(), self.loop()).result(timeout + 1)
        except BaseException:  # the app's cleanup failing or hanging does not hold the container
            pass

    # -- requests ---------------------------------------------------------------------------------

    def serve(self, handler: Any, app_path: str, invocation: Any,
              watch: Callable[[Callable[[], None]], Callable[[], None]]) -> tuple[int, bytes] | None:
        """Serves one request on ``handler``'s connection. ``watch(on_close)`` calls on_close if the
        caller goes away, until the function it returns is called. Returns an error reply (status,
        JSON) to send when the app failed before starting its response, else None (it went out)."""
        loop = self.loop()
        scope = _scope(handler, app_path, self.state)
        if is_upgrade(handler.headers):
            serve_websocket(handler, self.app, scope, loop, invocation, lambda err: self._log(invocation, err))
            return None
        body = _Body(handler.rfile, handler.headers)
        ops: queue.Queue[Any] = queue.Queue()
        head_only = scope["method"] == "HEAD"
        response: dict[str, Any] = {"started": False, "complete": False, "chunked": False, "no_body": False}
        holder: dict[str, Any] = {}

        async def app_main() -> None:
            disconnected = asyncio.Event()
            holder["disconnected"] = disconnected

            async def io(kind: str, payload: Any = None) -> Any:
                future = asyncio.get_running_loop().create_future()
                ops.put((kind, payload, future))
                return await future

            async def receive() -> dict[str, Any]:
                if not body.done and not disconnected.is_set():
                    try:
                        data, more = await io("read")
                    except OSError:
                        return {"type": "http.disconnect"}
                    return {"type": "http.request", "body": data, "more_body": more}
                await disconnected.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if disconnected.is_set():
                    raise OSError("the caller closed the connection")
                await io("write", message)
            await self.app(scope, receive, send)

        def finished(_: Any) -> None:
            ops.put(None)
        future = asyncio.run_coroutine_threadsafe(app_main(), loop)
        invocation.future = future
        future.add_done_callback(finished)

        def on_gone() -> None:
            # The app hears http.disconnect, and is cancelled as any handler whose caller left.
            event = holder.get("disconnected")
            if event is not None:
                loop.call_soon_threadsafe(event.set)
            invocation.cancel()
        stop_watching = watch(on_gone)

        def settle(fut: Any, result: Any = None, error: BaseException | None = None) -> None:
            def apply() -> None:
                if fut.done():
                    return
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)
            loop.call_soon_threadsafe(apply)

        while True:
            op = ops.get()
            if op is None:
                break
            kind, payload, fut = op
            try:
                if kind == "read":
                    settle(fut, body.read())
                else:
                    self._write(handler, payload, response, head_only)
                    settle(fut)
            except OSError as err:
                handler.close_connection = True
                settle(fut, error=OSError(str(err)))
                on_gone()
        stop_watching()
        error = future.exception() if not future.cancelled() else None
        if not response["started"]:
            if future.cancelled():
                handler.close_connection = True
                return None
            if error is not None:
                return self._failure(invocation, error)
            return 500, b'{"error":{"code":"HANDLER_ERROR","message":"the ASGI app returned without sending a response"}}'
        if error is not None and not response["complete"]:
            self._log(invocation, error)
        if not response["complete"]:
            handler.close_connection = True  # cut: the caller sees an incomplete body
        elif not body.done:
            handler.close_connection = True  # the app answered without reading the whole body
        return None

    def _write(self, handler: Any, message: dict[str, Any], response: dict[str, Any], head_only: bool) -> None:
        kind = message.get("type")
        wfile = handler.wfile
        if kind == "http.response.start":
            if response["started"]:
                raise RuntimeError("the ASGI app sent http.response.start twice")
            status = int(message["status"])
            headers = [(bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1")) for k, v in message.get("headers", [])]
            has_length = any(k == "content-length" for k, _ in headers)
            response["no_body"] = head_only or status in (204, 304) or 100 <= status < 200
            response["chunked"] = not has_length and not response["no_body"]
            lines = [f"HTTP/1.1 {status} {_reason(status)}\r\n"]
            for k, v in headers:
                if k not in _DROP_RESPONSE:
                    lines.append(f"{k}: {v}\r\n")
            lines.append(f"{STREAM_HEADER}: response\r\n")
            if response["chunked"]:
                lines.append("transfer-encoding: chunked\r\n")
            lines.append("\r\n")
            # Sent with the first part of the body: one write, not two.
            response["head"] = "".join(lines).encode("latin-1")
            response["started"] = True
            return
        if kind == "http.response.body":
            if not response["started"] or response["complete"]:
                raise RuntimeError("the ASGI app sent a body before http.response.start, or after its last part")
            data = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            out = response.pop("head", b"")
            if data and not response["no_body"]:
                out += b"%x\r\n%s\r\n" % (len(data), data) if response["chunked"] else data
            if not more:
                if response["chunked"]:
                    out += b"0\r\n\r\n"
                response["complete"] = True
            if out:
                wfile.write(out)
                wfile.flush()

    def _log(self, invocation: Any, err: BaseException) -> str:
        stack = "".join(traceback.format_exception(err))
        sys.stderr.write(f"task {invocation.context.task_id} failed: {stack}")
        sys.stderr.flush()
        return stack

    def _failure(self, invocation: Any, err: BaseException) -> tuple[int, bytes]:
        from .invoker import error_reply
        stack = self._log(invocation, err)
        return error_reply(500, "HANDLER_ERROR", f"{type(err).__name__}: {err}", stack=stack)


def _reason(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
