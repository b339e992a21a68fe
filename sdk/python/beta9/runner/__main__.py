"""The Python runner: started by the worker as ``python3 -m beta9.runner`` in every container of a
Python workload, with the SDK mounted read-only at /beta9/python. It listens on $PORT at once
(/health answers 503 while loading), imports $BETA9_CODE_DIR/<file>, runs on_start once, then
serves the runner protocol (server.py). Environment: PORT, BETA9_HANDLER ("file.py:function"),
BETA9_CODE_DIR, BETA9_CONCURRENCY, BETA9_CONTAINER_ID, BETA9_STUB_ID, BETA9_GRACE_MS.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

from . import task_log
from ..abstractions import Workload
from .asgi import AppFailedError, AsgiHost, is_asgi_callable
from .invoker import Invoker
from .loader import LoadError, load
from .server import RunnerServer, State, make_handler


def _int_env(name: str, default: int, lo: int, hi: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        sys.stderr.write(f"runner: {name}={raw!r} is not valid: expected an integer from {lo} to {hi}\n")
        sys.exit(1)
    return value


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    task_log.install()
    port = _int_env("PORT", 8000, 1, 65535)
    concurrency = _int_env("BETA9_CONCURRENCY", 1, 1, 10_000)
    grace = _int_env("BETA9_GRACE_MS", 25_000, 0, 3_600_000) / 1000
    state = State(os.environ.get("BETA9_CONTAINER_ID", ""), concurrency, os.environ.get("BETA9_RUNNER_SECRET", ""))
    server = RunnerServer(("0.0.0.0", port), make_handler(state))
    threading.Thread(target=server.serve_forever, name="beta9-http", daemon=True).start()

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if stopping.is_set():
            os._exit(0)
        stopping.set()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    ref = os.environ.get("BETA9_HANDLER", "")
    if ref:
        try:
            workload = load(os.environ.get("BETA9_CODE_DIR", "."), ref)
        except LoadError as err:
            sys.stderr.write(f"runner: {err}\n")
            sys.exit(1)
        value = None
        if workload.on_start is not None:
            try:
                value = workload.on_start()
            except Exception:
                sys.stderr.write(f"runner: on_start of {ref} failed:\n{traceback.format_exc()}")
                sys.exit(1)
        invoker = Invoker(workload, concurrency, state.container_id, os.environ.get("BETA9_STUB_ID", ""), value)
        if workload.decorator_name == "asgi":
            try:
                invoker.asgi = start_asgi(workload, invoker)
            except AppFailedError as err:
                sys.stderr.write(f"runner: {err}\n")
                sys.exit(1)
            except Exception:
                sys.stderr.write(f"runner: the ASGI app of {ref} failed to load:\n{traceback.format_exc()}")
                sys.exit(1)
        state.invoker = invoker
        if not stopping.is_set():
            state.phase = "ready"
            print(f"runner ready: {ref} ({workload.kind} {workload.name}, python {sys.version.split()[0]})")
    stopping.wait()
    state.phase = "stopping"
    invoker = state.invoker
    if invoker is not None and not invoker.wait_idle(grace):
        sys.stderr.write(f"runner: {invoker.active} invocation(s) still running after {grace:g} s; cancelling them\n")
        invoker.cancel_all()
        invoker.wait_idle(1.0)
    if invoker is not None and invoker.asgi is not None:
        invoker.asgi.shutdown()
    server.shutdown()
    sys.exit(0)


def start_asgi(workload: Workload, invoker: Invoker) -> AsgiHost:
    """The app an @asgi function returns (or the function itself when it is the ASGI callable),
    its lifespan started."""
    app = workload.func if is_asgi_callable(workload.func) else workload.func()
    if not callable(app):
        raise AppFailedError(f"@asgi {workload.name}: the function returned {type(app).__name__}, not an ASGI app; "
                             "return the app (e.g. FastAPI()), or decorate async def app(scope, receive, send) itself")
    host = AsgiHost(app, invoker._event_loop, workload.name)
    host.startup()
    return host


if __name__ == "__main__":
    main()
