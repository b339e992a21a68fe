"""Local files for images (``add_local_file``, ``add_local_dir``, a Dockerfile's build context).

They are packed as a deterministic tar.gz (sorted, owner 0, mtime 0, modes kept) named by its
sha256, like code bundles, so the image spec names the content and an unchanged file never makes
a new image. The bytes wait in this process until a build needs them: ``Client.build_image``
uploads the ones its spec names that the gateway does not hold yet.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
from pathlib import Path
from typing import Any, Callable, Sequence

#: sha256 -> packed bytes made in this process (see upload_image_files).
_PENDING: dict[str, bytes] = {}


class ImageFilesError(ValueError):
    """Local files that cannot be packed (missing, a link out of the directory, ...)."""


def ignore_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A ``.dockerignore``-style matcher: ``*``, ``?``, ``**``, ``[...]``, ``!`` exceptions, last match wins."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in patterns:
        p = raw.strip()
        if not p or p.startswith("#"):
            continue
        negate = p.startswith("!")
        p = posixpath.normpath((p[1:] if negate else p).strip().lstrip("/")).rstrip("/")
        out, i = "", 0
        while i < len(p):
            c = p[i]
            if p.startswith("**", i):
                slash = p[i + 2:i + 3] == "/"
                out += "(?:.*/)?" if slash else ".*"
                i += 3 if slash else 2
                continue
            if c == "*":
                out += "[^/]*"
            elif c == "?":
                out += "[^/]"
            elif c == "[" and p.find("]", i + 1) > 0:
                end = p.find("]", i + 1)
                body = p[i + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
            else:
                out += re.escape(c)
            i += 1
        rules.append((negate, re.compile(f"^{out}$")))

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:i + 1]) for i in range(len(parts))]
        verdict = False
        for negate, rx in rules:
            if any(rx.match(pre) for pre in prefixes):
                verdict = not negate
        return verdict

    return ignored


def _info(path: Path, name: str, root: Path) -> tarfile.TarInfo:
    st = path.lstat()
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        inside = os.path.relpath(os.path.normpath(os.path.join(path.parent, target)), root)
        if os.path.isabs(target) or inside == ".." or inside.startswith(".." + os.sep):
            raise ImageFilesError(f"{path} is a symbolic link to {target}, outside {root}; images take links that stay inside the copied files")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    else:
        raise ImageFilesError(f"{path} is not a file, directory or symbolic link")
    return info


def _pack(entries: list[tuple[Path, tarfile.TarInfo]]) -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, info in entries:
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    _PENDING[digest] = data
    return digest


def pack_directory(directory: str | os.PathLike[str], ignore: Sequence[str] = ()) -> str:
    """Packs a directory's contents (minus what ``ignore`` patterns name); returns the sha256."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise ImageFilesError(f"{directory}: no such directory")
    ignored = ignore_matcher(ignore)
    entries: list[tuple[Path, tarfile.TarInfo]] = []

    def visit(rel: str) -> None:
        for name in sorted(os.listdir(root / rel if rel else root)):
            child = f"{rel}/{name}" if rel else name
            if ignored(child):
                continue
            info = _info(root / child, child, root)
            entries.append((root / child, info))
            if info.isdir():
                visit(child)

    visit("")
    return _pack(entries)


def pack_file(file: str | os.PathLike[str]) -> tuple[str, str]:
    """Packs one file under its base name; returns (sha256, name)."""
    path = Path(file).resolve()
    if not path.is_file():
        raise ImageFilesError(f"{file}: no such file (use add_local_dir for a directory)")
    return _pack([(path, _info(path, path.name, path.parent))]), path.name


def dockerignore(directory: str | os.PathLike[str]) -> list[str]:
    try:
        return (Path(directory) / ".dockerignore").read_text("utf-8").splitlines()
    except OSError:
        return []


def spec_objects(spec: dict[str, Any]) -> list[str]:
    """The packed files a spec names: copy steps' objects and a Dockerfile's context."""
    found = [s["object"] for s in spec.get("steps", []) if s.get("kind") == "copy"]
    base = spec.get("base", {})
    if base.get("kind") == "dockerfile" and base.get("context"):
        found.append(base["context"])
    return list(dict.fromkeys(found))


def pending(spec: dict[str, Any]) -> dict[str, bytes]:
    """The packed bytes made in this process for the files ``spec`` names."""
    return {h: _PENDING[h] for h in spec_objects(spec) if h in _PENDING}
