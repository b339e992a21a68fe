"""The gateway's HTTP API, standard library only.

One kept-alive connection per thread (``http.client``), JSON in and out, and one error type:
every non-2xx answer becomes an :class:`ApiError` carrying the gateway's stable ``code``.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Iterator

from . import image_files
from .config import resolve

API_PREFIX = "/api/v1"


class ApiError(Exception):
    """The gateway answered an error (``status``/``code`` as in its error catalogue), or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _error_from(status: int, method: str, path: str, body: bytes, retry_after: str | None) -> ApiError:
    code, message = "HTTP_ERROR", ""
    try:
        parsed = json.loads(body.decode("utf-8") or "null")
        err = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or "")
    except (ValueError, UnicodeDecodeError):
        pass
    if not message:
        message = f"{method} {path} answered {status}: {body[:300].decode('utf-8', 'replace')}"
    after: float | None = None
    if retry_after:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    return ApiError(status, code, message, after)


class Client:
    """A gateway client. Without arguments it uses BETA9_GATEWAY/BETA9_TOKEN, else the CLI's current context."""

    def __init__(self, gateway: str | None = None, token: str | None = None, *, context: str | None = None,
                 timeout: float = 300.0, tls_ca: str | None = None) -> None:
        settings = resolve(gateway, token, context)
        self.gateway = settings.gateway
        self.token = settings.token
        #: PEM of the certificate trusted for this gateway alone (argument, BETA9_TLS_CA, or the context's).
        self.tls_ca = tls_ca if tls_ca is not None else settings.tls_ca
        self._ssl = _pinned_context(self.tls_ca) if self.tls_ca else None
        self.timeout = timeout
        url = urllib.parse.urlsplit(self.gateway)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"gateway {self.gateway!r} is not an http:// or https:// URL")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._base = url.path.rstrip("/")
        self._local = threading.local()

    # -- transport ---------------------------------------------------------------------------------

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self.new_connection(self.timeout)
            self._local.conn = conn
        return conn

    def new_connection(self, timeout: float | None, blocksize: int = 8192) -> http.client.HTTPConnection:
        """A connection to the gateway (https with its pinned certificate when the client has one)."""
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, blocksize=blocksize, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout, blocksize=blocksize)

    def _headers(self, content_type: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if content_type:
            headers["content-type"] = content_type
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def raw(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
            headers: dict[str, str] | None = None, timeout: float | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on this thread's kept-alive connection; a stale connection is retried once."""
        full = self._base + path
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt == 1)
            try:
                conn.timeout = self.timeout if timeout is None else timeout
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request(method, full, body=body, headers=self._headers(content_type, headers))
                res = conn.getresponse()
                data = res.read()
                return res.status, {k.lower(): v for k, v in res.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest):
                if attempt == 1:
                    raise self._unreachable("the connection was closed")
            except (ConnectionRefusedError, socket.gaierror, TimeoutError, OSError) as err:
                conn.close()
                self._local.conn = None
                raise self._unreachable(str(err)) from None
        raise self._unreachable("no answer")

    def _unreachable(self, why: str) -> ApiError:
        return ApiError(0, "UNREACHABLE", f"cannot reach the gateway at {self.gateway} ({why}); is it running (beta9 up)?")

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                api: bool = True, timeout: float | None = None) -> Any:
        """JSON request; ``api`` prefixes /api/v1. Returns the parsed answer (None for 204)."""
        full = (API_PREFIX if api else "") + path
        if query:
            q = {k: ("true" if v is True else "false" if v is False else v) for k, v in query.items() if v is not None}
            if q:
                full += "?" + urllib.parse.urlencode(q)
        payload = None if body is None and method in ("GET", "HEAD", "DELETE") else json.dumps(body).encode()
        status, headers, data = self.raw(method, full, payload, "application/json" if payload is not None else None, timeout=timeout)
        if status >= 400:
            raise _error_from(status, method, full, data, headers.get("retry-after"))
        if status == 204 or not data:
            return None
        return json.loads(data)

    def invoke(self, path: str, payload: Any, *, attempts: int = 8) -> Any:
        """POSTs an input to an invocation route (outside /api/v1); waits and retries on 429 (backpressure)."""
        delay = 0.1
        for attempt in range(attempts):
            try:
                return self.request("POST", path, payload, api=False, timeout=None)
            except ApiError as err:
                if err.status != 429 or attempt == attempts - 1:
                    raise
                time.sleep(err.retry_after if err.retry_after is not None else delay)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def events(self, path: str) -> Iterator[tuple[str, Any]]:
        """Server-sent events from an /api/v1 route, as (event name, parsed data)."""
        conn = self.new_connection(None)
        try:
            try:
                conn.request("GET", self._base + API_PREFIX + path, headers=self._headers(None, {"accept": "text/event-stream"}))
                res = conn.getresponse()
            except OSError as err:
                raise self._unreachable(str(err)) from None
            if res.status != 200:
                raise _error_from(res.status, "GET", path, res.read(), res.getheader("retry-after"))
            name: str | None = None
            data: str | None = None
            while True:
                line = res.readline()
                if not line:
                    return
                text = line.decode("utf-8").rstrip("\r\n")
                if text == "":
                    if name is not None and data is not None:
                        yield name, json.loads(data)
                    name, data = None, None
                elif text.startswith("event: "):
                    name = text[7:]
                elif text.startswith("data: "):
                    data = text[6:]
        finally:
            conn.close()

    # -- objects, images, stubs, deployments -----------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def has_object(self, sha256: str) -> bool:
        status, _, data = self.raw("HEAD", f"{API_PREFIX}/object/{sha256}")
        if status == 200:
            return True
        if status == 404:
            return False
        raise _error_from(status, "HEAD", f"/object/{sha256}", data, None)

    def put_object(self, sha256: str, data: bytes) -> dict[str, Any]:
        status, headers, body = self.raw("PUT", f"{API_PREFIX}/object/{sha256}", data, "application/octet-stream")
        if status >= 400:
            raise _error_from(status, "PUT", f"/object/{sha256}", body, headers.get("retry-after"))
        return json.loads(body or b"null")

    def build_image(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Starts (or joins) the build; local files the spec copies are uploaded first when new."""
        for digest, data in image_files.pending(spec).items():
            if not self.has_object(digest):
                self.put_object(digest, data)
        return self.request("POST", "/image/build", {"spec": spec})

    def follow_image(self, image_id: str) -> Iterator[tuple[str, Any]]:
        return self.events(f"/image/{urllib.parse.quote(image_id)}/logs?follow=true")

    def create_stub(self, body: dict[str, Any]) -> dict[str, Any]:
        """Gets or creates a stub: ``{"stub", "created", "warnings"}``."""
        return self.request("POST", "/stub", body)

    def create_deployment(self, stub_id: str, name: str | None = None) -> dict[str, Any]:
        return self.request("POST", "/deployment", {"stubId": stub_id, **({"name": name} if name else {})})

    # -- tasks --------------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/task/{urllib.parse.quote(task_id)}")

    def wait_task(self, task_id: str) -> dict[str, Any]:
        for name, data in self.events(f"/task/{urllib.parse.quote(task_id)}/subscribe"):
            if name == "end":
                return data
        return self.get_task(task_id)

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        return self.request("POST", f"/task/{urllib.parse.quote(task_id)}/cancel")

    # -- serve sessions -----------------------------------------------------------------------------

    def create_serve_session(self, stub_id: str) -> dict[str, Any]:
        return self.request("POST", "/serve", {"stubId": stub_id})

    def heartbeat_serve_session(self, session_id: str) -> dict[str, Any]:
        return self.request("POST", f"/serve/{urllib.parse.quote(session_id)}/heartbeat")

    def end_serve_session(self, session_id: str) -> None:
        self.request("DELETE", f"/serve/{urllib.parse.quote(session_id)}")

    @property
    def volumes(self) -> Any:
        """The workspace's volumes: create, list, delete, ls, upload, download, remove (:class:`beta9.volumes.Volumes`)."""
        from .volumes import Volumes  # imported here: volumes builds on this module
        if getattr(self, "_volumes", None) is None:
            self._volumes = Volumes(self)
        return self._volumes

    # Secrets: write-only; no call returns a value.
    def create_secret(self, name: str, value: str) -> dict[str, Any]:
        return self.request("POST", "/secret", {"name": name, "value": value})

    def update_secret(self, name: str, value: str) -> dict[str, Any]:
        return self.request("PUT", f"/secret/{urllib.parse.quote(name)}", {"value": value})

    def delete_secret(self, name: str) -> None:
        self.request("DELETE", f"/secret/{urllib.parse.quote(name)}")

    def list_secrets(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/secret")["items"])


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client from the environment or the CLI's current context."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def _pinned_context(pem: str) -> ssl.SSLContext:
    """Trusts exactly the gateway's certificate. The name dialled need not be in it (a machine
    behind NAT reaches the gateway by any address): only that certificate's key can pass."""
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    return context
