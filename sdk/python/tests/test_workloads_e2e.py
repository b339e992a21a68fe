"""Python workloads end to end: scripts written as a user writes them, run with ``python3`` or
deployed with the CLI, against a real gateway and runc worker (conftest.py's ``platform``).
"""
from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import Platform, wait_until, write

APP = textwrap.dedent('''\
    import asyncio
    import ctypes
    import os
    import sys
    import time

    from beta9 import endpoint, function, schema, task_queue

    STARTS = []
    SEEN = []


    def load():
        STARTS.append(os.getpid())
        return {"model": "loaded", "pid": os.getpid()}


    @function(cpu=0.25, memory=256)
    def square(x):
        return x * x


    @function(cpu=0.25, memory=256, concurrent_requests=20)
    async def slow_square(x):
        await asyncio.sleep(0.05)
        return x * x


    @endpoint(cpu=0.25, memory=256, on_start=load)
    def model(*, context):
        return {"value": context.on_start_value, "starts": len(STARTS), "task": context.task_id}


    class Greeting(schema.Schema):
        name = schema.String()
        times = schema.Integer()


    @endpoint(cpu=0.25, memory=256, inputs=Greeting)
    def greet(input: Greeting):
        return {"text": " ".join([f"hi {input.name}"] * input.times)}


    @task_queue(cpu=0.25, memory=256, inputs=Greeting)
    def greet_later(input: Greeting):
        return input.name * input.times


    @task_queue(cpu=0.25, memory=256, retries=2)
    def flaky(mode, *, context):
        if mode == "always":
            raise RuntimeError("always fails")
        if context.retry_count == 0:
            raise RuntimeError("first attempt fails")
        return f"retry {context.retry_count}"


    @task_queue(cpu=0.25, memory=256, workers=1, concurrent_requests=4, timeout=600)
    def watcher(mode, *, context):
        if mode == "report":
            return SEEN
        while not context.wait_cancelled(0.05):
            pass
        SEEN.append(context.task_id)
        return "stopped"


    @function(cpu=0.25, memory=256, timeout=1)
    def too_slow():
        time.sleep(30)
        return "never"


    @function(cpu=0.25, memory=512)
    def chatty():
        line = "x" * 1023
        for _ in range(10 * 1024):
            print(line)
        sys.stdout.flush()
        return "ok"


    @function(cpu=0.25, memory=256)
    def crash(how):
        if how == "segfault":
            ctypes.string_at(0)
        return "alive"
''')


def run_script(platform: Platform, app_dir: Path, body: str) -> Any:
    """Runs a script beside app.py that prints one JSON line; returns it parsed."""
    write(app_dir, "app.py", APP)
    write(app_dir, "script.py", "import json\nfrom app import *\n" + textwrap.dedent(body))
    ran = platform.python("script.py", cwd=app_dir)
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
    return json.loads(ran.stdout.strip().splitlines()[-1])




def test_remote_and_map_without_deploying_keep_order_sync_and_async(platform: Platform, app_dir: Path) -> None:
    out = run_script(platform, app_dir, '''\
        print(json.dumps({
            "one": square.remote(7),
            "local": square(3),
            "mapped": list(square.map(range(200))),
            "async": list(slow_square.map(range(50))),
        }))
    ''')
    assert out["one"] == 49 and out["local"] == 9
    assert out["mapped"] == [i * i for i in range(200)]
    assert out["async"] == [i * i for i in range(50)]


