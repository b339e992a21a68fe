"""A minimal WebSocket client (RFC 6455, standard library only) for the tests: handshake, masked
frames out, whole messages and the close frame in."""
from __future__ import annotations

import base64
import os
import socket
import struct


class WsClient:
    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"host: {host}:{port}", "upgrade: websocket", "connection: Upgrade",
                 f"sec-websocket-key: {key}", "sec-websocket-version: 13", *[f"{k}: {v}" for k, v in (headers or {}).items()]]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1]) if status_line else 0
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        self.body = self.buf if self.status != 101 else b""

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the connection ended")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data: str | bytes, opcode: int | None = None) -> None:
        payload = data.encode() if isinstance(data, str) else data
        op = opcode if opcode is not None else (0x1 if isinstance(data, str) else 0x2)
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536
                                     else bytes([0x80 | 127]) + struct.pack("!Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.send(struct.pack("!H", code) + reason.encode(), 0x8)

    def recv(self) -> tuple[str, object]:
        """("text", str) | ("bytes", bytes) | ("close", (code, reason))."""
        b1, b2 = self._exact(2)
        n = b2 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        data = self._exact(n)
        op = b1 & 0x0F
        if op == 0x8:
            return "close", (struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005, data[2:].decode())
        return ("text", data.decode()) if op == 0x1 else ("bytes", data)

    def shutdown(self) -> None:
        self.sock.close()
