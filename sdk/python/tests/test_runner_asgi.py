"""The Python runner serves @asgi apps under /web as the Node runner serves a webApp: the app's path,
query, headers and body in; its status, headers and body out, streamed both ways; lifespan events;
a failure before the response is 500 HANDLER_ERROR with the traceback, one after it cuts the body; a
caller that leaves cancels the app. A raw ASGI app always, FastAPI (Debian's python3-fastapi) when
installed."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from conftest import SDK_ROOT, wait_until, write
from test_sdk_units import free_port, running_runner
from ws_client import WsClient

RAW = textwrap.dedent('''\
    import asyncio, hashlib, json
    from beta9 import asgi

    STATE = {"started": False, "cancelled": 0, "disconnects": 0}

    async def json_reply(send, status, value, headers=()):
        body = json.dumps(value).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *headers]})
        await send({"type": "http.response.body", "body": body})

    @asgi(concurrent_requests=8)
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    STATE["started"] = True
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path.startswith("/hello/"):
            headers = dict((k.decode(), v.decode()) for k, v in scope["headers"])
            return await json_reply(send, 200, {
                "who": path[len("/hello/"):], "method": scope["method"], "query": scope["query_string"].decode(),
                "root_path": scope["root_path"], "host": headers.get("host"), "authorization": headers.get("authorization"),
                "x-beta9-task-id": headers.get("x-beta9-task-id"), "state": scope["state"].get("db"), "scheme": scope["scheme"],
            }, [(b"x-app", b"yes"), (b"set-cookie", b"a=1")])
        if path == "/upload":
            digest, size = hashlib.sha256(), 0
            while True:
                message = await receive()
                digest.update(message.get("body", b""))
                size += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
            return await json_reply(send, 201, {"size": size, "sha256": digest.hexdigest()})
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for i in range(3):
                await send({"type": "http.response.body", "body": f"part {i}\\n".encode(), "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        if path == "/forever":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                while True:
                    await send({"type": "http.response.body", "body": b"tick\\n", "more_body": True})
                    await asyncio.sleep(0.01)
            except (asyncio.CancelledError, OSError):
                STATE["cancelled"] += 1
                raise
        if path == "/boom":
            raise RuntimeError("the app broke")
        if path == "/cut":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
            raise RuntimeError("broke mid-body")
        if path == "/nothing":
            return
        if path == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        if path == "/state":
            return await json_reply(send, 200, STATE)
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            if path == "/ws-refuse":
                return await send({"type": "websocket.close", "code": 1008})
            await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[-1]})
            await send({"type": "websocket.send", "text": f"hello {scope['path']} {scope['query_string'].decode()} {scope['scheme']}"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    STATE["disconnects"] += 1
                    STATE["last_close"] = message["code"]
                    return
                if message.get("text") == "bye":
                    return await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
                if message.get("text") is not None:
                    await send({"type": "websocket.send", "text": message["text"].upper()})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})
        await json_reply(send, 404, {"detail": "no route " + path})

    @asgi
    def not_an_app():
        return 42

    @asgi
    def refuses():
        async def app(scope, receive, send):
            message = await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
        return app
''')

SECRET = "s3cret"


def request(base: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        all_headers = {"authorization": f"Bearer {SECRET}", **(headers or {})}
        if chunked and body is not None:
            conn.putrequest(method, path)
            for k, v in {**all_headers, "transfer-encoding": "chunked"}.items():
                conn.putheader(k, v)
            conn.endheaders()
            for i in range(0, len(body), 100_000):
                part = body[i:i + 100_000]
                conn.send(b"%x\r\n%s\r\n" % (len(part), part))
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=all_headers)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


@pytest.fixture
def raw_app(tmp_path: Path):
    write(tmp_path, "web.py", RAW)
    os.environ["BETA9_RUNNER_SECRET"] = SECRET
    try:
        with running_runner(tmp_path, "web.py:app") as base:
            yield base
    finally:
        os.environ.pop("BETA9_RUNNER_SECRET", None)


def test_an_asgi_app_gets_path_query_headers_and_lifespan_state(raw_app: str) -> None:
    status, headers, body = request(raw_app, "GET", "/web/hello/ada%20l?x=1&y=two", headers={
        "x-forwarded-host": "gw.example:8443", "x-forwarded-proto": "https", "x-forwarded-prefix": "/endpoint/site",
        "x-beta9-authorization": "Bearer caller-own", "x-beta9-task-id": "t-1"})
    assert status == 200, body
    assert headers["x-beta9-stream"] == "response" and headers["x-app"] == "yes" and headers["set-cookie"] == "a=1"
    seen = json.loads(body)
    assert seen == {"who": "ada l", "method": "GET", "query": "x=1&y=two", "root_path": "/endpoint/site", "host": "gw.example:8443",
                    "authorization": "Bearer caller-own", "x-beta9-task-id": None, "state": "connected", "scheme": "https"}
    # Every method reaches the app.
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        status, _, body = request(raw_app, method, "/web/hello/m", body=b"" if method != "OPTIONS" else None)
        assert status == 200 and json.loads(body)["method"] == method
    status, _, body = request(raw_app, "GET", "/web/state")
    assert json.loads(body)["started"] is True


def test_a_5_mb_upload_streams_in_with_either_framing(raw_app: str) -> None:
    data = os.urandom(5 * 1024 * 1024)
    for chunked in (False, True):
        status, _, body = request(raw_app, "POST", "/web/upload", body=data, chunked=chunked)
        assert status == 201, body
        assert json.loads(body) == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_streamed_parts_no_body_statuses_and_the_runner_secret(raw_app: str) -> None:
    status, headers, body = request(raw_app, "GET", "/web/stream")
    assert status == 200 and headers["transfer-encoding"] == "chunked" and body == b"part 0\npart 1\npart 2\n"
    status, headers, body = request(raw_app, "GET", "/web/empty")
    assert status == 204 and body == b"" and "transfer-encoding" not in headers
    status, _, body = request(raw_app, "HEAD", "/web/stream")
    assert status == 200 and body == b""
    status, _, body = request(raw_app, "GET", "/web/hello/x", headers={"authorization": "Bearer wrong"})
    assert status == 401 and json.loads(body)["error"]["code"] == "AUTH_TOKEN_INVALID"
    # /invoke is not an ASGI app's route.
    status, _, body = request(raw_app, "POST", "/invoke", body=b'{"input": {}}', headers={"content-type": "application/json"})
    assert status == 404 and json.loads(body)["error"]["code"] == "WEB_APP_ONLY"


def test_failures_before_and_after_the_response_starts(raw_app: str) -> None:
    status, headers, body = request(raw_app, "GET", "/web/boom")
    error = json.loads(body)["error"]
    assert status == 500 and "x-beta9-stream" not in headers
    assert error["code"] == "HANDLER_ERROR" and error["message"] == "RuntimeError: the app broke" and "web.py" in error["stack"]
    with pytest.raises(http.client.IncompleteRead):
        request(raw_app, "GET", "/web/cut")
    status, _, body = request(raw_app, "GET", "/web/nothing")
    assert status == 500 and "without sending a response" in json.loads(body)["error"]["message"]


def test_a_caller_that_leaves_cancels_the_app(raw_app: str) -> None:
    url = urllib.parse.urlsplit(raw_app)
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(f"GET /web/forever HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {SECRET}\r\n\r\n".encode())
    seen = b""
    while b"tick" not in seen:
        chunk = sock.recv(4096)
        assert chunk, seen
        seen += chunk
    sock.close()

    def cancelled() -> bool:
        return json.loads(request(raw_app, "GET", "/web/state")[2])["cancelled"] >= 1
    wait_until("the app to see its caller leave", cancelled, timeout=30)


def test_websockets_accept_echo_close_both_ways_and_refuse(raw_app: str) -> None:
    url = urllib.parse.urlsplit(raw_app)
    auth = {"authorization": f"Bearer {SECRET}"}
    ws = WsClient(url.hostname, url.port, "/web/chat?room=1", {**auth, "sec-websocket-protocol": "a, b", "x-forwarded-proto": "https"})
    try:
        assert ws.status == 101 and ws.headers["sec-websocket-protocol"] == "b", (ws.status, ws.headers, ws.body)
        assert ws.recv() == ("text", "hello /chat room=1 wss")
        ws.send("shout")
        assert ws.recv() == ("text", "SHOUT")
        big = os.urandom(200_000)
        ws.send(big)
        assert ws.recv() == ("bytes", big[::-1])
        ws.send("bye")  # the app closes with its code
        assert ws.recv() == ("close", (4001, "asked to"))
    finally:
        ws.shutdown()
    ws = WsClient(url.hostname, url.port, "/web/chat", auth)
    try:
        assert ws.recv()[0] == "text"
        ws.close(4002, "client leaves")  # the caller closes: the app hears its code
        assert ws.recv() == ("close", (4002, ""))
    finally:
        ws.shutdown()
    wait_until("the app to hear the close", lambda: json.loads(request(raw_app, "GET", "/web/state")[2]).get("last_close") == 4002, timeout=30)
    refused = WsClient(url.hostname, url.port, "/web/ws-refuse", auth)
    assert refused.status == 403, refused.status
    refused.shutdown()


@pytest.mark.parametrize("handler,message", [("web.py:not_an_app", "returned int, not an ASGI app"),
                                             ("web.py:refuses", 'ASGI app "refuses" failed to start: no database')])
def test_an_app_that_cannot_start_stops_the_runner_with_its_reason(tmp_path: Path, handler: str, message: str) -> None:
    write(tmp_path, "web.py", RAW)
    env = {**os.environ, "PYTHONPATH": str(SDK_ROOT), "PORT": str(free_port()), "BETA9_HANDLER": handler, "BETA9_CODE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "beta9.runner"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and message in done.stderr, done.stderr


FASTAPI = textwrap.dedent('''\
    from beta9 import asgi

    @asgi(concurrent_requests=4)
    def api():
        from fastapi import FastAPI, Request
        from fastapi.responses import StreamingResponse
        app = FastAPI()

        @app.get("/items/{item_id}")
        def item(item_id: int, q: str = ""):
            return {"item_id": item_id, "q": q}

        @app.post("/echo")
        async def echo(request: Request):
            body = await request.json()
            return {"got": body, "root": request.scope.get("root_path")}

        @app.get("/tokens")
        def tokens():
            return StreamingResponse((f"token {i}\\n" for i in range(5)), media_type="text/plain")
        return app
''')


def test_a_fastapi_app_routes_validates_and_streams(tmp_path: Path) -> None:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        pytest.skip("FastAPI is not installed (Debian: python3-fastapi)")
    write(tmp_path, "api.py", FASTAPI)
    os.environ["BETA9_RUNNER_SECRET"] = SECRET
    try:
        with running_runner(tmp_path, "api.py:api") as base:
            status, _, body = request(base, "GET", "/web/items/42?q=hi")
            assert status == 200 and json.loads(body) == {"item_id": 42, "q": "hi"}
            status, _, body = request(base, "GET", "/web/items/nope")
            assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["path", "item_id"]
            status, _, body = request(base, "POST", "/web/echo", body=b'{"a": [1, 2]}', headers={
                "content-type": "application/json", "x-forwarded-prefix": "/endpoint/api"})
            assert status == 200 and json.loads(body) == {"got": {"a": [1, 2]}, "root": "/endpoint/api"}
            status, _, body = request(base, "GET", "/web/tokens")
            assert status == 200 and body.decode().splitlines() == [f"token {i}" for i in range(5)]
            status, _, body = request(base, "GET", "/web/missing")
            assert status == 404 and json.loads(body) == {"detail": "Not Found"}
    finally:
        os.environ.pop("BETA9_RUNNER_SECRET", None)
