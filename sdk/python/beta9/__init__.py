"""beta9: run Python functions as endpoints, task queues, functions, schedules and sandboxes on your own machines.

    from beta9 import endpoint, Image

    @endpoint(image=Image(python_version="python3.11"), cpu=1, memory="1Gi")
    def predict(text: str):
        return {"label": "cat"}

``beam`` is an alias of this package, so code written for beta9's ``from beam import …`` runs unchanged.
"""
from . import schema
from .abstractions import ASGI, DeployResult, Endpoint, asgi, Function, Schedule, ServeHandle, TaskQueue, Workload, endpoint, function, schedule, task_queue
from .client import ApiError, Client
from .image import Image, ImageError
from .options import OptionError, QueueDepthAutoscaler, TaskPolicy, Volume
from .pod import Pod, PodDeployment
from .runner.invoker import Context
from .sandbox import RunCodeResult, Sandbox, SandboxError, SandboxFileInfo, SandboxInstance, SandboxProcess, SandboxProcessInfo
from .tasks import TaskFailedError, TaskHandle
from .volumes import Volumes

__version__ = "0.2.0"

__all__ = [
    "ASGI", "ApiError", "Pod", "PodDeployment", "asgi", "Client", "Context", "DeployResult", "Endpoint", "Function", "Image", "ImageError", "OptionError",
    "QueueDepthAutoscaler", "RunCodeResult", "Sandbox", "SandboxError", "SandboxFileInfo", "SandboxInstance", "SandboxProcess",
    "SandboxProcessInfo", "Schedule", "ServeHandle", "TaskFailedError", "TaskHandle",
    "TaskPolicy", "TaskQueue", "Volume", "Volumes", "Workload", "endpoint", "function", "schedule", "schema", "task_queue",
]
