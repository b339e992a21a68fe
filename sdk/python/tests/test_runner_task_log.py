"""The Python runner tags what each task prints with its id, as the Node runner does
(packages/runner/src/task-log.ts), so the worker can store the task beside each line: a sync
handler, an async one running on the runner's event loop, and a failing one's traceback."""
from __future__ import annotations

from pathlib import Path

from conftest import write
from test_sdk_units import post, start_runner

from beta9.runner.task_log import TAG_END, TAG_PREFIX, tag_lines

APP = '''
import asyncio, sys
from beta9 import endpoint

@endpoint(concurrent_requests=4)
def sync_handler(n: int):
    print(f"sync {n}")
    sys.stderr.write(f"sync err {n}\\nsecond line\\n")
    if n < 0:
        raise ValueError("negative")
    return n

@endpoint(concurrent_requests=4)
async def async_handler(n: int):
    await asyncio.sleep(0)
    print(f"async {n}")
    return n
'''


def untag(line: str) -> tuple[str | None, str]:
    if not line.startswith(TAG_PREFIX):
        return None, line
    end = line.index(TAG_END)
    return line[len(TAG_PREFIX):end], line[end + len(TAG_END):]


def test_tag_lines_tags_every_line_a_write_starts() -> None:
    tag = TAG_PREFIX + "t" + TAG_END
    assert tag_lines("a\nb\n", "t", True) == f"{tag}a\n{tag}b\n"
    assert tag_lines("rest\nnext", "t", False) == f"rest\n{tag}next"


def test_what_a_task_prints_carries_its_id(tmp_path: Path) -> None:
    write(tmp_path, "app.py", APP)
    for handler in ("sync_handler", "async_handler"):
        proc, base = start_runner(tmp_path, f"app.py:{handler}")
        try:
            assert post(base + "/invoke", {"input": {"n": 1}}, {"x-beta9-task-id": "task-1"})[0] == 200
            assert post(base + "/invoke", {"input": {"n": 2}}, {"x-beta9-task-id": "task-2"})[0] == 200
            if handler == "sync_handler":
                assert post(base + "/invoke", {"input": {"n": -1}}, {"x-beta9-task-id": "task-3"})[0] == 500
        finally:
            proc.terminate()
            out = proc.communicate(timeout=30)[0].decode()
        lines = [untag(line) for line in out.splitlines()]
        assert any(t is None and line.startswith("runner ready:") for t, line in lines), "the runner's own lines are not tagged"
        kind = "sync" if handler == "sync_handler" else "async"
        assert ("task-1", f"{kind} 1") in lines and ("task-2", f"{kind} 2") in lines, out
        if handler == "sync_handler":
            assert ("task-1", "sync err 1") in lines and ("task-1", "second line") in lines, out
            failed = [t for t, line in lines if line.startswith("task task-3 failed:")]
            assert failed == ["task-3"], out
            assert ("task-3", "ValueError: negative") in lines, out
