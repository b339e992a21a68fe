"""Sandboxes: isolated containers for code you do not trust (an LLM's, a user's), with processes,
files and ports. A sandbox ends at its TTL (``keep_warm_seconds``, default 600 s) even when the
process that created it died; ``Sandbox.connect(id)`` reattaches from anywhere.

    from beam import Image, Sandbox

    sandbox = Sandbox(image=Image()).create()
    response = sandbox.process.run_code("print('I am running remotely')")
    print(response.result)
    sandbox.terminate()

The same API as the TypeScript SDK (``packages/sdk/src/sandbox.ts``), over the gateway's
``/api/v1/sandbox`` routes. Exec output (NDJSON events) and file bodies stream on connections of
their own, so neither is ever held in memory whole.
"""
from __future__ import annotations

import posixpath
from types import TracebackType
from typing import Any, Callable

from .client import ApiError, Client, default_client
from .deploy import build_image
from .image import Image
from .options import OptionError, Volume, build_config
from .sandbox_support import (
    ExecResult,
    RunCodeResult,
    SandboxError,
    SandboxFileInfo,
    SandboxProcessInfo,
    _DEFAULT_IMAGE,
    _DefaultImage,
    _Http,
    _NAME,
    _RESERVED_MOUNT_PATHS,
    _check_network,
    _check_ttl,
    _quote,
)
from .sandbox_process import (
    OutputStream,
    SandboxProcess,
    SandboxProcessManager,
)
from .sandbox_fs import (
    SandboxFileSystem,
)

__all__ = [
    "OutputStream", "RunCodeResult", "Sandbox", "SandboxFileInfo", "SandboxFileSystem", "SandboxInstance",
    "SandboxError", "SandboxProcess", "SandboxProcessInfo", "SandboxProcessManager", "ExecResult",
]


# -- sandboxes --------------------------------------------------------------------------------------

