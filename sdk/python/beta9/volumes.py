"""``Client().volumes``: the workspace's volumes from outside any container, as ``client.volumes`` in
TypeScript and ``beta9 volume`` / ``ls`` / ``cp`` / ``rm`` on the command line. Files stream both
ways (never held in memory whole), directories recursively; each uploaded file is one commit that
containers starting afterwards, on any worker, see. Containers use a volume by mounting it:
``volumes=[Volume(name, mount_path)]``.

    client = Client()
    client.volumes.create("models")
    client.volumes.upload("models", "./weights", "weights")      # a file or a directory
    for entry in client.volumes.ls("models", "weights"):
        print(entry["path"], entry["size"])
    client.volumes.download("models", "weights/a.bin", "./a.bin")
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable

from .client import ApiError, Client
from .options import OptionError
from .sandbox_support import _CHUNK, _Http, _quote

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")

#: ``on_progress(path, done, total)``: bytes moved so far over all files, and in total.
Progress = Callable[[str, int, int], None]


def volume_path(raw: str, allow_root: bool = False) -> str:
    """The canonical path inside a volume; absolute paths, '..' and control characters are refused
    (as the gateway does, with 422 VOLUME_PATH_INVALID)."""
    if not isinstance(raw, str):
        raise OptionError(f"volume path {raw!r}: expected a string")
    if raw.startswith("/"):
        raise OptionError(f"volume path {raw!r} is absolute; paths are relative to the volume's root ({raw.lstrip('/') or '.'})")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise OptionError(f"volume path {raw!r} contains a control character")
    segments = [s for s in raw.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise OptionError(f"volume path {raw!r} contains '..'; a path cannot leave the volume")
    path = "/".join(segments)
    if not path and not allow_root:
        raise OptionError(f"volume path {raw!r} names the volume's root; give a file's path, e.g. data/model.bin")
    return path


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        slash = " ('/' is not allowed: a volume is one name)" if isinstance(name, str) and "/" in name else ""
        raise OptionError(f"volume name {name!r} is not valid{slash}: use lowercase letters, digits, '.', '_' or '-', 1-63 characters")
    return name


def _join(directory: str, name: str) -> str:
    return name if directory == "" else f"{directory}/{name}"


class Volumes:
    """Create, list and delete volumes; ``ls``, ``upload``, ``download`` and ``remove`` their files."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._http = _Http(client)

    def _base(self, name: str) -> str:
        return f"/volume/{_quote(_check_name(name))}"

    def create(self, name: str) -> dict[str, Any]:
        return self._client.request("POST", "/volume", {"name": _check_name(name)})

    def list(self) -> list[dict[str, Any]]:
        return list(self._client.request("GET", "/volume")["items"])

    def get(self, name: str) -> dict[str, Any]:
        return self._client.request("GET", self._base(name))

    def delete(self, name: str) -> dict[str, Any]:
        """Deletes the volume and its files."""
        return self._client.request("DELETE", self._base(name))

    def ls(self, name: str, path: str = "", *, recursive: bool = False) -> list[dict[str, Any]]:
        """A directory's children (``recursive``: every file below it), or the file at ``path``.
        Each entry: ``path``, ``type`` ("file", "dir" or "link"), ``size``, and for files ``mode``, ``mtime`` (ms),
        ``sha256``; for links ``target`` (the link's text: never followed)."""
        query = {"path": volume_path(path, True), **({"recursive": "true"} if recursive else {})}
        return list(self._client.request("GET", f"{self._base(name)}/ls", query=query)["items"])

    def remove(self, name: str, path: str, *, recursive: bool = False) -> dict[str, Any]:
        """Removes a file, or with ``recursive`` a directory and everything below it; answers ``removed`` and ``version``."""
        query = {"path": volume_path(path, recursive) or ".", **({"recursive": "true"} if recursive else {})}
        return self._client.request("DELETE", f"{self._base(name)}/file", query=query)

    def upload(self, name: str, local_path: str | os.PathLike[str], remote_path: str, *,
               on_progress: Progress | None = None) -> list[dict[str, Any]]:
        """Uploads a local file or directory (recursively), as ``cp`` does: into ``remote_path`` when
        that is the root, ends in '/' or is a directory of the volume, else to that very path."""
        local = Path(local_path)
        if not local.exists():
            raise OptionError(f"upload(local_path={str(local_path)!r}): no such file or directory")
        target = volume_path(remote_path, True)
        into = target == "" or remote_path.endswith("/") or self._is_dir(name, target)
        dest = _join(target, local.name) if into else target
        files = [(p, p.relative_to(local).as_posix()) for p in sorted(local.rglob("*")) if p.is_file() and not p.is_symlink()] \
            if local.is_dir() else [(local, "")]
        # Inside a directory: symlinks go as links (their text, never followed), empty directories as entries.
        at = lambda rel: dest if rel == "" else _join(dest, rel)  # noqa: E731
        dirs, links = [], []
        if local.is_dir():
            for p in [local, *sorted(local.rglob("*"))]:
                rel = "" if p == local else p.relative_to(local).as_posix()
                st = p.lstat()
                if p.is_symlink():
                    links.append({"path": at(rel), "link": os.readlink(p), "mtime": int(st.st_mtime * 1000)})
                elif p.is_dir():
                    dirs.append({"path": at(rel), "dir": True, "mode": st.st_mode & 0o777, "mtime": int(st.st_mtime * 1000)})
        # Empty directories only: one with entries exists through them.
        dirs = [d for d in dirs if not any(o["path"].startswith(d["path"] + "/") for o in dirs + links) and
                not any(_join(dest, rel).startswith(d["path"] + "/") for _, rel in files if rel)]
        if dirs:
            self._changes(name, dirs)
        total = sum(p.stat().st_size for p, _ in files)
        done = 0
        out = []
        for path, rel in files:
            remote = dest if rel == "" else _join(dest, rel)
            st = path.stat()
            query = {"path": remote, "mode": format(st.st_mode & 0o777, "03o"), "mtime": str(int(st.st_mtime * 1000))}
            with open(path, "rb") as f:
                reader = _Meter(f, lambda n, remote=remote: on_progress(remote, done + n, total) if on_progress else None)
                out.append(self._http.call("PUT", f"{self._base(name)}/file", query=query, body=reader,
                                           content_type="application/octet-stream", length=st.st_size, timeout=self._client.timeout))
            done += st.st_size
        if links:
            self._changes(name, links)
        return out

    def _changes(self, name: str, changes: list[dict[str, Any]]) -> None:
        for i in range(0, len(changes), 5000):
            self._client.request("POST", f"{self._base(name)}/changes", {"changes": changes[i:i + 5000]})

    def download(self, name: str, remote_path: str, local_path: str | os.PathLike[str], *,
                 on_progress: Progress | None = None) -> list[dict[str, Any]]:
        """Downloads a file or directory (recursively), as ``cp`` does: into ``local_path`` when that is
        an existing directory, else to that very path. Each file is checked against its sha256 and
        written whole (a temp name, then renamed) or not at all; mode and mtime are kept."""
        source = volume_path(remote_path, True)
        entries = self.ls(name, source, recursive=True)
        single = len(entries) == 1 and entries[0]["path"] == source and source != "" and entries[0]["type"] != "dir"
        local = Path(local_path)
        root = local / (Path(source).name if source else "") if local.is_dir() else local
        total = sum(int(e["size"]) for e in entries if e["type"] == "file")
        done = 0
        dest_of = lambda e: root if single else root / (e["path"] if source == "" else e["path"][len(source) + 1:])  # noqa: E731
        if not single:
            root.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            if entry["type"] == "dir":
                dest_of(entry).mkdir(parents=True, exist_ok=True)
        for entry in entries:
            if entry["type"] != "file":
                continue
            dest = dest_of(entry)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
            conn, res = self._http.open("GET", f"{self._base(name)}/file", query={"path": entry["path"]}, timeout=self._client.timeout)
            digest = hashlib.sha256()
            try:
                with open(part, "wb") as out:
                    while chunk := res.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(entry["path"], done, total)
                expected = res.getheader("x-beta9-sha256") or ""
                if digest.hexdigest() != expected:
                    raise ApiError(0, "HASH_MISMATCH", f"{name}:{entry['path']}: received bytes hash to {digest.hexdigest()}, the gateway said {expected}")
                os.chmod(part, int(res.getheader("x-beta9-mode") or "644", 8))
                mtime = int(res.getheader("x-beta9-mtime") or "0") / 1000
                os.utime(part, (mtime, mtime))
                os.replace(part, dest)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            finally:
                conn.close()
        # Links last (their text, as stored), so that nothing is ever written through one.
        for entry in entries:
            if entry["type"] == "link":
                dest = dest_of(entry)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
                tmp.unlink(missing_ok=True)
                os.symlink(entry["target"], tmp)
                os.replace(tmp, dest)
        for entry in sorted((e for e in entries if e["type"] == "dir" and "mode" in e), key=lambda e: e["path"], reverse=True):
            os.chmod(dest_of(entry), entry["mode"])
        return entries

    def _is_dir(self, name: str, path: str) -> bool:
        try:
            entries = self.ls(name, path)
        except ApiError as err:
            if err.code == "VOLUME_PATH_NOT_FOUND":
                return False
            raise
        return not (len(entries) == 1 and entries[0]["path"] == path and entries[0]["type"] != "dir")


class _Meter:
    """A file object that reports how much of it was read (http.client reads bodies in blocks)."""

    def __init__(self, f: Any, report: Callable[[int], None]) -> None:
        self._f = f
        self._read = 0
        self._report = report

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._read += len(data)
        self._report(self._read)
        return data
