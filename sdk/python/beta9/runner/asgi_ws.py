"""WebSockets for @asgi apps (the ASGI ``websocket`` scope), as a web app's sockets reach the Node
runner: the gateway forwards the upgrade (``GET /web/<path>`` with ``Upgrade: websocket``) and
pipes the connection once this runner answers 101.

RFC 6455, server side, standard library only. The app accepts with ``websocket.accept`` (the 101
goes out then, with its subprotocol) or refuses with ``websocket.close`` before (a 403). After
that, one thread reads frames (pings answered, fragments joined up to MAX_MESSAGE bytes) into the
app's inbox, which holds at most INBOX messages: a peer that sends faster than the app receives
waits in its socket. Writes are serialized under one lock (the app's sends, pongs, the close).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import threading
from typing import Any, Callable

#: The largest message (all fragments together) taken from a peer; past it the socket closes 1009.
MAX_MESSAGE = 16 * 1024 * 1024
#: Messages read ahead of the app's receive().
INBOX = 64
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def is_upgrade(headers: Any) -> bool:
    return "websocket" in (headers.get("upgrade") or "").lower() and "upgrade" in (headers.get("connection") or "").lower()


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + _GUID).digest()).decode()


class _Closed(Exception):
    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}")
        self.code = code
        self.reason = reason


class _Socket:
    """The framing on one upgraded connection (reads in one thread, writes under a lock)."""

    def __init__(self, rfile: Any, wfile: Any) -> None:
        self.rfile = rfile
        self.wfile = wfile
        self.lock = threading.Lock()
        self.close_sent = False

    def _exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise _Closed(1006, "the connection ended")
        return data

    def frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        head += bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n) if n < 65536 else bytes([127]) + struct.pack("!Q", n)
        with self.lock:
            if opcode != 0x8 and self.close_sent:
                raise OSError("the socket is closing")
            if opcode == 0x8:
                if self.close_sent:
                    return
                self.close_sent = True
            self.wfile.write(head + payload)
            self.wfile.flush()

    def close(self, code: int, reason: str = "") -> None:
        try:
            self.frame(0x8, struct.pack("!H", code) + reason.encode()[:120])
        except OSError:
            pass

    def message(self) -> tuple[str, bytes]:
        """The next whole message ("text" or "bytes"); answers pings; raises _Closed."""
        parts: list[bytes] = []
        size = 0
        kind = ""
        while True:
            b1, b2 = self._exact(2)
            opcode, fin, masked, n = b1 & 0x0F, b1 & 0x80, b2 & 0x80, b2 & 0x7F
            if not masked:
                raise _Closed(1002, "client frames must be masked")
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            if opcode >= 0x8 and n > 125:
                raise _Closed(1002, "control frame too long")
            if opcode < 0x8 and size + n > MAX_MESSAGE:
                raise _Closed(1009, f"a message over {MAX_MESSAGE} bytes")
            mask = self._exact(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._exact(n))) if n else b""
            if opcode == 0x8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                raise _Closed(code, data[2:].decode("utf-8", "replace"))
            if opcode == 0x9:
                self.frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x1, 0x2):
                if kind:
                    raise _Closed(1002, "a new message inside a fragmented one")
                kind = "text" if opcode == 0x1 else "bytes"
            elif opcode != 0x0 or not kind:
                raise _Closed(1002, f"unexpected opcode {opcode}")
            parts.append(data)
            size += n
            if fin:
                return kind, b"".join(parts)


def serve_websocket(handler: Any, app: Any, scope: dict[str, Any], loop: asyncio.AbstractEventLoop,
                    invocation: Any, log_failure: Callable[[BaseException], None]) -> None:
    """Runs the app's websocket scope on ``handler``'s connection until it ends."""
    scope = {**scope, "type": "websocket", "scheme": "wss" if scope["scheme"] == "https" else "ws",
             "subprotocols": [p.strip() for p in (handler.headers.get("sec-websocket-protocol") or "").split(",") if p.strip()]}
    scope.pop("method", None)
    key = handler.headers.get("sec-websocket-key") or ""
    sock = _Socket(handler.rfile, handler.wfile)
    handler.close_connection = True  # the connection is the socket's from here on
    state: dict[str, Any] = {"accepted": False, "refused": False}
    slots = threading.Semaphore(INBOX)

    async def app_main() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "websocket.connect"})
        state["inbox"] = inbox

        async def receive() -> dict[str, Any]:
            message = await inbox.get()
            if message["type"] == "websocket.receive":
                slots.release()
            return message

        async def send(message: dict[str, Any]) -> None:
            await loop.run_in_executor(None, _send, message)
        await app(scope, receive, send)

    def _send(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.accept":
            if state["accepted"] or state["refused"]:
                raise RuntimeError("websocket.accept after the handshake")
            lines = ["HTTP/1.1 101 Switching Protocols\r\n", "upgrade: websocket\r\n", "connection: Upgrade\r\n",
                     f"sec-websocket-accept: {accept_key(key)}\r\n"]
            if message.get("subprotocol"):
                lines.append(f"sec-websocket-protocol: {message['subprotocol']}\r\n")
            for k, v in message.get("headers", []):
                lines.append(f"{bytes(k).decode('latin-1')}: {bytes(v).decode('latin-1')}\r\n")
            with sock.lock:
                handler.wfile.write(("".join(lines) + "\r\n").encode("latin-1"))
                handler.wfile.flush()
            state["accepted"] = True
            threading.Thread(target=read_loop, name="beta9-ws-read", daemon=True).start()
        elif kind == "websocket.send":
            if not state["accepted"]:
                raise RuntimeError("websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                sock.frame(0x1, text.encode())
            else:
                sock.frame(0x2, bytes(message.get("bytes") or b""))
        elif kind == "websocket.close":
            if not state["accepted"]:
                state["refused"] = True
                body = b"the app refused the WebSocket"
                with sock.lock:
                    handler.wfile.write(b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
                    handler.wfile.flush()
            else:
                sock.close(int(message.get("code", 1000)), str(message.get("reason") or ""))

    def deliver(message: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(state["inbox"].put_nowait, message)

    def read_loop() -> None:
        while True:
            slots.acquire()  # at most INBOX messages wait for the app
            try:
                kind, data = sock.message()
            except _Closed as closed:
                if closed.code in (1002, 1009):
                    sock.close(closed.code, closed.reason)
                else:
                    sock.close(closed.code if closed.code not in (1005, 1006) else 1000)
                deliver({"type": "websocket.disconnect", "code": closed.code, "reason": closed.reason})
                return
            except (OSError, ValueError):
                deliver({"type": "websocket.disconnect", "code": 1006, "reason": ""})
                return
            deliver({"type": "websocket.receive", "text": data.decode("utf-8", "replace")} if kind == "text" else {"type": "websocket.receive", "bytes": data})

    future = asyncio.run_coroutine_threadsafe(app_main(), loop)
    invocation.future = future
    try:
        future.result()
    except BaseException as err:  # the app's failure closes its socket 1011, or answers 500 before the handshake
        if isinstance(err, KeyboardInterrupt):
            raise
        log_failure(err)
        if state["accepted"]:
            sock.close(1011, "the app failed")
        elif not state["refused"]:
            _refuse(handler, 500, b"the app failed before accepting the WebSocket")
        return
    if state["accepted"]:
        sock.close(1000)
    elif not state["refused"]:
        _refuse(handler, 403, b"the app ended without accepting the WebSocket")


def _refuse(handler: Any, status: int, body: bytes) -> None:
    try:
        handler.wfile.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                            % (status, b"Forbidden" if status == 403 else b"Internal Server Error", len(body), body))
        handler.wfile.flush()
    except OSError:
        pass
