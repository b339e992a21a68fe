"""``Pod``: any container image running its own server, deployed behind a stable URL (as the TS
SDK's ``Pod()`` and ``beta9 pod deploy``). No handler and no runner: the image's ENTRYPOINT and
CMD (or ``entrypoint``) run as they are; the gateway proxies HTTP to its one port at
``/pod/<name>/…`` with a token, or also at ``/public/<stub>/…`` with ``authorized=False``.

    from beta9 import Image, Pod
    pod = Pod(image=Image.from_registry("nginx:1.27"), ports=[80], cpu=1, memory="512Mi")
    result = pod.deploy(name="web")     # waits until port 80 answers
    print(result.url)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .client import Client
from .deploy import build_image
from .image import Image
from .options import OptionError, QueueDepthAutoscaler


@dataclass(frozen=True)
class PodDeployment:
    name: str
    version: int
    stub_id: str
    image_id: str
    url: str
    version_url: str
    public_url: str | None
    container_id: str | None
    deployment: dict[str, Any]


def _image_spec(image: Image) -> dict[str, Any]:
    """The image's spec without the python check a registry base gets: a pod's image need not have python."""
    spec = image.to_spec()
    steps = spec["steps"]
    if spec["base"]["kind"] != "default" and steps and steps[0].get("kind") == "shell" and str(steps[0].get("command", "")).startswith("command -v "):
        spec["steps"] = steps[1:]
    return spec


class Pod:
    """A container image serving one port; ``deploy()`` publishes it (see the module's docstring)."""

    def __init__(self, image: Image, ports: list[int] | int, entrypoint: list[str] | None = None, env: dict[str, str] | None = None,
                 cpu: float | str | None = None, memory: int | str | None = None, gpu: str | list[str] | None = None,
                 gpu_count: int | None = None, secrets: list[str] | None = None, authorized: bool | None = None,
                 keep_warm_seconds: int | None = None, concurrent_requests: int | None = None,
                 autoscaler: QueueDepthAutoscaler | None = None, health_path: str | None = None, ready_timeout: int | None = None,
                 name: str | None = None) -> None:
        if not isinstance(image, Image):
            raise OptionError('Pod(image=...): expected an Image, e.g. Image.from_registry("nginx:1.27")')
        port_list = [ports] if isinstance(ports, int) else list(ports)
        if len(port_list) != 1 or not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65_535 for p in port_list):
            raise OptionError("Pod(ports=...): expected the one port its server listens on, e.g. [8000]")
        if entrypoint is not None and (not isinstance(entrypoint, list) or not entrypoint or not all(isinstance(a, str) for a in entrypoint)):
            raise OptionError('Pod(entrypoint=...): expected a non-empty list of strings, e.g. ["python3", "-m", "http.server", "8000"]')
        self.image = image
        self.name = name
        config: dict[str, Any] = {"ports": port_list}
        for key, value in (("entrypoint", entrypoint), ("env", env), ("cpu", cpu), ("memory", memory), ("gpu", gpu), ("gpuCount", gpu_count),
                           ("secrets", secrets), ("authorized", authorized), ("keepWarmSeconds", keep_warm_seconds),
                           ("concurrentRequests", concurrent_requests), ("healthPath", health_path), ("readyTimeout", ready_timeout)):
            if value is not None:
                config[key] = value
        if autoscaler is not None:
            config["autoscaler"] = autoscaler.to_config("Pod")
        self.config = config

    def deploy(self, name: str | None = None, client: Client | None = None, on_log: Callable[[str], None] | None = None,
               wait: bool = True) -> PodDeployment:
        """Builds the image, deploys a new version under ``name`` and (``wait``) returns once a container is ready.
        A pod whose port never opens raises ApiError POD_NOT_READY with its container's last log lines."""
        client = client or Client()
        spec = _image_spec(self.image)
        deploy_name = name or self.name or _name_from_ref(str(spec["base"].get("ref", "pod")))
        image_id = build_image(client, spec, on_log)
        stub = client.request("POST", "/stub", {"name": deploy_name, "type": "pod/deployment", "config": {**self.config, "imageId": image_id}})["stub"]
        deployment = client.request("POST", "/deployment", {"stubId": stub["id"], "name": deploy_name})
        base = f"{client.gateway}/pod/{deployment['name']}"
        container_id = None
        if wait:
            # The gateway answers once the port opens and bounds the wait by the pod's readyTimeout
            # (up to an hour), after placement (its backlog gives up after 10 minutes).
            container_id = client.request("POST", f"/deployment/{deployment['id']}/warm", {}, timeout=max(client.timeout, 4200.0))["containerId"]
        return PodDeployment(
            name=deployment["name"], version=int(deployment["version"]), stub_id=stub["id"], image_id=image_id,
            url=f"{base}/", version_url=f"{base}/v{deployment['version']}/",
            public_url=f"{client.gateway}/public/{stub['id']}/" if stub["config"].get("authorized") is False else None,
            container_id=container_id, deployment=deployment)


def _name_from_ref(ref: str) -> str:
    """``ghcr.io/acme/my_server:1.2`` → ``my-server`` (the TS SDK's podNameFromImage)."""
    last = ref.split("@")[0].split("/")[-1].split(":")[0].lower()
    name = re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", re.sub(r"[^a-z0-9.-]+", "-", last))[:63]
    return name or "pod"
