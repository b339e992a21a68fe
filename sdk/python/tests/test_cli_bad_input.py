"""Bad input to ``beta9 deploy|run|serve`` for Python workloads: each is one line naming the
problem, a meaningful exit code (2 usage/code, 3 auth, 5 unreachable), and nothing reaches the
gateway's object store or its deployments."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Platform, write

BAD_APPS = {
    "syntax.py": ("from beta9 import endpoint\n\n@endpoint()\ndef f(x):\n    return x +\n", "syntax.py:5"),
    "unknown.py": ("from beta9 import endpoint\n\n@endpoint(colour='red')\ndef f(x):\n    return x\n", "colour"),
    "types.py": ("from beta9 import task_queue\n\n@task_queue(memory=True)\ndef f(x):\n    return x\n", "memory=True"),
    "imports.py": ("import nosuchmodule_beta9\n", "nosuchmodule_beta9"),
}
GOOD_APP = "from beta9 import endpoint\n\n@endpoint(name='never-deployed')\ndef f(x: int = 1):\n    return x\n"


def stored(platform: Platform) -> tuple[list[str], list[str]]:
    """What the gateway holds: object files, and deployments."""
    objects = platform.dir / "data" / "objects"
    files = sorted(str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()) if objects.exists() else []
    deployments = sorted(d["name"] for d in json.loads(platform.cli("deployment", "list", "--json").stdout))
    return files, deployments


def one_error_line(stderr: str) -> str:
    """The error line; a usage error may add one hint line, "(see beta9 CMD --help)"."""
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith("(see beta9 ")]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def test_code_problems_are_one_line_exit_2_and_upload_nothing(platform: Platform, app_dir: Path) -> None:
    for name, (text, _) in BAD_APPS.items():
        write(app_dir, name, text)
    write(app_dir, "good.py", GOOD_APP)
    before = stored(platform)
    cases = [(cmd, f"{name}:f", named) for name, (_, named) in BAD_APPS.items() for cmd in ("deploy", "run")]
    cases += [("deploy", "good.py:missing", "missing"), ("deploy", "nofile.py:f", "nofile.py"), ("serve", "syntax.py:f", "syntax.py:5")]
    for command, target, named in cases:
        result = platform.cli(command, target, check=False, cwd=app_dir, timeout=120)
        line = one_error_line(result.stderr)
        assert result.returncode == 2, (command, target, result.returncode, line)
        assert named in line, (command, target, line)
    assert stored(platform) == before, "a refused deploy must upload nothing"


def test_run_without_input_is_a_usage_error(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "needs.py", "from beta9 import function\n\n@function()\ndef f(x: int):\n    return x\n")
    result = platform.cli("run", "needs.py:f", "--input", "{not json", check=False, cwd=app_dir)
    assert result.returncode == 2 and "--input" in one_error_line(result.stderr)


def test_wrong_token_is_exit_3_and_unreachable_gateway_exit_5(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "good.py", GOOD_APP)
    before = stored(platform)
    wrong = platform.cli("deploy", "good.py:f", check=False, cwd=app_dir, extra_env={"BETA9_TOKEN": "b9_not_a_real_token"})
    assert wrong.returncode == 3, wrong.stderr
    assert "token" in one_error_line(wrong.stderr).lower()
    gone = platform.cli("deploy", "good.py:f", check=False, cwd=app_dir, extra_env={"BETA9_GATEWAY": "http://127.0.0.1:9"})
    assert gone.returncode == 5 and "127.0.0.1:9" in one_error_line(gone.stderr)
    assert stored(platform) == before, "nothing reaches the store without a valid token"
    # The SDK says the same from Python: one exception naming the problem, not a traceback from urllib.
    script = write(app_dir, "call.py", GOOD_APP + "\nif __name__ == '__main__':\n    f.remote(x=1)\n")
    result = platform.python(str(script), cwd=app_dir, extra_env={"BETA9_TOKEN": "b9_not_a_real_token"})
    assert result.returncode != 0 and "UNAUTHORIZED" in result.stderr or "token" in result.stderr.lower(), result.stderr
    assert stored(platform) == before
