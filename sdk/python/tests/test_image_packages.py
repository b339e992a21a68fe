"""``Image(python_packages=[…])`` installs with a real pip inside the image build, from a PEP 503
index this test serves with a wheel it builds; and a ``python_version`` the base cannot provide
is refused by name before anything is built.

The index listens on the test worker's bridge address (10.219.77.1, on the bridge the test's
worker made), so build containers reach it through their default gateway and nothing else does.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Platform, write

BRIDGE_IP = "10.219.77.1"  # the gateway address of conftest's worker "pyt" (subnet 10.219.77.0/24)


def build_wheel(out: Path) -> Path:
    """A real py3-none-any wheel of ``beta9-probe`` 1.0 (module ``beta9_probe``)."""
    files = {
        "beta9_probe/__init__.py": b'VALUE = "served by a local index"\n',
        "beta9_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: beta9-probe\nVersion: 1.0\n",
        "beta9_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: beta9-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for name, data in files.items()]
    files["beta9_probe-1.0.dist-info/RECORD"] = ("\n".join(record + ["beta9_probe-1.0.dist-info/RECORD,,"]) + "\n").encode()
    wheel = out / "beta9_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


@pytest.fixture
def index(platform: Platform, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    wheel = build_wheel(root / "files")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    write(root, "simple/index.html", '<!DOCTYPE html><html><body><a href="beta9-probe/">beta9-probe</a></body></html>\n')
    write(root, "simple/beta9-probe/index.html",
          f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n')
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            seen.append(self.path)

    # The worker makes its bridge with its first container.
    platform.cli("container", "run", "--", "true", timeout=300)
    server = http.server.ThreadingHTTPServer((BRIDGE_IP, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{BRIDGE_IP}:{server.server_address[1]}/simple/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_python_packages_install_from_a_local_index(platform: Platform, app_dir: Path, index: tuple[str, list[str]]) -> None:
    url, seen = index
    write(app_dir, "app.py", f'''\
from beta9 import Image, function

image = Image(python_version="python3.11", python_packages=["beta9-probe==1.0"]).with_envs(
    {{"PIP_INDEX_URL": "{url}", "PIP_TRUSTED_HOST": "{BRIDGE_IP}"}})


@function(image=image, cpu=0.5, memory=256)
def probe():
    import sys
    import beta9_probe
    return {{"value": beta9_probe.VALUE, "python": sys.version.split()[0]}}
''')
    ran = platform.cli("run", "app.py:probe", "-q", cwd=app_dir, timeout=900)
    answer = json.loads(ran.stdout)
    assert answer["value"] == "served by a local index"
    assert answer["python"].startswith("3.11."), answer
    assert any(p.startswith("/simple/beta9-probe/") for p in seen) and any(p.endswith(".whl") for p in seen), seen


def test_a_python_version_the_base_lacks_is_refused_by_name(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", 'from beta9 import Image, endpoint\n\n@endpoint(image=Image(python_version="python3.12"))\ndef f():\n    return 1\n')
    result = platform.cli("deploy", "app.py:f", cwd=app_dir, check=False)
    assert result.returncode == 2, result.stderr
    assert "python3.12" in result.stderr and "base_image" in result.stderr, result.stderr
