"""The workload decorators: ``endpoint``, ``asgi``, ``task_queue``, ``function`` and ``schedule``.

A decorated function stays callable locally; on the platform it is called through the object:
``.remote(...)``, ``.map(...)``, ``.put(...)``, ``.deploy()``, ``.serve()``.
"""
from __future__ import annotations

import concurrent.futures
import inspect
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .client import ApiError, Client, default_client
from .image import Image
from .options import OptionError, build_config, check_handler, stub_name
from .schema import Schema
from .tasks import TaskHandle

WORKLOAD_MARKER = "__beta9_workload__"
_ROUTES = {"endpoint": "endpoint", "taskqueue": "taskqueue", "function": "function"}


def payload_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The JSON input for a call: keyword arguments as an object, one scalar as itself, else a list of arguments."""
    if args and kwargs:
        raise TypeError("pass either positional or keyword arguments to a remote call, not both")
    if kwargs:
        return kwargs
    if len(args) == 1 and not isinstance(args[0], (list, tuple, dict)):
        return args[0]
    if len(args) == 1 and isinstance(args[0], Schema):
        return args[0].to_dict()
    return list(args) if args else {}


@dataclass
class DeployResult:
    name: str
    version: int
    url: str
    stub_id: str
    deployment: dict[str, Any]
    #: What will keep it from running now (e.g. a GPU no connected worker has); it deployed all the same.
    warnings: list[str]


class ServeHandle:
    """A running ``serve()``: ``url`` answers with this code until ``stop()``."""

    def __init__(self, client: Client, session: dict[str, Any], stub_id: str) -> None:
        self._client = client
        self.id = session["id"]
        self.url = f"{client.gateway}/serve/{self.id}"
        self.stub_id = stub_id
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="beta9-serve-heartbeat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(5.0):
            try:
                self._client.heartbeat_serve_session(self.id)
            except ApiError:
                pass

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self._client.invoke(f"/serve/{self.id}", payload_of(args, kwargs))

    def stop(self) -> None:
        self._stop.set()
        try:
            self._client.end_serve_session(self.id)
        except ApiError as err:
            if err.status != 404:
                raise

    def __enter__(self) -> "ServeHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Workload:
    """One decorated function: its kind, stub name, config, image, and the function itself."""

    kind = ""

    def __init__(self, func: Callable[..., Any], *, name: str | None, image: Image | None, on_start: Callable[..., Any] | None,
                 inputs: type[Schema] | None, outputs: type[Schema] | None, config: dict[str, Any]) -> None:
        where = f"@{self.decorator_name}"
        check_handler(where, func)
        if image is not None and not isinstance(image, Image):
            raise OptionError(f"{where}(image={image!r}): expected an Image(...)")
        for key, schema in (("inputs", inputs), ("outputs", outputs)):
            if schema is not None and not (isinstance(schema, type) and issubclass(schema, Schema)):
                raise OptionError(f"{where}({key}={schema!r}): expected a schema.Schema subclass")
        if name is not None and not isinstance(name, str):
            raise OptionError(f"{where}(name={name!r}): expected a string")
        try:
            self.name = stub_name(name if name is not None else func.__name__)
        except OptionError as err:
            raise OptionError(f"{where}: {err}") from None
        if image is not None:
            image.check_python()
        self.func = func
        self.image = image or Image()
        self.on_start = on_start
        self.inputs = inputs
        self.outputs = outputs
        self.config = config
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__wrapped__ = func
        setattr(self, WORKLOAD_MARKER, True)
        self._client: Client | None = None
        self._temp_stub: str | None = None
        self._temp_lock = threading.Lock()

    decorator_name = "workload"

    # -- local ------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the function here, in this process."""
        return self.func(*args, **kwargs)

    def with_client(self, client: Client) -> "Workload":
        self._client = client
        return self

    @property
    def client(self) -> Client:
        return self._client or default_client()

    # -- where the code lives -------------------------------------------------------------------

    def source(self) -> tuple[Path, str]:
        """The file that defines this workload and the module-level name that holds it."""
        file = inspect.getsourcefile(self.func)
        if file is None and self.func.__module__ == "__main__":
            file = sys.argv[0]
        if not file or not os.path.isfile(file):
            raise OptionError(f"cannot find the file that defines {self.name}; define workloads in a .py file")
        return Path(file).resolve(), self.func.__name__

    def stub_config(self) -> dict[str, Any]:
        config = dict(self.config)
        # The gateway checks inputs against the same schema, so a bad one is a 422 before anything runs.
        if self.inputs is not None and self.kind != "schedule":
            config["inputs"] = self.inputs.json_schema()
        return config

    # -- deploy, serve, temporary stubs ---------------------------------------------------------

    def _prepare(self, variant: str, on_log: Callable[[str], None] | None = None) -> dict[str, Any]:
        from .deploy import prepare_stub
        file, attr = self.source()
        return prepare_stub(self.client, self, file, attr, variant, on_log)

    def deploy(self, name: str | None = None, on_log: Callable[[str], None] | None = None) -> DeployResult:
        """Builds the image, uploads the code when new, and publishes the next version."""
        prepared = self._prepare("deployment", on_log)
        stub = prepared["stub"]
        deployment = self.client.create_deployment(stub["id"], name)
        route = _ROUTES.get(self.kind)
        url = f"{self.client.gateway}/{route}/{deployment['name']}/v{deployment['version']}" if route else ""
        return DeployResult(deployment["name"], deployment["version"], url, stub["id"], deployment, prepared["warnings"])

    def serve(self, on_log: Callable[[str], None] | None = None) -> ServeHandle:
        """Runs this code on one container outside any deployment, at a stable URL, until ``stop()``."""
        stub = self._prepare("serve", on_log)["stub"]
        return ServeHandle(self.client, self.client.create_serve_session(stub["id"]), stub["id"])

    def _temporary_stub(self) -> str:
        """A stub for this code that is not a deployment (made once per process)."""
        with self._temp_lock:
            if self._temp_stub is None:
                self._temp_stub = self._prepare("serve")["stub"]["id"]
            return self._temp_stub

    def _call_route(self, payload: Any) -> Any:
        """Calls the deployed workload, or this code on a temporary stub when none is deployed."""
        route = _ROUTES[self.kind]
        if self._temp_stub is None:
            try:
                return self.client.invoke(f"/{route}/{self.name}", payload)
            except ApiError as err:
                if err.code not in ("RESOURCE_NOT_FOUND", "WORKLOAD_NOT_DEPLOYED"):
                    raise
        return self.client.invoke(f"/{route}/id/{self._temporary_stub()}", payload)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Runs on the platform and returns the result."""
        raise NotImplementedError

    def map(self, inputs: Iterable[Any], *, max_in_flight: int = 64) -> Iterator[Any]:
        """Runs once per input on the platform; yields results in input order.

        An input that is a tuple is passed as positional arguments, a dict as keyword arguments,
        anything else as the one argument. Calls the queue refuses for now (429) wait and retry.
        """
        items = list(inputs)
        if not items:
            return iter(())

        def one(item: Any) -> Any:
            if isinstance(item, tuple):
                return self.remote(*item)
            if isinstance(item, dict):
                return self.remote(**item)
            return self.remote(item)

        if self._temp_stub is None:
            self._resolve_target()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(max_in_flight, len(items))), thread_name_prefix="beta9-map")

        def results() -> Iterator[Any]:
            try:
                futures = [pool.submit(one, item) for item in items]
                for f in futures:
                    yield f.result()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        return results()

    def _resolve_target(self) -> None:
        """Before fanning out: find whether a deployment exists, so every call takes the same path."""
        from .deploy import is_deployed
        if not is_deployed(self.client, self.name, self.kind):
            self._temporary_stub()


class Endpoint(Workload):
    kind = "endpoint"
    decorator_name = "endpoint"

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_route(payload_of(args, kwargs))


class ASGI(Endpoint):
    """A whole web app (FastAPI, Starlette, or any ASGI callable) as one endpoint: every method and
    path under ``/endpoint/<name>/`` reaches it. The decorated function returns the app (called once
    per container, after on_start), or is itself ``async def app(scope, receive, send)``."""

    decorator_name = "asgi"

    def stub_config(self) -> dict[str, Any]:
        config = super().stub_config()
        config["webApp"] = True
        return config

    def deploy(self, name: str | None = None, on_log: Callable[[str], None] | None = None) -> DeployResult:
        result = super().deploy(name, on_log)
        result.url += "/"  # the app's root: any path below it is the app's
        return result

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise OptionError(f"{self.name} is an ASGI app: send HTTP requests to its URL ({self.client.gateway}/endpoint/{self.name}/…), "
                          "any method and path, with your token")


class Function(Workload):
    kind = "function"
    decorator_name = "function"

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_route(payload_of(args, kwargs))


class TaskQueue(Workload):
    kind = "taskqueue"
    decorator_name = "task_queue"

    def put(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Puts a task on the queue (this code on a temporary stub when none is deployed)."""
        answer = self._call_route(payload_of(args, kwargs))
        return TaskHandle(answer["task_id"], self.client)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Puts a task and waits for its result."""
        return self.put(*args, **kwargs).result()


class Schedule(Workload):
    kind = "schedule"
    decorator_name = "schedule"

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        raise OptionError(f"{self.name} is a schedule: it runs on its schedule once deployed (beta9 deploy), not on call")


def _decorator(cls: type[Workload], func: Callable[..., Any] | None, name: str | None, image: Image | None,
               on_start: Any, inputs: Any, outputs: Any, options: dict[str, Any]) -> Any:
    config = build_config(f"@{cls.decorator_name}", on_start=on_start, **options)

    def wrap(f: Callable[..., Any]) -> Workload:
        return cls(f, name=name, image=image, on_start=on_start, inputs=inputs, outputs=outputs, config=config)
    return wrap(func) if func is not None else wrap


_COMMON_DOC = """Options (beta9's): name, image, cpu (cores or "500m"), memory (MiB or "16Gi"), gpu (type or list),
gpu_count, keep_warm_seconds, workers, concurrent_requests, max_pending_tasks, timeout, retries,
task_policy, callback_url, secrets, env, authorized, autoscaler, on_start, inputs, outputs, volumes."""


def endpoint(func: Callable[..., Any] | None = None, *, name: str | None = None, image: Image | None = None,
             cpu: float | str | None = None, memory: int | str | None = None, gpu: str | list[str] | None = None,
             gpu_count: int | None = None, keep_warm_seconds: int | None = None, workers: int | None = None,
             concurrent_requests: int | None = None, max_pending_tasks: int | None = None, timeout: int | None = None,
             retries: int | None = None, task_policy: Any = None, callback_url: str | None = None,
             secrets: list[str] | None = None, env: dict[str, str] | None = None, authorized: bool | None = None,
             autoscaler: Any = None, on_start: Callable[..., Any] | None = None, inputs: type[Schema] | None = None,
             outputs: type[Schema] | None = None, volumes: list[Any] | None = None) -> Any:
    """An HTTP endpoint: ``POST /endpoint/<name>`` with the input as JSON answers the function's result."""
    return _decorator(Endpoint, func, name, image, on_start, inputs, outputs, dict(
        cpu=cpu, memory=memory, gpu=gpu, gpu_count=gpu_count, keep_warm_seconds=keep_warm_seconds, workers=workers,
        concurrent_requests=concurrent_requests, max_pending_tasks=max_pending_tasks, timeout=timeout, retries=retries,
        task_policy=task_policy, callback_url=callback_url, secrets=secrets, env=env, authorized=authorized,
        autoscaler=autoscaler, volumes=volumes))


def task_queue(func: Callable[..., Any] | None = None, *, name: str | None = None, image: Image | None = None,
               cpu: float | str | None = None, memory: int | str | None = None, gpu: str | list[str] | None = None,
               gpu_count: int | None = None, keep_warm_seconds: int | None = None, workers: int | None = None,
               concurrent_requests: int | None = None, max_pending_tasks: int | None = None, timeout: int | None = None,
               retries: int | None = None, task_policy: Any = None, callback_url: str | None = None,
               secrets: list[str] | None = None, env: dict[str, str] | None = None, authorized: bool | None = None,
               autoscaler: Any = None, on_start: Callable[..., Any] | None = None, inputs: type[Schema] | None = None,
               outputs: type[Schema] | None = None, volumes: list[Any] | None = None) -> Any:
    """A durable task queue: ``.put(...)`` returns a task handle; tasks are retried per the task policy."""
    return _decorator(TaskQueue, func, name, image, on_start, inputs, outputs, dict(
        cpu=cpu, memory=memory, gpu=gpu, gpu_count=gpu_count, keep_warm_seconds=keep_warm_seconds, workers=workers,
        concurrent_requests=concurrent_requests, max_pending_tasks=max_pending_tasks, timeout=timeout, retries=retries,
        task_policy=task_policy, callback_url=callback_url, secrets=secrets, env=env, authorized=authorized,
        autoscaler=autoscaler, volumes=volumes))


def function(func: Callable[..., Any] | None = None, *, name: str | None = None, image: Image | None = None,
             cpu: float | str | None = None, memory: int | str | None = None, gpu: str | list[str] | None = None,
             gpu_count: int | None = None, keep_warm_seconds: int | None = None, workers: int | None = None,
             concurrent_requests: int | None = None, max_pending_tasks: int | None = None, timeout: int | None = None,
             retries: int | None = None, task_policy: Any = None, callback_url: str | None = None,
             secrets: list[str] | None = None, env: dict[str, str] | None = None, authorized: bool | None = None,
             autoscaler: Any = None, on_start: Callable[..., Any] | None = None, inputs: type[Schema] | None = None,
             outputs: type[Schema] | None = None, volumes: list[Any] | None = None) -> Any:
    """A remote function: ``.remote(...)`` runs it on the platform, ``.map(inputs)`` fans out."""
    return _decorator(Function, func, name, image, on_start, inputs, outputs, dict(
        cpu=cpu, memory=memory, gpu=gpu, gpu_count=gpu_count, keep_warm_seconds=keep_warm_seconds, workers=workers,
        concurrent_requests=concurrent_requests, max_pending_tasks=max_pending_tasks, timeout=timeout, retries=retries,
        task_policy=task_policy, callback_url=callback_url, secrets=secrets, env=env, authorized=authorized,
        autoscaler=autoscaler, volumes=volumes))


def asgi(func: Callable[..., Any] | None = None, *, name: str | None = None, image: Image | None = None,
         cpu: float | str | None = None, memory: int | str | None = None, gpu: str | list[str] | None = None,
         gpu_count: int | None = None, keep_warm_seconds: int | None = None, workers: int | None = None,
         concurrent_requests: int | None = None, timeout: int | None = None, secrets: list[str] | None = None,
         env: dict[str, str] | None = None, authorized: bool | None = None, autoscaler: Any = None,
         on_start: Callable[..., Any] | None = None, volumes: list[Any] | None = None) -> Any:
    """An ASGI web app (FastAPI, Starlette, …) served under ``/endpoint/<name>/``: decorate a function
    that returns the app, or the ``async def app(scope, receive, send)`` itself.

        @asgi(concurrent_requests=20)
        def web():
            from fastapi import FastAPI
            app = FastAPI()

            @app.get("/hello/{who}")
            def hello(who: str):
                return {"hello": who}
            return app
    """
    return _decorator(ASGI, func, name, image, on_start, None, None, dict(
        cpu=cpu, memory=memory, gpu=gpu, gpu_count=gpu_count, keep_warm_seconds=keep_warm_seconds, workers=workers,
        concurrent_requests=concurrent_requests, timeout=timeout, secrets=secrets, env=env, authorized=authorized,
        autoscaler=autoscaler, volumes=volumes))


def schedule(func: Callable[..., Any] | None = None, *, when: str | None = None, name: str | None = None,
             image: Image | None = None, cpu: float | str | None = None, memory: int | str | None = None,
             gpu: str | list[str] | None = None, gpu_count: int | None = None, timeout: int | None = None,
             retries: int | None = None, task_policy: Any = None, callback_url: str | None = None,
             secrets: list[str] | None = None, env: dict[str, str] | None = None,
             on_start: Callable[..., Any] | None = None, volumes: list[Any] | None = None) -> Any:
    """A cron job (UTC): ``when="*/5 * * * *"``, ``"@hourly"``; six fields put seconds first."""
    if when is None:
        raise OptionError('@schedule needs when=, a cron expression such as "*/5 * * * *" or "@hourly"')
    return _decorator(Schedule, func, name, image, on_start, None, None, dict(
        cpu=cpu, memory=memory, gpu=gpu, gpu_count=gpu_count, timeout=timeout, retries=retries, task_policy=task_policy,
        callback_url=callback_url, secrets=secrets, env=env, volumes=volumes, when=when))


for _f in (endpoint, task_queue, function):
    _f.__doc__ = (_f.__doc__ or "") + "\n\n" + _COMMON_DOC
