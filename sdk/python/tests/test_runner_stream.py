"""The Python runner streams a generator endpoint as the Node runner does (runner-protocol.ts,
"Streaming"): SSE or NDJSON, an error event mid-stream, a slow reader pausing the generator, a
caller that leaves closing it, and STREAM_NOT_SUPPORTED for a task queue."""
from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from pathlib import Path

from conftest import wait_until, write
from test_sdk_units import post, running_runner

APP = '''
import asyncio
from beta9 import endpoint, task_queue

state = {"produced": 0, "closed": False}

@endpoint(concurrent_requests=4)
def tokens(mode: str = "events", *, context):
    if mode == "status":
        return state
    return stream(mode, context)

def stream(mode, context):
    if mode == "events":
        yield "hello"
        yield {"token": "world"}
        yield "two\\nlines"
    elif mode == "fails":
        yield "first"
        raise RuntimeError("model crashed")
    elif mode == "many":
        state["produced"] = 0
        for i in range(2000):
            state["produced"] = i + 1
            yield "x" * 65536
    elif mode == "forever":
        state["closed"] = False
        try:
            i = 0
            while True:
                yield f"tick {i}"
                i += 1
                context.wait_cancelled(0.005)
        finally:
            state["closed"] = True

@endpoint()
async def agen():
    for i in range(3):
        await asyncio.sleep(0)
        yield {"i": i}

@task_queue()
def queue():
    yield 1
'''


def invoke(base: str, payload: dict, accept: str | None = None) -> http.client.HTTPResponse:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("POST", "/invoke", json.dumps({"input": payload}), {"content-type": "application/json", **({"accept": accept} if accept else {})})
    return conn.getresponse()


def status(base: str) -> dict:
    return json.loads(post(base + "/invoke", {"input": {"mode": "status"}})[1])["result"]


def test_generators_stream_as_sse_or_ndjson_with_an_error_event(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    with running_runner(tmp_path, "app.py:tokens") as base:
        res = invoke(base, {})
        assert res.status == 200 and res.getheader("x-beta9-stream") == "events"
        assert res.getheader("content-type").startswith("text/event-stream")
        assert res.read().decode() == 'data: hello\n\ndata: {"token":"world"}\n\ndata: two\ndata: lines\n\n'
        nd = invoke(base, {}, "application/x-ndjson")
        assert [json.loads(line) for line in nd.read().decode().splitlines()] == ["hello", {"token": "world"}, "two\nlines"]
        failed = invoke(base, {"mode": "fails"}).read().decode()
        assert failed == 'data: first\n\nevent: error\ndata: {"code":"HANDLER_ERROR","message":"RuntimeError: model crashed"}\n\n'
    with running_runner(tmp_path, "app.py:agen") as base:
        assert invoke(base, {}).read().decode() == 'data: {"i":0}\n\ndata: {"i":1}\n\ndata: {"i":2}\n\n'


def test_a_slow_reader_pauses_the_generator_and_a_leaving_one_closes_it(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    with running_runner(tmp_path, "app.py:tokens") as base:
        url = urllib.parse.urlsplit(base)
        sock = socket.create_connection((url.hostname, url.port))
        body = json.dumps({"input": {"mode": "many"}}).encode()
        sock.sendall(b"POST /invoke HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        last, same = -1, 0
        while same < 5:  # until the generator stops moving while nothing is read
            produced = status(base)["produced"]
            same = same + 1 if produced == last else 0
            last = produced
            time.sleep(0.1)
        assert 0 < last < 2000, f"the generator made {last} of 2000 chunks while nothing was read"
        sock.close()
        res = invoke(base, {"mode": "forever"})
        assert res.readline().startswith(b"data: tick 0")
        res.close()
        wait_until("the generator to be closed", lambda: status(base)["closed"], timeout=30)


def test_a_task_queue_generator_is_stream_not_supported(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    with running_runner(tmp_path, "app.py:queue") as base:
        code, body = post(base + "/invoke", {"input": {}})
        error = json.loads(body)["error"]
        assert code == 500 and error["code"] == "STREAM_NOT_SUPPORTED"
        assert '@task_queue "queue" returned a generator: only endpoints stream' in error["message"]