def test_on_start_runs_once_per_container_and_its_value_reaches_the_handler(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", APP)
    platform.cli("deploy", "app.py:model", cwd=app_dir)
    answers = [platform.post("/endpoint/model", {}) for _ in range(5)]
    assert all(status == 200 for status, _ in answers), answers
    values = [body for _, body in answers]
    assert {json.dumps(b["value"], sort_keys=True) for b in values} == {json.dumps(values[0]["value"], sort_keys=True)}
    assert values[0]["value"]["model"] == "loaded"
    assert {b["starts"] for b in values} == {1}
    assert len({b["task"] for b in values}) == 5, "each call has its own task id"


def test_schema_inputs_are_checked_and_errors_name_the_field(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", APP)
    platform.cli("deploy", "app.py:greet", cwd=app_dir)
    assert platform.post("/endpoint/greet", {"name": "ada", "times": 2}) == (200, {"text": "hi ada hi ada"})
    status, body = platform.post("/endpoint/greet", {"name": "ada", "times": "two"})
    assert status == 422 and body["error"]["code"] == "INPUT_INVALID", body
    assert "times" in body["error"]["message"]
    status, body = platform.post("/endpoint/greet", {"times": 1})
    assert status == 422 and "name" in body["error"]["message"], body
    # A function answers a bad input the same way (its task ends ERROR, the call 422).
    platform.cli("deploy", "app.py:square", cwd=app_dir)
    assert platform.post("/function/square", {"x": 3}) == (200, 9)
    status, body = platform.post("/function/square", {"y": 3})
    assert status == 422 and body["error"]["code"] == "INPUT_INVALID" and "'x'" in body["error"]["message"], body
    # A task queue with a schema: the gateway refuses the bad input before any task exists.
    platform.cli("deploy", "app.py:greet_later", cwd=app_dir)
    def task_ids() -> set[str]:
        return {t["id"] for t in json.loads(platform.cli("task", "list", "--json", "--limit", "1000").stdout)}
    before = task_ids()
    status, body = platform.post("/taskqueue/greet_later", {"name": "ada", "times": "2", "x": 1})
    assert status == 422 and body["error"]["message"] == 'input.times: expected an integer, got "2"', body
    status, body = platform.post("/taskqueue/greet_later", {"name": "ada", "times": 2, "x": 1})
    assert status == 422 and body["error"]["message"].startswith("input.x: unknown field"), body
    assert task_ids() == before, "a refused input made no task"
    status, body = platform.post("/taskqueue/greet_later", {"name": "ada", "times": 2})
    assert status == 200 and body["task_id"], body


def test_retries_rerun_a_failed_task_and_stop_after_the_limit(platform: Platform, app_dir: Path) -> None:
    out = run_script(platform, app_dir, '''\
        once = flaky.put("once")
        always = flaky.put("always")
        a, b = once.wait(), always.wait()
        print(json.dumps({"once": [a["status"], a["retries"], a["result"]], "always": [b["status"], b["retries"], b["error"]]}))
    ''')
    assert out["once"] == ["COMPLETE", 1, "retry 1"], "the handler's context counts the failed attempts"
    status, retries, error = out["always"]
    assert (status, retries) == ("ERROR", 2)
    assert "always fails" in error


def test_cancel_reaches_the_running_handler_and_timeout_ends_a_slow_call(platform: Platform, app_dir: Path) -> None:
    out = run_script(platform, app_dir, '''\
        import time
        from beta9 import ApiError
        task = watcher.put("wait")
        while task.status() != "RUNNING":
            time.sleep(0.05)
        task.cancel()
        seen = []
        for _ in range(200):
            seen = watcher.remote("report")
            if task.id in seen:
                break
            time.sleep(0.05)
        try:
            too_slow.remote()
            slow = "returned"
        except ApiError as err:
            slow = err.code
        print(json.dumps({"cancelled": task.status(), "seen": task.id in seen, "slow": slow}))
    ''')
    assert out == {"cancelled": "CANCELLED", "seen": True, "slow": "TASK_TIMEOUT"}


def test_ten_megabytes_of_logs_do_not_stall_a_handler_and_a_segfault_fails_only_that_call(platform: Platform, app_dir: Path) -> None:
    out = run_script(platform, app_dir, '''\
        from beta9 import ApiError
        try:
            crash.remote("segfault")
            crashed = "returned"
        except ApiError as err:
            crashed = err.code
        print(json.dumps({"chatty": chatty.remote(), "crashed": crashed, "after": crash.remote("fine")}))
    ''')
    assert out["chatty"] == "ok"
    assert out["crashed"] not in ("returned", "") and out["after"] == "alive"


def test_another_container_cannot_drive_a_runner_directly(platform: Platform, app_dir: Path) -> None:
    """Containers share the worker's bridge; a runner answers only the gateway (its per-container secret)."""
    write(app_dir, "app.py", APP)
    platform.cli("deploy", "app.py:greet", cwd=app_dir)
    assert platform.post("/endpoint/greet", {"name": "a", "times": 1})[0] == 200
    stub_containers = [c for c in platform.client.request("GET", "/container", query={"active": "true"})["items"]
                       if c["stubId"] and c["state"] == "RUNNING" and "8000" in c["ports"]]
    target = next(c for c in stub_containers if platform.client.request("GET", f"/stub/{c['stubId']}")["name"] == "greet")
    host = target["ports"]["8000"]["host"]
    probe = ("import urllib.request, urllib.error\n"
             f"req = urllib.request.Request('http://{host}:8000/invoke', data=b'{{\"input\": {{\"name\": \"x\", \"times\": 1}}}}', "
             "headers={'content-type': 'application/json'})\n"
             "try:\n    print(urllib.request.urlopen(req, timeout=10).status)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code)\n"
             "except urllib.error.URLError:\n    print('unreachable')\n")
    # From a neighbour container: the bridge isolates its ports, and the runner wants its secret anyway.
    ran = platform.cli("container", "run", "--", "python3", "-c", probe, timeout=300)
    assert ran.stdout.strip().splitlines()[-1] in ("401", "unreachable"), ran.stdout + ran.stderr
    # From the worker's host, which does reach it: without the gateway's secret the runner refuses.
    req = urllib.request.Request(f"http://{host}:8000/invoke", data=b'{"input": {"name": "x", "times": 1}}',
                                 headers={"content-type": "application/json"}, method="POST")
    try:
        status = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as err:
        status = err.code
    assert status == 401
