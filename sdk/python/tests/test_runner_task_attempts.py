"""Task attempts that outlive their caller (beta9/runner/attempts.py), as the Node runner's: a
gateway that hangs up mid-attempt leaves the handler running, the gateway that takes the task over
joins it or gets the kept answer, and the handler runs once; a handler error is not kept; an orphan
nobody asks for again is cancelled after the grace."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from conftest import write
from test_sdk_units import post, start_runner

from beta9 import task_queue
from beta9.runner.attempts import TaskAttempts
from beta9.runner.invoker import Invoker

APP = '''
import os, time
from pathlib import Path
from beta9 import task_queue

HERE = Path(__file__).parent

@task_queue(concurrent_requests=4)
def jobs(n: int, gate: bool = False, fail: bool = False, *, context):
    runs = HERE / f"runs-{context.task_id}"
    with open(runs, "a") as f:
        f.write("x")
    count = len(runs.read_text())
    while gate and not (HERE / f"release-{context.task_id}").exists():
        time.sleep(0.01)
    if fail and count == 1:
        raise ValueError("first run fails")
    return {"n": n, "run": count}
'''


def hang_up_batch(base: str, tasks: list[dict]) -> None:
    """Sends an /invoke-batch, then closes the connection before the answer (a gateway dying)."""
    url = urlsplit(base)
    body = json.dumps({"tasks": tasks}).encode()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(b"POST /invoke-batch HTTP/1.1\r\nhost: runner\r\ncontent-type: application/json\r\n"
                     + f"content-length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.3)


def attempt(base: str, task_id: str, payload: dict) -> tuple[int, dict]:
    status, body = post(base + "/invoke", {"input": payload}, {"x-beta9-task-id": task_id, "x-beta9-task-retries": "0"})
    return status, json.loads(body)


def test_an_attempt_outlives_its_caller_and_runs_once(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    proc, base = start_runner(tmp_path, "app.py:jobs")
    try:
        hang_up_batch(base, [{"id": "t1", "input": {"n": 1, "gate": True}}, {"id": "t2", "input": {"n": 2, "gate": True}}])
        joined: list[tuple[int, dict]] = []
        joiner = threading.Thread(target=lambda: joined.append(attempt(base, "t1", {"n": 1, "gate": True})))
        joiner.start()
        time.sleep(0.3)
        (tmp_path / "release-t1").write_text("")
        (tmp_path / "release-t2").write_text("")
        joiner.join(timeout=30)
        assert joined == [(200, {"result": {"n": 1, "run": 1}})]
        # t2 ended with nobody to tell: its answer was kept for the gateway that takes it over.
        assert attempt(base, "t2", {"n": 2, "gate": True}) == (200, {"result": {"n": 2, "run": 1}})
        assert attempt(base, "t1", {"n": 1, "gate": True}) == (200, {"result": {"n": 1, "run": 1}})
        assert (tmp_path / "runs-t1").read_text() == "x" and (tmp_path / "runs-t2").read_text() == "x"
        # A handler error is not kept: the next attempt runs the handler again.
        assert attempt(base, "f1", {"n": 3, "fail": True})[0] == 500
        assert attempt(base, "f1", {"n": 3, "fail": True}) == (200, {"result": {"n": 3, "run": 2}})
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_an_orphan_nobody_asks_for_again_is_cancelled_after_the_grace() -> None:
    cancelled = threading.Event()

    @task_queue(name="orphan")
    def orphan(*, context) -> str:
        if context.wait_cancelled(10):
            cancelled.set()
            return "stopped"
        return "timed out"

    attempts = TaskAttempts(Invoker(orphan, 2, "c1", "s1", None), orphan_grace_s=0.2)
    first = attempts.begin("o1", 0)
    assert first is not None
    answers: list[tuple[int, bytes]] = []
    runner = threading.Thread(target=lambda: answers.append(first.answer({})))
    runner.start()
    time.sleep(0.05)
    first.left()
    runner.join(timeout=5)
    assert cancelled.is_set(), "cancelled once nobody asked for it again within 0.2 s"
    # A cancelled attempt is never kept or joined: the next attempt runs afresh.
    second = attempts.begin("o1", 1)
    assert second is not None and second._starter
