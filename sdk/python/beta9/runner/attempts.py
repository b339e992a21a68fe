"""Task attempts by task id, as the Node runner's task-attempts.ts: a task's handler runs once even
when the gateway that sent it dies mid-attempt, because the gateway that takes the task over sends
it again to the same container, and here

- an attempt whose caller went away runs on (an orphan); it is cancelled only if nobody asks for it
  again within ``orphan_grace_s`` (a deliberate stop comes as /cancel, never as a hang-up);
- a new attempt of a task that is still running joins it: one handler run, its answer to both;
- a success stays answerable for ``keep_s`` (within ``keep_bytes``), so an attempt whose answer was
  sent but never recorded is answered again, not run again.

Only successes of runs that were not cancelled are kept: after a handler error, a timeout or a
cancel the next attempt runs again.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from .invoker import Invocation, Invoker, error_reply

Reply = tuple[int, bytes]


class _Live:
    def __init__(self, inv: Invocation) -> None:
        self.inv = inv
        self.done = threading.Event()
        self.reply: Reply | None = None
        self.callers = 0
        self.orphaned: threading.Timer | None = None


class Attempt:
    def __init__(self, attempts: "TaskAttempts", task_id: str, live: _Live | None, kept: Reply | None, starter: bool) -> None:
        self._attempts = attempts
        self._task_id = task_id
        self._live = live
        self._kept = kept
        self._starter = starter
        self._gone = False

    def answer(self, payload: Any) -> Reply:
        live = self._live
        if live is None:
            assert self._kept is not None
            return self._kept
        if self._starter:
            reply: Reply = error_reply(500, "RUNNER_ERROR", "the runner failed to run this task")
            try:
                outcome = self._attempts.invoker.run(live.inv, payload)
                if isinstance(outcome, tuple):  # tasks never stream
                    reply = outcome
            finally:
                # Whatever happened, whoever joined gets an answer (never a wait without end).
                live.inv.end()
                self._attempts._ended(self._task_id, live, reply)
        live.done.wait()
        assert live.reply is not None
        return live.reply

    def left(self) -> None:
        """This caller went away; the attempt runs on, an orphan once nobody waits for it."""
        if self._gone or self._live is None:
            return
        self._gone = True
        self._attempts._left(self._live)


class TaskAttempts:
    def __init__(self, invoker: Invoker, orphan_grace_s: float = 120.0, keep_s: float = 120.0, keep_bytes: int = 16 * 1024 * 1024) -> None:
        self.invoker = invoker
        self.orphan_grace_s = orphan_grace_s
        self.keep_s = keep_s
        self.keep_bytes = keep_bytes
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._kept: OrderedDict[str, tuple[Reply, float]] = OrderedDict()
        self._kept_bytes = 0

    def begin(self, task_id: str, retries: int) -> "Attempt | None":
        """One caller's attempt of a task: a kept answer, a join to the running attempt, or a new
        run; None when every slot is taken (BUSY). The caller then calls ``answer`` (runs the
        handler or waits for it) and, if it goes away first, ``left`` (from any thread)."""
        with self._lock:
            kept = self._kept.get(task_id)
            if kept is not None and time.monotonic() - kept[1] <= self.keep_s:
                return Attempt(self, task_id, None, kept[0], False)
            live = self._live.get(task_id)
            starter = live is None or live.inv.context.cancelled
            if starter:
                inv = self.invoker.begin(task_id, retries)
                if inv is None:
                    return None
                live = _Live(inv)
                self._live[task_id] = live
            assert live is not None
            live.callers += 1
            if live.orphaned is not None:
                live.orphaned.cancel()
                live.orphaned = None
            return Attempt(self, task_id, live, None, starter)

    def _left(self, live: _Live) -> None:
        with self._lock:
            if live.done.is_set():
                return
            live.callers -= 1
            if live.callers > 0:
                return
            timer = threading.Timer(self.orphan_grace_s, live.inv.cancel)
            timer.daemon = True
            live.orphaned = timer
        timer.start()

    def _ended(self, task_id: str, live: _Live, reply: Reply) -> None:
        with self._lock:
            live.reply = reply
            if live.orphaned is not None:
                live.orphaned.cancel()
                live.orphaned = None
            if self._live.get(task_id) is live:
                del self._live[task_id]
            if reply[0] == 200 and not live.inv.context.cancelled:  # a cancelled run's answer is not the task's
                self._keep(task_id, reply)
        live.done.set()

    def _keep(self, task_id: str, reply: Reply) -> None:
        size = len(reply[1]) + len(task_id)
        if size > self.keep_bytes:
            return
        self._drop(task_id)
        now = time.monotonic()
        self._kept[task_id] = (reply, now)
        self._kept_bytes += size
        while self._kept:
            old_id, (old_reply, at) = next(iter(self._kept.items()))
            if self._kept_bytes <= self.keep_bytes and now - at <= self.keep_s:
                break
            self._drop(old_id)

    def _drop(self, task_id: str) -> None:
        entry = self._kept.pop(task_id, None)
        if entry is not None:
            self._kept_bytes -= len(entry[0][1]) + len(task_id)
