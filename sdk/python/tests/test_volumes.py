"""Volumes from Python: ``Client().volumes`` (create, upload files and directories, ls, download checked
against sha256, remove, delete), bad names and paths refused before anything is sent, and a function
that mounts a volume: what it writes is committed when its container ends."""
from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from conftest import Platform, wait_until, write
from beta9 import ApiError, OptionError
from beta9.volumes import volume_path

APP = textwrap.dedent('''\
    from beta9 import Volume, function


    @function(cpu=0.25, memory=128, keep_warm_seconds=1, volumes=[Volume("pyvol", "/data")])
    def note(text: str):
        import os
        os.makedirs("/data/from-fn", exist_ok=True)
        with open("/data/from-fn/note.txt", "w") as f:
            f.write(text)
        return sorted(os.listdir("/data"))
''')


def test_paths_that_leave_the_volume_are_refused_before_sending() -> None:
    assert volume_path("a//b/./c/") == "a/b/c"
    assert volume_path(".", allow_root=True) == ""
    for bad in ("../x", "/etc/passwd", "a/../../b", "a\x00b"):
        with pytest.raises(OptionError):
            volume_path(bad)
    with pytest.raises(OptionError, match="names the volume's root"):
        volume_path("")


def test_volumes_from_python(platform: Platform, tmp_path: Path) -> None:
    volumes = platform.client.volumes
    with pytest.raises(OptionError, match="'/' is not allowed"):
        volumes.create("a/b")
    assert volumes.create("pyvol")["version"] == 0
    with pytest.raises(ApiError) as taken:
        volumes.create("pyvol")
    assert taken.value.code == "NAME_TAKEN"

    big = tmp_path / "big.bin"
    big.write_bytes(hashlib.sha512(b"x").digest() * 65536)  # 4 MiB
    seen: list[int] = []
    done = volumes.upload("pyvol", big, "models/", on_progress=lambda path, n, total: seen.append(n))
    assert [d["path"] for d in done] == ["models/big.bin"] and seen[-1] == big.stat().st_size
    tree = tmp_path / "tree"
    write(tree, "a.txt", "a")
    write(tree, "sub/b.txt", "b")
    assert len(volumes.upload("pyvol", tree, "")) == 2
    assert [e["path"] for e in volumes.ls("pyvol", "tree", recursive=True)] == ["tree/a.txt", "tree/sub/b.txt"]
    assert {e["path"]: e["type"] for e in volumes.ls("pyvol")} == {"models": "dir", "tree": "dir"}

    back = tmp_path / "back.bin"
    volumes.download("pyvol", "models/big.bin", back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    volumes.download("pyvol", "tree", out)
    assert (out / "tree" / "sub" / "b.txt").read_text() == "b"
    assert volumes.remove("pyvol", "tree", recursive=True)["removed"] == 2

    with pytest.raises(ApiError) as missing:
        volumes.ls("no-such-volume")
    assert missing.value.code == "VOLUME_NOT_FOUND" and "beta9 volume create no-such-volume" in missing.value.message
    listed = json.loads(platform.cli("volume", "list", "--json").stdout)
    assert any(v["name"] == "pyvol" and v["files"] == 1 for v in listed)


def test_a_function_mounts_a_volume_and_its_writes_are_committed_when_it_ends(platform: Platform, app_dir: Path, tmp_path: Path) -> None:
    volumes = platform.client.volumes
    before = volumes.get("pyvol")["version"]
    write(app_dir, "app.py", APP)
    write(app_dir, "script.py", "import json\nfrom app import note\nprint(json.dumps(note.remote(text='written by a function')))\n")
    ran = platform.python("script.py", cwd=app_dir)
    assert ran.returncode == 0, ran.stderr
    assert "models" in json.loads(ran.stdout.splitlines()[-1]), "the container saw the volume as committed before it started"
    # keep_warm_seconds=1: the container ends soon after the call, and its changes are committed then.
    wait_until("the function's commit", lambda: volumes.get("pyvol")["version"] > before, timeout=180)
    volumes.download("pyvol", "from-fn/note.txt", tmp_path / "note.txt")
    assert (tmp_path / "note.txt").read_text() == "written by a function"
    assert volumes.delete("pyvol")["name"] == "pyvol"


def test_symlinks_and_empty_directories_round_trip(platform: Platform, tmp_path: Path) -> None:
    """Links go up and come back as links with their text (one to /etc/shadow is harmless: never
    followed); empty directories survive; ``ls`` shows both."""
    import os

    volumes = platform.client.volumes
    volumes.create("pylinks")
    tree = tmp_path / "tree"
    (tree / "empty" / "inner").mkdir(parents=True)
    (tree / "f.txt").write_text("f")
    os.symlink("f.txt", tree / "rel")
    os.symlink("/etc/shadow", tree / "abs")
    volumes.upload("pylinks", tree, "")
    listed = {e["path"]: e for e in volumes.ls("pylinks", "tree", recursive=True)}
    assert (listed["tree/rel"]["type"], listed["tree/rel"]["target"]) == ("link", "f.txt")
    assert (listed["tree/abs"]["type"], listed["tree/abs"]["target"]) == ("link", "/etc/shadow")
    assert listed["tree/empty/inner"]["type"] == "dir"
    back = tmp_path / "back"
    volumes.download("pylinks", "tree", back)
    assert os.readlink(back / "rel") == "f.txt" and os.readlink(back / "abs") == "/etc/shadow"
    assert (back / "empty" / "inner").is_dir() and list((back / "empty" / "inner").iterdir()) == []
    assert (back / "f.txt").read_text() == "f"
    volumes.delete("pylinks")
