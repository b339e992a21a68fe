"""Decorator options, checked at decoration time and turned into the gateway's stub config.

Each check names the option and what to write instead; nothing is accepted and then ignored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(Ki|Mi|Gi|Ti|K|M|G|T|KB|MB|GB|TB)?$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


class OptionError(ValueError):
    """An invalid decorator option; the message names it."""


@dataclass(frozen=True)
class TaskPolicy:
    """Retries, timeout (seconds; -1 none) and ttl (seconds a task may wait) of a task queue or function."""
    max_retries: int | None = None
    timeout: int | None = None
    ttl: int | None = None

    def to_config(self, where: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, camel, lo, hi in (("max_retries", "maxRetries", 0, 5), ("timeout", "timeout", -1, 86_400), ("ttl", "ttl", 1, 86_400)):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise OptionError(f"{where}(task_policy=TaskPolicy({key}={value!r})): expected an integer from {lo} to {hi}")
            out[camel] = value
        return out


@dataclass(frozen=True)
class QueueDepthAutoscaler:
    """Desired containers = ceil(tasks in flight or waiting / tasks_per_container), within [min, max]."""
    max_containers: int = 1
    tasks_per_container: int = 1
    min_containers: int = 0

    def to_config(self, where: str) -> dict[str, Any]:
        for key, lo, hi in (("max_containers", 1, 1000), ("tasks_per_container", 1, 100_000), ("min_containers", 0, 1000)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise OptionError(f"{where}(autoscaler=QueueDepthAutoscaler({key}={value!r})): expected an integer from {lo} to {hi}")
        if self.min_containers > self.max_containers:
            raise OptionError(f"{where}(autoscaler=...): min_containers ({self.min_containers}) exceeds max_containers ({self.max_containers})")
        return {"type": "queue_depth", "maxContainers": self.max_containers,
                "tasksPerContainer": self.tasks_per_container, "minContainers": self.min_containers}


@dataclass(frozen=True)
class Volume:
    """A named volume of the workspace mounted at ``mount_path`` (on any worker; changes are committed when the container ends,
    or earlier with ``commit()``; ``reload()`` brings in what others committed)."""
    name: str
    mount_path: str

    def commit(self) -> dict[str, Any]:
        """Inside a container that mounts this volume: publishes its changes now (``version``, ``changed``, ``removed``, ``busy``)."""
        from .volume_sync import commit_volume
        return commit_volume(self.name)

    def reload(self) -> dict[str, Any]:
        """Inside a container that mounts this volume: brings in what others committed (``version``, ``updated``, ``removed``, ``kept``)."""
        from .volume_sync import reload_volume
        return reload_volume(self.name, self.mount_path)

    def check(self, where: str) -> dict[str, str]:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise OptionError(f"{where}(volumes=[Volume(name={self.name!r})]): use lowercase letters, digits, '.', '_' or '-'")
        if not isinstance(self.mount_path, str) or not self.mount_path.startswith("/"):
            raise OptionError(f"{where}(volumes=[Volume(mount_path={self.mount_path!r})]): expected an absolute path")
        return {"name": self.name, "mountPath": self.mount_path}


def _int(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OptionError(f"{where}({key}={value!r}): expected an integer from {lo} to {hi}")
    return value


def stub_name(value: str) -> str:
    """A Python function name as a stub name: lowercase, '_' kept."""
    name = value.lower()
    if not _NAME.match(name):
        raise OptionError(f"name {value!r} is not a valid workload name: use lowercase letters, digits, '.', '_' or '-' (1-63)")
    return name


def build_config(where: str, *, cpu: Any = None, memory: Any = None, gpu: Any = None, gpu_count: Any = None,
                 keep_warm_seconds: Any = None, workers: Any = None, concurrent_requests: Any = None,
                 max_pending_tasks: Any = None, timeout: Any = None, retries: Any = None,
                 task_policy: Any = None, callback_url: Any = None, secrets: Any = None, env: Any = None,
                 authorized: Any = None, autoscaler: Any = None, volumes: Any = None, when: Any = None,
                 on_start: Any = None) -> dict[str, Any]:
    """The stub config input (camelCase, the gateway's units) for these options."""
    config: dict[str, Any] = {}
    if cpu is not None:
        if isinstance(cpu, bool) or not (isinstance(cpu, (int, float)) and cpu > 0 or isinstance(cpu, str) and _CPU.match(cpu)):
            raise OptionError(f'{where}(cpu={cpu!r}): expected cores as a number (1, 0.5) or millicores as a string ("500m")')
        config["cpu"] = cpu
    if memory is not None:
        if isinstance(memory, bool) or not (isinstance(memory, int) and memory > 0 or isinstance(memory, str) and _MEMORY.match(memory.strip())):
            raise OptionError(f'{where}(memory={memory!r}): expected MiB as an integer (1024) or a size string ("16Gi", "512Mi")')
        config["memory"] = memory
    if gpu is not None and gpu != "":
        gpus = [gpu] if isinstance(gpu, str) else gpu
        if not isinstance(gpus, (list, tuple)) or not gpus or not all(isinstance(g, str) and g for g in gpus):
            raise OptionError(f'{where}(gpu={gpu!r}): expected a GPU type ("A10G", "any") or a list of types in order of preference')
        config["gpu"] = gpus[0] if isinstance(gpu, str) else list(gpus)
    if gpu_count is not None:
        config["gpuCount"] = _int(where, "gpu_count", gpu_count, 0, 8)
    if keep_warm_seconds is not None:
        config["keepWarmSeconds"] = _int(where, "keep_warm_seconds", keep_warm_seconds, -1, 86_400)
    if workers is not None:
        config["workers"] = _int(where, "workers", workers, 1, 64)
    if concurrent_requests is not None:
        config["concurrentRequests"] = _int(where, "concurrent_requests", concurrent_requests, 1, 10_000)
    if max_pending_tasks is not None:
        config["maxPendingTasks"] = _int(where, "max_pending_tasks", max_pending_tasks, 1, 1_000_000)
    policy: dict[str, int] = {}
    if task_policy is not None:
        if not isinstance(task_policy, TaskPolicy):
            raise OptionError(f"{where}(task_policy={task_policy!r}): expected TaskPolicy(max_retries=…, timeout=…, ttl=…)")
        policy.update(task_policy.to_config(where))
    if timeout is not None:
        policy["timeout"] = _int(where, "timeout", timeout, -1, 86_400)
    if retries is not None:
        policy["maxRetries"] = _int(where, "retries", retries, 0, 5)
    if policy:
        config["taskPolicy"] = policy
    if callback_url is not None:
        if not isinstance(callback_url, str) or not re.match(r"^https?://", callback_url):
            raise OptionError(f"{where}(callback_url={callback_url!r}): expected an absolute http:// or https:// URL")
        config["callbackUrl"] = callback_url
    if secrets is not None:
        if not isinstance(secrets, (list, tuple)) or not all(isinstance(s, str) and _ENV.match(s) for s in secrets):
            raise OptionError(f"{where}(secrets={secrets!r}): expected a list of secret names (letters, digits, '_')")
        config["secrets"] = list(secrets)
    if env is not None:
        if not isinstance(env, dict) or not all(isinstance(k, str) and _ENV.match(k) and isinstance(v, str) for k, v in env.items()):
            raise OptionError(f"{where}(env={env!r}): expected a dict of NAME -> string value")
        config["env"] = dict(env)
    if authorized is not None:
        if not isinstance(authorized, bool):
            raise OptionError(f"{where}(authorized={authorized!r}): expected True or False")
        config["authorized"] = authorized
    if autoscaler is not None:
        if not isinstance(autoscaler, QueueDepthAutoscaler):
            raise OptionError(f"{where}(autoscaler={autoscaler!r}): expected QueueDepthAutoscaler(max_containers=…, tasks_per_container=…)")
        config["autoscaler"] = autoscaler.to_config(where)
    if volumes:
        if not isinstance(volumes, (list, tuple)) or not all(isinstance(v, Volume) for v in volumes):
            raise OptionError(f"{where}(volumes={volumes!r}): expected a list of Volume(name=…, mount_path=…)")
        config["volumes"] = [v.check(where) for v in volumes]
    if when is not None:
        if not isinstance(when, str) or not when.strip():
            raise OptionError(f'{where}(when={when!r}): expected a cron expression such as "*/5 * * * *" or "@hourly"')
        config["when"] = when.strip()
    if on_start is not None and not callable(on_start):
        raise OptionError(f"{where}(on_start={on_start!r}): expected a function to run once per container")
    return config


def check_handler(where: str, func: Callable[..., Any]) -> None:
    if not callable(func):
        raise OptionError(f"@{where} must decorate a function, got {func!r}")
