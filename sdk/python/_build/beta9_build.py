"""A PEP 517 build backend for the SDK, standard library only, so ``pip install ./sdk/python``
works offline, with or without build isolation (setuptools would need ``wheel`` from PyPI).

It builds a pure-Python wheel of the packages named in pyproject.toml's [tool.beta9-build],
an sdist, and an editable wheel (a .pth file pointing at this directory).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)
    return {**data["project"], "packages": data["tool"]["beta9-build"]["packages"]}


def _dist(project: dict) -> str:
    return f"{project['name'].replace('-', '_')}-{project['version']}"


def _metadata(project: dict) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {project['version']}",
             f"Summary: {project.get('description', '')}", f"Requires-Python: {project.get('requires-python', '>=3.11')}"]
    if "license" in project:
        lines.append(f"License: {project['license'].get('text', '')}")
    return "\n".join(lines) + "\n"


def _entry_points(project: dict) -> str:
    scripts = project.get("scripts", {})
    return "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()) if scripts else ""


def _package_files(project: dict) -> list[Path]:
    files: list[Path] = []
    for pkg in project["packages"]:
        for path in sorted((ROOT / pkg).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed"):
                files.append(path)
    return files


def _write_wheel(directory: str, contents: dict[str, bytes], project: dict) -> str:
    dist = _dist(project)
    info = f"{dist}.dist-info"
    contents = {**contents, f"{info}/METADATA": _metadata(project).encode(),
                f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: beta9_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    if _entry_points(project):
        contents[f"{info}/entry_points.txt"] = _entry_points(project).encode()
    record = []
    for name, data in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    name = f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as whl:
        for entry, data in contents.items():
            whl.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return name


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return []


get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel


def build_wheel(wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None) -> str:
    project = _project()
    return _write_wheel(wheel_directory, {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in _package_files(project)}, project)


def build_editable(wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None) -> str:
    project = _project()
    return _write_wheel(wheel_directory, {f"__editable__.{project['name']}.pth": f"{ROOT}\n".encode()}, project)


def build_sdist(sdist_directory: str, config_settings: dict | None = None) -> str:
    project = _project()
    dist = _dist(project)
    name = f"{dist}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for path in [ROOT / "pyproject.toml", ROOT / "_build" / "beta9_build.py", *_package_files(project)]:
            tar.add(path, f"{dist}/{path.relative_to(ROOT).as_posix()}")
        info = tarfile.TarInfo(f"{dist}/PKG-INFO")
        data = _metadata(project).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return name
