"""Streamed answers (runner-protocol.ts, "Streaming"), as the Node runner sends them: an endpoint
whose handler is a generator (``def … yield``) or an async generator answers 200 with header
x-beta9-stream and one Server-Sent Event per item (``data: <str>``, anything else as JSON), or one
NDJSON line per item when the caller's Accept asks for application/x-ndjson. A handler that raises
mid-stream ends it with ``event: error`` (an ``{"error": …}`` line).

Backpressure: each item is written (a blocking socket write) before the next is pulled, so a slow
caller pauses the generator at its ``yield``. A caller that goes away ends the write, cancels the
invocation (``context.cancelled``) and closes the generator (its ``finally`` runs).
"""
from __future__ import annotations

import asyncio
import inspect
import json
import sys
import traceback
from typing import Any, Callable

STREAM_HEADER = "x-beta9-stream"


class Stream:
    """What a generator handler returned: pull items one at a time, close it early."""

    def __init__(self, pull: Callable[[], Any], close: Callable[[], None]) -> None:
        self.pull = pull  # raises StopIteration at the end
        self.close = close


def stream_of(result: Any, loop: Callable[[], asyncio.AbstractEventLoop]) -> Stream | None:
    """A Stream for a generator or async generator (run on the invoker's asyncio loop), else None."""
    if inspect.isgenerator(result):
        return Stream(result.__next__, result.close)
    if inspect.isasyncgen(result):
        def pull() -> Any:
            try:
                return asyncio.run_coroutine_threadsafe(result.__anext__(), loop()).result()
            except StopAsyncIteration:
                raise StopIteration from None

        def close() -> None:
            asyncio.run_coroutine_threadsafe(result.aclose(), loop()).result()
        return Stream(pull, close)
    return None


def _json(item: Any) -> str:
    if isinstance(item, (bytes, bytearray)):
        item = bytes(item).decode("utf-8", "replace")
    return json.dumps(item, separators=(",", ":"), default=str)


def sse_event(item: Any) -> bytes:
    """One event: a string as it is (one ``data:`` line per line), anything else as JSON."""
    text = item if isinstance(item, str) else bytes(item).decode("utf-8", "replace") if isinstance(item, (bytes, bytearray)) else _json(item)
    return "".join(f"data: {line}\n" for line in text.splitlines() or [""]).encode() + b"\n"


def ndjson_line(item: Any) -> bytes:
    return _json(item).encode() + b"\n"


def wants_ndjson(accept: str | None) -> bool:
    return bool(accept) and "application/x-ndjson" in accept and "text/event-stream" not in accept  # type: ignore[operator]


def send_stream(handler: Any, stream: Stream, accept: str | None, task_id: str) -> None:
    """Writes the stream as a chunked 200 on ``handler`` (a BaseHTTPRequestHandler); never raises."""
    ndjson = wants_ndjson(accept)
    encode = ndjson_line if ndjson else sse_event
    wfile = handler.wfile

    def chunk(data: bytes) -> None:
        wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    try:
        handler.send_response(200)
        handler.send_header("content-type", "application/x-ndjson" if ndjson else "text/event-stream; charset=utf-8")
        handler.send_header("cache-control", "no-cache")
        handler.send_header(STREAM_HEADER, "events")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        while True:
            try:
                item = stream.pull()
            except StopIteration:
                break
            except BaseException as err:  # the handler's failure ends the stream with it, as its last event
                if isinstance(err, KeyboardInterrupt):
                    raise
                stack = "".join(traceback.format_exception(err))
                sys.stderr.write(f"task {task_id} failed while streaming: {stack}")
                sys.stderr.flush()
                fields = {"code": "HANDLER_ERROR", "message": f"{type(err).__name__}: {err}"}
                chunk(ndjson_line({"error": fields}) if ndjson else b"event: error\ndata: " + _json(fields).encode() + b"\n\n")
                break
            chunk(encode(item))
        wfile.write(b"0\r\n\r\n")
        wfile.flush()
    except OSError:
        handler.close_connection = True  # the caller went away mid-stream
        try:
            stream.close()
        except BaseException:  # a generator's own cleanup failing is not the runner's
            pass
