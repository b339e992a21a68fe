"""An @asgi app end to end: deployed with the CLI and with ``.deploy()``, called through the gateway
in a real runc container under /endpoint/<name>/…: routes, query, a 5 MB upload, a streamed answer,
the token required (or not, with authorized=False), and the handler error a caller sees."""
from __future__ import annotations

import hashlib
import json
import os
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from conftest import Platform, write
from ws_client import WsClient

APP = textwrap.dedent('''\
    import hashlib, json
    from beta9 import asgi

    async def reply(send, status, value):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(value).encode()})

    async def routes(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "bye":
                    return await send({"type": "websocket.close", "code": 4001})
                await send({"type": "websocket.send", "text": scope["path"] + ":" + (message.get("text") or "")})
        if scope["type"] != "http":
            return
        if scope["path"] == "/upload":
            digest, size, more = hashlib.sha256(), 0, True
            while more:
                message = await receive()
                digest.update(message.get("body", b""))
                size += len(message.get("body", b""))
                more = message.get("more_body", False)
            return await reply(send, 201, {"size": size, "sha256": digest.hexdigest()})
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for i in range(100):
                await send({"type": "http.response.body", "body": b"line %d\\n" % i, "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        if scope["path"] == "/boom":
            raise ValueError("no such model")
        headers = dict((k.decode(), v.decode()) for k, v in scope["headers"])
        await reply(send, 200, {"path": scope["path"], "query": scope["query_string"].decode(), "method": scope["method"],
                                "root_path": scope["root_path"], "authorization": headers.get("authorization")})

    @asgi(cpu=0.25, memory=256, concurrent_requests=10)
    def site():
        return routes

    @asgi(cpu=0.25, memory=256, authorized=False, name="open-site")
    def open_site():
        return routes
''')


def call(url: str, token: str | None = None, data: bytes | None = None, method: str = "GET",
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    all_headers = {**({"authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=300) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def diagnose(platform: Platform) -> str:
    """The containers and the latest one's log, for a failure's message."""
    listed = platform.cli("container", "list", "--all", "--json", check=False).stdout
    try:
        latest = json.loads(listed)[0]["id"]
    except (ValueError, IndexError, KeyError):
        return listed
    return listed + platform.cli("container", "logs", latest, check=False).stdout


def test_an_asgi_app_deployed_with_the_cli_answers_under_its_url(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "web.py", APP)
    out = platform.cli("deploy", "web.py:site", cwd=app_dir).stdout
    base = f"{platform.gateway}/endpoint/site"
    assert f"open: curl {base}/v1/ " in out or f"open: curl {base}/" in out, out
    status, body = call(f"{base}/users/42?full=1", platform.token, method="PUT", data=b"x")
    assert status == 200, (body, diagnose(platform))
    assert json.loads(body) == {"path": "/users/42", "query": "full=1", "method": "PUT", "root_path": "/endpoint/site", "authorization": None}
    data = os.urandom(5 * 1024 * 1024)
    status, body = call(f"{base}/upload", platform.token, data=data, method="POST", headers={"content-type": "application/octet-stream"})
    assert status == 201 and json.loads(body) == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    status, body = call(f"{base}/stream", platform.token)
    assert status == 200 and body.decode().splitlines() == [f"line {i}" for i in range(100)]
    status, body = call(f"{base}/boom", platform.token)
    error = json.loads(body)["error"]
    assert status == 500 and error["code"] == "HANDLER_ERROR" and "ValueError: no such model" in error["message"]
    # The token is required, and never reaches the app.
    assert call(f"{base}/users/1")[0] == 401
    # A WebSocket through the gateway reaches the app's websocket scope.
    url = urllib.parse.urlsplit(platform.gateway)
    ws = WsClient(url.hostname, url.port, "/endpoint/site/chat", {"authorization": f"Bearer {platform.token}"})
    try:
        assert ws.status == 101, (ws.status, ws.body)
        ws.send("hi")
        assert ws.recv() == ("text", "/chat:hi")
        ws.send("bye")
        assert ws.recv()[1][0] == 4001
    finally:
        ws.shutdown()


def test_a_public_asgi_app_deployed_from_python_gets_the_callers_own_authorization(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "web.py", APP)
    write(app_dir, "deploy_it.py", "from web import open_site\nr = open_site.deploy()\nprint(r.url, r.stub_id)\n")
    done = platform.python("deploy_it.py", cwd=app_dir)
    assert done.returncode == 0, done.stderr
    url, stub_id = done.stdout.strip().splitlines()[-1].split()
    assert url.endswith("/endpoint/open-site/v1/"), url
    # No token: its public URL; the caller's own Authorization reaches the app.
    status, body = call(f"{platform.gateway}/public/{stub_id}/hello?a=b", headers={"authorization": "Basic dXNlcjpwdw=="})
    assert status == 200, (body, diagnose(platform))
    assert json.loads(body) == {"path": "/hello", "query": "a=b", "method": "GET", "root_path": f"/public/{stub_id}",
                                "authorization": "Basic dXNlcjpwdw=="}
