"""Says which task printed each line, as the Node runner does (packages/runner/src/task-log.ts):
while a task runs, every line it starts on stdout or stderr begins with the task's tag
(``TAG_PREFIX + task_id + TAG_END``, an APC escape that terminals ignore). The worker strips the
tag and stores the task id with the line, so ``beta9 logs --task ID`` finds the lines even when
several tasks run at once. The current task is a context variable: it follows the handler's
thread, and the coroutines it starts on the runner's event loop (their context is copied)."""
from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from typing import Any, Iterator, TextIO

TAG_PREFIX = "\x1b_beta9-task:"
TAG_END = "\x1b\\"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("beta9_task", default=None)


def tag_lines(text: str, task_id: str, at_line_start: bool) -> str:
    """``text`` with the tag in front of every line it starts."""
    tag = TAG_PREFIX + task_id + TAG_END
    parts = text.split("\n")
    out = (tag if at_line_start else "") + parts[0]
    for i, part in enumerate(parts[1:], 1):
        out += "\n" if i == len(parts) - 1 and part == "" else "\n" + tag + part
    return out


class _Tagged:
    """A text stream that tags what is written inside ``running``; everything else is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._at_line_start = True
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        task = _current.get()
        with self._lock:
            if not text:
                return self._stream.write(text)
            out = text if task is None else tag_lines(text, task, self._at_line_start)
            self._at_line_start = text.endswith("\n")
            self._stream.write(out)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> None:
    """Tags what tasks print on sys.stdout and sys.stderr from now on; call once, at start."""
    sys.stdout = _Tagged(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _Tagged(sys.stderr)  # type: ignore[assignment]


@contextlib.contextmanager
def running(task_id: str) -> Iterator[None]:
    """What runs inside is task ``task_id`` for what it prints."""
    token = _current.set(task_id)
    try:
        yield
    finally:
        _current.reset(token)
