"""``pip install ./sdk/python`` as the README says, in a fresh venv with no index reachable: the
package builds with its in-tree backend, installs both ``beta9`` and ``beam`` with their type
markers, and its describe command (what the CLI calls) runs from the installed copy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SDK_ROOT, write


def venv(path: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "venv", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"python3 -m venv is unavailable (Debian: apt install python3-venv): {result.stderr.strip()}")
    return path / "bin" / "python"


@pytest.mark.parametrize("mode", [[], ["--no-build-isolation"], ["--no-build-isolation", "-e"]])
def test_pip_install_offline(tmp_path: Path, mode: list[str]) -> None:
    python = venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")  # nothing may come from an index
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", *mode, str(SDK_ROOT)], capture_output=True, text=True,
                             env=env, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    probe = subprocess.run([str(python), "-c", "import beam, beta9, beta9.runner, pathlib, json; "
                            "print(json.dumps([beam.endpoint is beta9.endpoint, str(pathlib.Path(beta9.__file__).parent), "
                            "(pathlib.Path(beta9.__file__).parent / 'py.typed').exists(), (pathlib.Path(beam.__file__).parent / 'py.typed').exists()]))"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    alias, location, typed, beam_typed = json.loads(probe.stdout)
    assert alias and typed and beam_typed, probe.stderr
    editable = "-e" in mode
    assert (location == str(SDK_ROOT / "beta9")) == editable, location
    app = write(tmp_path, "app.py", "from beam import endpoint\n\n@endpoint(cpu=1)\ndef handler():\n    return {'ok': True}\n")
    described = subprocess.run([str(tmp_path / "venv" / "bin" / "beta9-py"), "describe", f"{app}:handler"], capture_output=True,
                               text=True, env=env, cwd=tmp_path)
    assert described.returncode == 0, described.stdout + described.stderr
    assert json.loads(described.stdout)["kind"] == "endpoint"
