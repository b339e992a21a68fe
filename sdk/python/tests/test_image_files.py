"""``Image.from_registry(credentials=…)``, ``Image.from_dockerfile`` and ``add_local_file`` /
``add_local_dir``: the specs they make, the packed files (deterministic, .dockerignore honoured),
and the ``describe`` contract that hands those files to the CLI. Building them runs in the
TypeScript e2e tests (packages/cli/src/images-e2e.test.ts), which drive this SDK too.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from beta9 import Image, ImageError
from beta9 import image_files
from conftest import SDK_ROOT, write


def members(digest: str) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(image_files._PENDING[digest]), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_from_registry_takes_secret_names_only() -> None:
    spec = Image.from_registry("ghcr.io/acme/app:1", credentials={"username": "GHCR_USER", "password": "GHCR_TOKEN"}).to_spec()
    assert spec["base"] == {"kind": "registry", "ref": "ghcr.io/acme/app:1", "credentials": {"username": "GHCR_USER", "password": "GHCR_TOKEN"}}
    assert Image.from_registry("x:1", credentials={"secret": "REG_AUTH"}).to_spec()["base"]["credentials"] == {"secret": "REG_AUTH"}
    for bad in [{"username": "U"}, {"secret": "has space"}, {"user": "U", "password": "P"}, "REG_AUTH"]:
        with pytest.raises(ImageError, match="secret names"):
            Image.from_registry("x:1", credentials=bad)  # type: ignore[arg-type]


def test_from_dockerfile_sends_the_text_and_uploads_the_context_minus_dockerignore(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx, "Dockerfile", "FROM python:3.11-slim\nCOPY app/ /app/\n")
    write(ctx, ".dockerignore", "*.log\n**/__pycache__\n!keep.log\n")
    write(ctx, "app/main.py", "print(1)\n")
    write(ctx, "app/__pycache__/main.pyc", "x")
    write(ctx, "debug.log", "x")
    write(ctx, "keep.log", "k")
    os.chmod(ctx / "app/main.py", 0o755)
    image = Image.from_dockerfile(ctx / "Dockerfile", build_args={"V": "1"}, credentials={"secret": "HUB"})
    spec = image.to_spec()
    base = spec["base"]
    assert base["kind"] == "dockerfile" and base["dockerfile"].startswith("FROM python") and base["buildArgs"] == {"V": "1"}
    assert base["credentials"] == {"secret": "HUB"}
    got = members(base["context"])
    assert sorted(got) == [".dockerignore", "Dockerfile", "app", "app/main.py", "keep.log"]
    assert got["app/main.py"].mode == 0o755 and got["app/main.py"].mtime == 0 and got["app/main.py"].uid == 0
    # Same content, same hash; a changed file, a new one.
    assert Image.from_dockerfile(ctx / "Dockerfile").to_spec()["base"]["context"] == base["context"]
    write(ctx, "app/main.py", "print(2)\n")
    assert Image.from_dockerfile(ctx / "Dockerfile").to_spec()["base"]["context"] != base["context"]
    # No COPY or ADD: nothing to upload, and the context is not part of the spec.
    write(tmp_path / "plain", "Dockerfile", "FROM python:3.11-slim\nRUN true\n")
    assert "context" not in Image.from_dockerfile(tmp_path / "plain" / "Dockerfile").to_spec()["base"]
    # Nothing is read until the spec is made: the module also loads inside the container.
    later = Image.from_dockerfile(tmp_path / "missing" / "Dockerfile").add_local_file(tmp_path / "missing.txt", "/x")
    with pytest.raises(ImageError, match="cannot read"):
        later.to_spec()


def test_add_local_file_and_dir_make_copy_steps_of_packed_files(tmp_path: Path) -> None:
    write(tmp_path, "conf.toml", "a = 1\n")
    write(tmp_path, "tree/x.txt", "x")
    write(tmp_path, "tree/skip.tmp", "no")
    image = Image().add_local_file(tmp_path / "conf.toml", "/etc/app/conf.toml").add_local_dir(tmp_path / "tree", "/srv/tree", ignore=["*.tmp"])
    steps = image.to_spec()["steps"]
    file_step, dir_step = steps[-2], steps[-1]
    assert file_step == {"kind": "copy", "object": file_step["object"], "src": ["conf.toml"], "dest": "/etc/app/conf.toml"}
    assert dir_step == {"kind": "copy", "object": dir_step["object"], "src": ["."], "dest": "/srv/tree/"}
    assert sorted(members(file_step["object"])) == ["conf.toml"]
    assert sorted(members(dir_step["object"])) == ["x.txt"]
    assert set(image_files.pending(image.to_spec())) == {file_step["object"], dir_step["object"]}
    with pytest.raises(ImageError, match="absolute"):
        Image().add_local_file(tmp_path / "conf.toml", "relative/conf.toml")
    with pytest.raises(ImageError, match="no such file"):
        Image().add_local_file(tmp_path / "nope", "/x").to_spec()
    os.symlink("/etc/passwd", tmp_path / "tree" / "out")
    with pytest.raises(ImageError, match="outside"):
        Image().add_local_dir(tmp_path / "tree", "/srv/tree").to_spec()


def test_describe_hands_the_image_files_to_the_cli(tmp_path: Path) -> None:
    write(tmp_path, "settings.json", '{"mode": "prod"}\n')
    write(tmp_path, "app.py", "from beta9 import Image, endpoint\n\n"
          "@endpoint(image=Image().add_local_file('settings.json', '/etc/settings.json'))\ndef f():\n    return 1\n")
    out = subprocess.run([sys.executable, "-m", "beta9", "describe", "app.py:f"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SDK_ROOT)}, timeout=60)
    answer = json.loads(out.stdout)
    step = answer["image"]["steps"][-1]
    assert step["kind"] == "copy" and step["dest"] == "/etc/settings.json"
    data = base64.b64decode(answer["imageFiles"][step["object"]])
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.extractfile("settings.json").read() == b'{"mode": "prod"}\n'  # type: ignore[union-attr]
