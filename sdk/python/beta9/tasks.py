"""Task handles: what ``task_queue(...).put(...)`` returns."""
from __future__ import annotations

from typing import Any

from .client import Client

TERMINAL = ("COMPLETE", "ERROR", "TIMEOUT", "CANCELLED", "EXPIRED")


class TaskFailedError(Exception):
    """A task ended without a result (ERROR, TIMEOUT, CANCELLED or EXPIRED)."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.status = task.get("status")
        self.error = task.get("error")
        super().__init__(f"task {task.get('id')} ended {self.status}: {self.error or 'no result'}")


class TaskHandle:
    """A task on the platform. ``str(handle)`` is its id."""

    def __init__(self, task_id: str, client: Client) -> None:
        self.id = task_id
        self._client = client

    def status(self) -> str:
        return str(self._client.get_task(self.id)["status"])

    def get(self) -> dict[str, Any]:
        """The whole task record: status, retries, result or error, timings."""
        return self._client.get_task(self.id)

    def wait(self) -> dict[str, Any]:
        """Waits for the task to end (complete, fail, time out, be cancelled) and returns its record."""
        return self._client.wait_task(self.id)

    def result(self, wait: bool = True) -> Any:
        """The handler's result; waits for the task to end unless ``wait=False`` (then None while it runs)."""
        task = self._client.wait_task(self.id) if wait else self._client.get_task(self.id)
        if task["status"] == "COMPLETE":
            return task.get("result")
        if task["status"] in TERMINAL:
            raise TaskFailedError(task)
        return None

    def cancel(self) -> dict[str, Any]:
        return self._client.cancel_task(self.id)

    def __str__(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"
