"""Code sync for Python workloads: the directory holding the workload's file (walking up through
packages, so relative and package imports work in the container) packed as a deterministic tar.gz
named by its sha256, so unchanged code is never uploaded twice.

Skipped: ``.git``, ``__pycache__``, virtual environments, ``node_modules``, and whatever
``.beta9ignore`` and ``.gitignore`` in the root name (gitignore-style patterns; ``!`` re-includes).
"""
from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

#: Bundles above this size are refused before upload: models and data belong in volumes or images.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
ALWAYS_SKIPPED = {".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache", ".beta9", ".tox", ".hg", ".svn"}


class BundleError(Exception):
    """The code cannot be bundled (too large, unreadable); the message says what to change."""


@dataclass(frozen=True)
class CodeBundle:
    data: bytes
    sha256: str
    #: "relative/file.py:function" inside the bundle: what the runner loads.
    handler: str
    root: Path
    files: list[Path]


def package_root(file: Path) -> Path:
    """The directory to bundle: the file's directory, or the top of the package it belongs to."""
    root = file.resolve().parent
    while (root / "__init__.py").exists() and root.parent != root:
        root = root.parent
    return root


def _patterns(root: Path) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    for name in (".gitignore", ".beta9ignore"):  # .beta9ignore last, so it can re-include
        try:
            text = (root / name).read_text("utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            out.append((negate, line[1:] if negate else line))
    return out


def _ignored(rel: str, is_dir: bool, patterns: list[tuple[bool, str]]) -> bool:
    verdict = False
    base = rel.rsplit("/", 1)[-1]
    for negate, pattern in patterns:
        dir_only = pattern.endswith("/")
        p = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        anchored = "/" in p
        p = p.lstrip("/")
        hit = fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(rel, p + "/**") if anchored else fnmatch.fnmatchcase(base, p)
        if hit:
            verdict = not negate
    return verdict


def collect(root: Path, max_bytes: int | None = None) -> list[Path]:
    """Files under ``root`` to bundle, sorted; raises BundleError past ``max_bytes`` (MAX_BUNDLE_BYTES)."""
    max_bytes = MAX_BUNDLE_BYTES if max_bytes is None else max_bytes
    patterns = _patterns(root)
    files: list[Path] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames if d not in ALWAYS_SKIPPED and not d.endswith(".egg-info")
                             and not _ignored(rel_dir + d, True, patterns) and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = rel_dir + name
            if name.endswith((".pyc", ".pyo")) or _ignored(rel, False, patterns) or path.is_symlink() or not path.is_file():
                continue
            total += path.stat().st_size
            if total > max_bytes:
                raise BundleError(
                    f"the code in {root} is over {max_bytes // 1_048_576} MiB (at {rel}); list large files and data in "
                    f".beta9ignore (or .gitignore) and put models and data in an image or a volume")
            files.append(path)
    return files


def bundle(file: str | os.PathLike[str], function: str, root: Path | None = None) -> CodeBundle:
    """Packs the code for ``file:function`` (USTAR entries, zeroed owners and times, sorted)."""
    path = Path(file).resolve()
    if not path.is_file():
        raise BundleError(f"{file}: no such file")
    root = (root or package_root(path)).resolve()
    files = collect(root)
    if path not in files:
        files.append(path)
        files.sort()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for f in files:
            rel = f.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            data = f.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(f, os.X_OK) else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError as err:  # a name USTAR cannot hold (over 255 bytes)
                raise BundleError(f"{rel}: {err}; shorten the path or ignore it in .beta9ignore") from err
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    handler = f"{path.relative_to(root).as_posix()}:{function}"
    return CodeBundle(data, hashlib.sha256(data).hexdigest(), handler, root, files)
