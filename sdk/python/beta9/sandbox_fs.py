"""``sandbox.fs``: files in and out (streamed), listings and directories."""
from __future__ import annotations

import builtins
import http.client
import os
from pathlib import Path
from typing import Any

from .options import OptionError
from .sandbox_support import (
    SandboxFileInfo,
    _CHUNK,
    _Http,
    _check_path,
    _quote,
)


class SandboxFileSystem:
    """``sandbox.fs``: files in and out (streamed, any size), listings and directories. Paths are as
    the sandbox sees them; relative ones start at /workspace."""

    def __init__(self, sandbox_id: str, http: _Http) -> None:
        self._id = sandbox_id
        self._http = http

    @property
    def _file(self) -> str:
        return f"/sandbox/{_quote(self._id)}/fs/file"

    def upload_file(self, local_path: str | os.PathLike[str], remote_path: str, *, mode: int | None = None) -> SandboxFileInfo:
        """Streams a local file into the sandbox (any size; never held in memory whole)."""
        remote = _check_path("upload_file", "remote_path", remote_path)
        query = {"path": remote, **self._mode("upload_file", mode)}
        local = Path(local_path)
        if not local.is_file():
            raise OptionError(f"upload_file(local_path={str(local_path)!r}): no such file")
        with open(local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = self._http.call("PUT", self._file, query=query, body=f, content_type="application/octet-stream",
                                   length=size, timeout=self._http.client.timeout)
        return SandboxFileInfo.from_json(data)

    def download_file(self, remote_path: str, local_path: str | os.PathLike[str]) -> int:
        """Streams a sandbox file to a local path (written whole or not at all); answers its size."""
        remote = _check_path("download_file", "remote_path", remote_path)
        local = Path(local_path)
        part = local.with_name(f".{local.name}.{os.getpid()}.part")
        conn, res = self._http.open("GET", self._file, query={"path": remote}, timeout=self._http.client.timeout)
        size = 0
        try:
            with open(part, "wb") as out:
                while chunk := res.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(part, local)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
        return size

    def read(self, path: str) -> bytes:
        """A file's bytes."""
        remote = _check_path("read", "path", path)
        conn, res = self._http.open("GET", self._file, query={"path": remote}, timeout=self._http.client.timeout)
        try:
            return res.read()
        finally:
            conn.close()

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read(path).decode(encoding)

    def write(self, path: str, data: bytes | bytearray | memoryview | str, *, mode: int | None = None) -> SandboxFileInfo:
        """Writes a file (replaced atomically; its parents are created); ``str`` is written as UTF-8."""
        remote = _check_path("write", "path", path)
        if isinstance(data, str):
            body = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        else:
            raise OptionError(f"write(data={type(data).__name__}): expected bytes or str")
        result = self._http.call("PUT", self._file, query={"path": remote, **self._mode("write", mode)}, body=body,
                                 content_type="application/octet-stream", length=len(body), timeout=self._http.client.timeout)
        return SandboxFileInfo.from_json(result)

    def list(self, path: str = ".") -> list[SandboxFileInfo]:
        """A directory's entries."""
        data = self._http.json("GET", f"/sandbox/{_quote(self._id)}/fs/list", query={"path": _check_path("list", "path", path)})
        return [SandboxFileInfo.from_json(item) for item in data.get("items", [])]

    def stat(self, path: str) -> SandboxFileInfo:
        """A path's type, size, mode and time (a symlink is described, not followed)."""
        return SandboxFileInfo.from_json(self._http.json("GET", f"/sandbox/{_quote(self._id)}/fs/stat",
                                                         query={"path": _check_path("stat", "path", path)}))

    def mkdir(self, path: str) -> SandboxFileInfo:
        """Creates a directory and its parents."""
        return SandboxFileInfo.from_json(self._http.json("POST", f"/sandbox/{_quote(self._id)}/fs/mkdir",
                                                         query={"path": _check_path("mkdir", "path", path)}))

    def remove(self, path: str, recursive: bool = False) -> None:
        """Removes a file, symlink or directory (``recursive=True`` for one that is not empty)."""
        if not isinstance(recursive, bool):
            raise OptionError(f"remove(recursive={recursive!r}): expected True or False")
        query: dict[str, Any] = {"path": _check_path("remove", "path", path)}
        if recursive:
            query["recursive"] = "true"
        self._http.json("DELETE", f"/sandbox/{_quote(self._id)}/fs", query=query)

    # beta9's names for the same operations.
    def list_files(self, path: str = ".") -> builtins.list[SandboxFileInfo]:
        return self.list(path)

    def stat_file(self, path: str) -> SandboxFileInfo:
        return self.stat(path)

    def create_directory(self, path: str) -> SandboxFileInfo:
        return self.mkdir(path)

    def delete_file(self, path: str) -> None:
        self.remove(path)

    def delete_directory(self, path: str) -> None:
        self.remove(path, recursive=True)

    @staticmethod
    def _mode(where: str, mode: Any) -> dict[str, str]:
        if mode is None:
            return {}
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise OptionError(f"{where}(mode={mode!r}): expected permission bits such as 0o644")
        return {"mode": format(mode, "03o")}
