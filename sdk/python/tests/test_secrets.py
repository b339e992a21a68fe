"""Secrets end to end: created with the CLI (value, file, stdin), injected into a function's and a
sandbox's environment, changed values reach new containers, and no listing, stub or task shows them."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from conftest import CLI, NODE, Platform, wait_until, write

APP = textwrap.dedent('''\
    import os
    from beta9 import function


    @function(cpu=0.25, memory=128, keep_warm_seconds=1, secrets=["PYT_API_KEY", "PYT_FROM_STDIN"])
    def peek():
        return [os.environ.get("PYT_API_KEY"), os.environ.get("PYT_FROM_STDIN")]
''')


def test_secrets_reach_containers_and_are_never_shown(platform: Platform, app_dir: Path) -> None:
    platform.cli("secret", "create", "PYT_API_KEY", "--value", "first-value")
    piped = subprocess.run([NODE, str(CLI), "secret", "create", "PYT_FROM_STDIN", "-"], input="from-stdin\n", env=platform.env,
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    listed = platform.cli("secret", "list", "--json").stdout
    assert {s["name"] for s in json.loads(listed)} >= {"PYT_API_KEY", "PYT_FROM_STDIN"}
    assert "first-value" not in listed and "from-stdin" not in listed

    write(app_dir, "app.py", APP)
    write(app_dir, "script.py", "import json\nfrom app import peek\nprint(json.dumps(peek.remote()))\n")
    ran = platform.python("script.py", cwd=app_dir)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1]) == ["first-value", "from-stdin"]

    # A new value reaches containers started after the change (this one scales to zero after 1 s).
    platform.cli("secret", "update", "PYT_API_KEY", "--value", "second-value")

    def second() -> bool:
        out = platform.python("script.py", cwd=app_dir)
        return out.returncode == 0 and json.loads(out.stdout.splitlines()[-1])[0] == "second-value"
    wait_until("the new value in a new container", second, timeout=120, interval=3)

    # (The handler returns the values, so its tasks' results hold them; the stub only names them.)
    for task in json.loads(platform.cli("task", "list", "--json", "--limit", "50").stdout):
        stub = platform.client.request("GET", f"/stub/{task['stubId']}")
        assert "second-value" not in json.dumps(stub), "a stub names its secrets, never their values"


def test_a_missing_secret_is_refused_before_anything_runs_and_a_sandbox_gets_its_secrets(platform: Platform, app_dir: Path) -> None:
    # The app also names PYT_API_KEY, which the test above creates; run alone, this one does.
    platform.cli("secret", "create", "PYT_API_KEY", "--value", "first-value", check=False)
    write(app_dir, "app.py", APP.replace('"PYT_FROM_STDIN"', '"PYT_NOT_CREATED"'))
    refused = platform.cli("deploy", "app.py:peek", cwd=app_dir, check=False)
    assert refused.returncode == 4, refused.stderr
    assert "beta9 secret create PYT_NOT_CREATED" in refused.stderr

    platform.cli("secret", "create", "PYT_SANDBOX_KEY", "--value", "sandbox-value")
    write(app_dir, "sb.py", textwrap.dedent('''\
        from beta9 import Sandbox
        sb = Sandbox(image=None, cpu=0.25, memory=256, secrets=["PYT_SANDBOX_KEY"]).create()
        try:
            print(sb.process.run_code("import os; print(os.environ['PYT_SANDBOX_KEY'])").result)
        finally:
            sb.terminate()
    '''))
    ran = platform.python("sb.py", cwd=app_dir)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "sandbox-value"
    platform.cli("secret", "delete", "PYT_SANDBOX_KEY")
    assert "PYT_SANDBOX_KEY" not in platform.cli("secret", "list").stdout


def test_deployment_restart_rolls_a_changed_secret_into_warm_containers(platform: Platform, app_dir: Path) -> None:
    platform.cli("secret", "create", "PYT_ROLLED", "--value", "before")
    write(app_dir, "app.py", textwrap.dedent('''\
        import os
        from beta9 import endpoint


        @endpoint(name="rolled", cpu=0.25, memory=128, keep_warm_seconds=600, secrets=["PYT_ROLLED"])
        def rolled():
            return os.environ.get("PYT_ROLLED")
    '''))
    platform.cli("deploy", "app.py:rolled", cwd=app_dir)

    def call() -> str:
        return platform.client.invoke("/endpoint/rolled", {})
    assert call() == "before"
    platform.cli("secret", "update", "PYT_ROLLED", "--value", "after")
    assert call() == "before", "a warm container keeps the value it started with"
    restarted = platform.cli("deployment", "restart", "rolled")
    assert "restarting rolled v1" in restarted.stdout
    assert call() == "after", "the next call runs on a new container with the new value"
