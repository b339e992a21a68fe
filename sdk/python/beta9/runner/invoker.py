"""Runs invocations of one workload: a fixed number of slots (BETA9_CONCURRENCY), a cancel flag
per invocation (``/cancel`` and a dropped connection set it; ``async def`` handlers also get their
task cancelled), input binding, and turning results and exceptions into protocol replies."""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import sys
import threading
import traceback
from typing import Any

from ..abstractions import Workload
from .loader import InputError, bind, output_of
from .task_log import running
from .stream import Stream, stream_of

_DECORATOR = {"endpoint": "@endpoint", "taskqueue": "@task_queue", "function": "@function", "schedule": "@schedule"}


class Context:
    """What a handler's keyword-only ``context`` argument holds."""

    def __init__(self, task_id: str, container_id: str, stub_id: str, on_start_value: Any, retry_count: int = 0) -> None:
        self.task_id = task_id
        #: Attempts of this task that failed before this one (0 on the first; always 0 for endpoints).
        self.retry_count = retry_count
        self.container_id = container_id
        self.stub_id = stub_id
        self.on_start_value = on_start_value
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, timed out, or its caller went away: stop and return."""
        return self._cancelled.is_set()

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Sleeps up to ``timeout`` seconds, waking early (True) when the task is cancelled."""
        return self._cancelled.wait(timeout)

    def __repr__(self) -> str:
        return (f"Context(task_id={self.task_id!r}, container_id={self.container_id!r}, retry_count={self.retry_count}, "
                f"cancelled={self.cancelled})")


def error_reply(status: int, code: str, message: str, **extra: Any) -> tuple[int, bytes]:
    return status, json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


class Invocation:
    def __init__(self, invoker: "Invoker", context: Context) -> None:
        self.invoker = invoker
        self.context = context
        self.future: Any = None  # the asyncio future of an async handler
        self._ended = False

    def cancel(self) -> None:
        self.context._cancelled.set()
        future = self.future
        if future is not None:
            future.cancel()

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.invoker._end(self)


class Invoker:
    def __init__(self, workload: Workload, concurrency: int, container_id: str, stub_id: str, on_start_value: Any) -> None:
        self.workload = workload
        self.concurrency = concurrency
        self.container_id = container_id
        self.stub_id = stub_id
        self.on_start_value = on_start_value
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._by_task: dict[str, set[Invocation]] = {}
        self.active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: An @asgi workload's app, once started (asgi.py); None for every other workload.
        self.asgi: Any = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """One asyncio loop in its own thread for every ``async def`` handler, so they interleave."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="beta9-asyncio", daemon=True).start()
                self._loop = loop
            return self._loop

    def begin(self, task_id: str, retry_count: int = 0) -> Invocation | None:
        with self._lock:
            if self.active >= self.concurrency:
                return None
            self.active += 1
            inv = Invocation(self, Context(task_id, self.container_id, self.stub_id, self.on_start_value, retry_count))
            self._by_task.setdefault(task_id, set()).add(inv)
            return inv

    def _end(self, inv: Invocation) -> None:
        with self._lock:
            self.active -= 1
            group = self._by_task.get(inv.context.task_id)
            if group is not None:
                group.discard(inv)
                if not group:
                    del self._by_task[inv.context.task_id]
            if self.active == 0:
                self._idle.notify_all()

    def cancel(self, task_id: str) -> bool:
        with self._lock:
            group = list(self._by_task.get(task_id, ()))
        for inv in group:
            inv.cancel()
        return bool(group)

    def cancel_all(self) -> None:
        with self._lock:
            group = [inv for invs in self._by_task.values() for inv in invs]
        for inv in group:
            inv.cancel()

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self.active == 0, timeout)

    def run(self, inv: Invocation, payload: Any, stream: bool = False) -> tuple[int, bytes] | Stream:
        """Binds the input and calls the handler; never raises. Returns (status, JSON body), or with
        ``stream`` (an endpoint's /invoke) the Stream a generator handler returned; elsewhere a
        generator is STREAM_NOT_SUPPORTED, since a task stores its result as JSON."""
        workload = self.workload
        try:
            args, kwargs = bind(workload, payload, inv.context)
        except InputError as err:
            return error_reply(422, "INPUT_INVALID", str(err))
        try:
            with running(inv.context.task_id):  # what the handler prints is tagged with its task (task_log.py)
                if inspect.iscoroutinefunction(workload.func):
                    result = self._await(inv, workload.func(*args, **kwargs))
                else:
                    result = workload.func(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = self._await(inv, result)
        except BaseException as err:  # the handler's failure is the task's, never the runner's
            if isinstance(err, KeyboardInterrupt):
                raise
            return self._handler_error(inv, err)
        streamed = stream_of(result, self._event_loop)
        if streamed is not None:
            if stream and workload.kind == "endpoint":
                return streamed
            streamed.close()
            where = f'{_DECORATOR.get(workload.kind, workload.kind)} "{workload.name}"'
            why = "this call cannot stream" if workload.kind == "endpoint" else "its tasks store the result as JSON"
            return error_reply(500, "STREAM_NOT_SUPPORTED", f"{where} returned a generator: only endpoints stream ({why}); "
                               "return a JSON value instead, e.g. the items collected in a list")
        try:
            return 200, json.dumps({"result": output_of(workload, result)}, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError) as err:
            what = str(err) if str(err).startswith("the result does not match") else f"the handler's result is not JSON-serializable: {err}"
            return error_reply(500, "HANDLER_ERROR", what)

    def _await(self, inv: Invocation, awaitable: Any) -> Any:
        async def main() -> Any:
            return await awaitable
        future = asyncio.run_coroutine_threadsafe(main(), self._event_loop())
        inv.future = future
        if inv.context.cancelled:
            future.cancel()
        return future.result()

    def _handler_error(self, inv: Invocation, err: BaseException) -> tuple[int, bytes]:
        if isinstance(err, (asyncio.CancelledError, concurrent.futures.CancelledError)) and inv.context.cancelled:
            message = "the invocation was cancelled"
        else:
            message = f"{type(err).__name__}: {err}"
        stack = "".join(traceback.format_exception(err))
        # The container's log gets the whole traceback, so `beta9 container logs` shows where it failed.
        with running(inv.context.task_id):
            sys.stderr.write(f"task {inv.context.task_id} failed: {stack}")
            sys.stderr.flush()
        return error_reply(500, "HANDLER_ERROR", message, stack=stack)
