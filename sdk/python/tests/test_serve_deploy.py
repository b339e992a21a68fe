"""``beta9 serve app.py:fn`` with hot reload on save, ``.serve()`` and ``.deploy()`` from the SDK,
and a handler that runs out of memory failing only its own call."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import CLI, NODE, Platform, wait_until, write

APP = textwrap.dedent('''\
    from beta9 import endpoint, function


    @endpoint(name="greeter", cpu=0.25, memory=256)
    def greet(name: str = "world"):
        return {"text": f"VERSION one {name}"}


    @function(cpu=0.25, memory=128)
    def hog(mib: int):
        blocks = [bytearray(1024 * 1024) for _ in range(mib)]
        return len(blocks)
''')




def test_cli_serve_hot_reloads_on_save_and_ends_with_ctrl_c(platform: Platform, app_dir: Path) -> None:
    app = write(app_dir, "app.py", APP)
    proc = subprocess.Popen([NODE, str(CLI), "serve", "app.py:greet"], cwd=app_dir, env=platform.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 300
        while not url and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"curl -X POST (\S+)", line)
            url = m.group(1) if m else ""
        assert url, "".join(lines)
        status, body = wait_until("the served code", lambda: (lambda r: r if r[0] == 200 else None)(platform.post(url, {"name": "a"})))
        assert body == {"text": "VERSION one a"}
        app.write_text(APP.replace("VERSION one", "VERSION two"))
        wait_until("the saved code to answer", lambda: platform.post(url, {"name": "b"}) == (200, {"text": "VERSION two b"}), timeout=180)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, "".join(lines)
        assert platform.post(url, {})[0] == 404, "the session ends with the command"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sdk_serve_and_deploy(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", APP)
    write(app_dir, "script.py", textwrap.dedent('''\
        import json
        from app import greet
        handle = greet.serve()
        served = handle.call(name="s")
        handle.stop()
        first = greet.deploy()
        print(json.dumps({"served": served, "name": first.name, "version": first.version, "url": first.url,
                          "remote": greet.remote(name="r")}))
    '''))
    ran = platform.python("script.py", cwd=app_dir)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["served"] == {"text": "VERSION one s"} and out["remote"] == {"text": "VERSION one r"}
    assert out["name"] == "greeter" and out["version"] >= 1
    assert platform.post(out["url"], {"name": "u"}) == (200, {"text": "VERSION one u"})


def test_a_handler_out_of_memory_fails_its_call_and_the_next_call_runs(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", APP)
    write(app_dir, "script.py", textwrap.dedent('''\
        import json
        from beta9 import ApiError
        from app import hog
        try:
            hog.remote(mib=512)
            failed = "returned"
        except ApiError as err:
            failed = f"{err.status} {err.code}: {err}"
        print(json.dumps({"failed": failed, "small": hog.remote(mib=8)}))
    '''))
    ran = platform.python("script.py", cwd=app_dir, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["failed"] != "returned", out
    assert out["small"] == 8
