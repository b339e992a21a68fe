"""``Volume.commit()`` and ``Volume.reload()`` inside a container (the TypeScript SDK's volume-sync.ts):
ask the container's worker, over the Unix socket it binds in (``BETA9_VOLUME_CONTROL``), to publish
this container's changes to the volume now, or to bring in what others committed since. The
worker checks the volume is this container's own. Semantics (README, "Volumes"):

- commit: each file changed since the last commit or reload is stored whole and becomes the volume's
  content at that path (last writer wins per file; removals too); a file that keeps changing while
  it is read is left out (``busy``) rather than stored torn.
- reload: files other writers changed are copied in from the worker's snapshot, each to a temp name
  renamed over the old one (never a torn file); files they removed are removed; files this container
  changed and has not committed are kept (``kept``).

Standard library only: this module runs in containers as it is.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from typing import Any


class VolumeSyncError(Exception):
    """The worker's answer other than success; ``code`` is from the error catalogue."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _call(path: str, body: dict[str, Any]) -> dict[str, Any]:
    sock = os.environ.get("BETA9_VOLUME_CONTROL")
    if not sock:
        raise VolumeSyncError(0, "VOLUME_NOT_MOUNTED", "commit() and reload() work inside a container that mounts the volume "
                              "(BETA9_VOLUME_CONTROL is not set); from outside, use Client().volumes or beta9 cp")
    conn = _UnixConnection(sock, timeout=1800)
    try:
        data = json.dumps(body).encode()
        try:
            conn.request("POST", path, body=data, headers={"content-type": "application/json"})
            res = conn.getresponse()
            text = res.read()
        except OSError as err:
            raise VolumeSyncError(0, "UNAVAILABLE", f"cannot reach this container's worker at {sock}: {err}") from err
        try:
            parsed = json.loads(text)
        except ValueError:
            raise VolumeSyncError(res.status, "INTERNAL", f"the worker answered {res.status} with no JSON") from None
        if res.status >= 300:
            err = parsed.get("error") or {}
            raise VolumeSyncError(res.status, err.get("code", "INTERNAL"), err.get("message", ""))
        return parsed
    finally:
        conn.close()


def commit_volume(name: str) -> dict[str, Any]:
    """Publishes this container's changes to volume ``name``: ``version``, ``changed``, ``removed``, ``busy``, ``skipped``."""
    return _call("/volume/commit", {"name": name})


def reload_volume(name: str, mount_path: str) -> dict[str, Any]:
    """Brings others' committed changes into the volume mounted at ``mount_path``."""
    plan = _call("/volume/reload", {"name": name})
    for d in plan.get("dirs", []):
        _make_dirs(os.path.join(mount_path, d["path"]))
        os.chmod(os.path.join(mount_path, d["path"]), d["mode"])
    for f in plan["files"]:
        _replace(os.path.join(plan["source"], f["path"]), os.path.join(mount_path, f["path"]), f["mode"], f["mtime"])
    for link in plan.get("links", []):
        _replace_link(link["target"], os.path.join(mount_path, link["path"]))
    for path in plan["remove"]:
        target = os.path.join(mount_path, path)
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
            os.unlink(target)
        elif os.path.isdir(target):
            try:
                os.rmdir(target)  # only when empty: what is left below is this container's own
            except OSError:
                pass
    _call("/volume/reloaded", {"name": name, "version": plan["version"]})
    return {"name": name, "version": plan["version"], "updated": len(plan["files"]), "removed": len(plan["remove"]), "kept": plan["kept"]}


def _make_dirs(directory: str) -> None:
    """mkdir -p, replacing a file on the way by a directory (another writer made it one)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        parent = os.path.dirname(directory)
        if parent != directory:
            _make_dirs(parent)
        if os.path.lexists(directory) and (os.path.islink(directory) or not os.path.isdir(directory)):
            os.unlink(directory)
        os.makedirs(directory, exist_ok=True)


def _replace(source: str, dest: str, mode: int, mtime: int) -> None:
    """Writes ``dest`` whole: a temp file beside it, renamed over it."""
    _make_dirs(os.path.dirname(dest))
    tmp = f"{dest}.beta9-reload-{os.getpid()}"
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, mode)
        os.utime(tmp, (mtime / 1000, mtime / 1000))
        if os.path.isdir(dest) and not os.path.islink(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _replace_link(target: str, dest: str) -> None:
    """A symlink made beside ``dest`` and renamed over it (its text only: never followed)."""
    _make_dirs(os.path.dirname(dest))
    tmp = f"{dest}.beta9-reload-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    os.replace(tmp, dest)