class SandboxInstance:
    """A running (or ended) sandbox. ``terminate()`` ends it; so does leaving a ``with`` block."""

    def __init__(self, sandbox_id: str, client: Client) -> None:
        self.id = sandbox_id
        self.client = client
        self._http = _Http(client)
        self.process = SandboxProcessManager(sandbox_id, self._http)
        self.fs = SandboxFileSystem(sandbox_id, self._http)

    @property
    def sandbox_id(self) -> str:
        return self.id

    def status(self) -> dict[str, Any]:
        """The gateway's record: ``state`` (PENDING, RUNNING, TERMINATED), ``reason``, ``expiresAt``, ``exposed``…"""
        info: dict[str, Any] = self._http.json("GET", f"/sandbox/{_quote(self.id)}")
        return info

    def terminate(self) -> dict[str, Any]:
        """Ends the sandbox: its container and everything in it. Answers the ended record."""
        info: dict[str, Any] = self._http.json("POST", f"/sandbox/{_quote(self.id)}/terminate")
        return info

    def update_ttl(self, seconds: int) -> dict[str, Any]:
        """The sandbox now ends ``seconds`` from now (-1: only when terminated)."""
        ttl = _check_ttl("update_ttl", "seconds", seconds)
        info: dict[str, Any] = self._http.json("POST", f"/sandbox/{_quote(self.id)}/ttl", {"ttlSeconds": ttl})
        return info

    def expose_port(self, port: int, public: bool = False) -> str:
        """A URL through the gateway that reaches ``port`` in the sandbox (it needs a token unless ``public``)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65_535:
            raise OptionError(f"expose_port(port={port!r}): expected a port number from 1 to 65535")
        if not isinstance(public, bool):
            raise OptionError(f"expose_port(public={public!r}): expected True or False")
        return str(self._http.json("POST", f"/sandbox/{_quote(self.id)}/port", {"port": port, "public": public})["url"])

    def __enter__(self) -> "SandboxInstance":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"SandboxInstance(id={self.id!r})"


class Sandbox:
    """A sandbox to create: ``Sandbox(image=Image(), cpu=1, memory="1Gi").create()``.

    ``image`` defaults to ``Image()`` (Debian with python3, built once and cached); ``image=None``
    runs on the worker's own root filesystem. ``cpu``: cores or "500m" (default 1); ``memory``: MiB
    or "2Gi" (default 1024); ``keep_warm_seconds``: lifetime (default 600, -1 until terminated);
    ``volumes``: named volumes mounted read-write (changes committed when it ends); ``block_network``: no network
    at all; ``allow_list``: egress only to these IPv4 CIDRs ("CIDR", "CIDR:PORT", "CIDR:LOW-HIGH")
    plus DNS (by default a sandbox reaches the internet but nothing private). Options are checked here,
    before anything is sent, and a bad one raises an OptionError that names it.
    """

    def __init__(self, image: Image | None | _DefaultImage = _DEFAULT_IMAGE, cpu: float | str | None = None,
                 memory: int | str | None = None, keep_warm_seconds: int | None = None,
                 env: dict[str, str] | None = None, volumes: list[Volume] | None = None, pool: str | None = None,
                 client: Client | None = None, on_build_log: Callable[[str], None] | None = None,
                 secrets: list[str] | None = None, block_network: bool = False,
                 allow_list: list[str] | None = None) -> None:
        where = "Sandbox"
        if isinstance(image, _DefaultImage):
            image = Image()
        if image is not None and not isinstance(image, Image):
            raise OptionError(f"{where}(image={image!r}): expected an Image (from beta9 import Image), or None for the worker's root filesystem")
        if image is not None:
            image.to_spec()  # an image that cannot be built fails here, by option name
        if volumes is not None and not isinstance(volumes, (list, tuple)):
            raise OptionError(f"{where}(volumes={volumes!r}): expected a list of Volume(name=…, mount_path=…)")
        self.config = build_config(where, cpu=cpu, memory=memory, env=env, secrets=secrets, volumes=list(volumes) if volumes else None)
        mounts: list[str] = []
        for v in self.config.get("volumes", []):
            path = posixpath.normpath(v["mountPath"]).rstrip("/")
            if path.startswith("//"):
                path = path[1:]
            if path == "" or any(path == r or (r != "/" and path.startswith(f"{r}/")) for r in _RESERVED_MOUNT_PATHS):
                raise OptionError(f"{where}(volumes=[Volume(mount_path={v['mountPath']!r})]): {v['mountPath']} is reserved; "
                                  "mount volumes elsewhere, e.g. /workspace/data or /mnt/models")
            if path in mounts:
                raise OptionError(f"{where}(volumes=...): two volumes share mount_path {path!r}")
            mounts.append(path)
        if len(mounts) > 16:
            raise OptionError(f"{where}(volumes=...): at most 16 volumes, got {len(mounts)}")
        self.config.update(_check_network(where, block_network, allow_list))
        if keep_warm_seconds is not None:
            self.config["keepWarmSeconds"] = _check_ttl(where, "keep_warm_seconds", keep_warm_seconds)
        if pool is not None:
            if not isinstance(pool, str) or not _NAME.match(pool):
                raise OptionError(f"{where}(pool={pool!r}): expected a pool name (lowercase letters, digits, '.', '_' or '-')")
            self.config["pool"] = pool
        if client is not None and not isinstance(client, Client):
            raise OptionError(f"{where}(client={client!r}): expected a beta9.Client, or None for the environment's")
        if on_build_log is not None and not callable(on_build_log):
            raise OptionError(f"{where}(on_build_log={on_build_log!r}): expected a function that takes a line")
        self.image = image
        self.client = client
        self.on_build_log = on_build_log

    def create(self) -> SandboxInstance:
        """Builds the image if needed (once per spec), starts the sandbox and answers once it runs."""
        client = self.client or default_client()
        body = dict(self.config)
        if self.image is not None:
            body["imageId"] = build_image(client, self.image.to_spec(), self.on_build_log)
        created = client.request("POST", "/sandbox", body)
        instance = SandboxInstance(str(created["id"]), client)
        try:
            client.request("GET", f"/sandbox/{_quote(instance.id)}", query={"wait": "ready"})
        except BaseException:
            # One that never got ready is not left to run out its TTL.
            try:
                instance.terminate()
            except ApiError:
                pass
            raise
        return instance

    @staticmethod
    def connect(sandbox_id: str, client: Client | None = None) -> SandboxInstance:
        """Reattaches to a sandbox by id (from another process, after a crash, from the CLI's list)."""
        if not isinstance(sandbox_id, str) or not sandbox_id or len(sandbox_id) > 128:
            raise OptionError(f"Sandbox.connect(sandbox_id={sandbox_id!r}): expected a sandbox id")
        if client is not None and not isinstance(client, Client):
            raise OptionError(f"Sandbox.connect(client={client!r}): expected a beta9.Client")
        client = client or default_client()
        client.request("GET", f"/sandbox/{_quote(sandbox_id)}")
        return SandboxInstance(sandbox_id, client)

    def __repr__(self) -> str:
        return f"Sandbox(image={self.image!r}, config={self.config!r})"
