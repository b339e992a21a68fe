"""``Pod`` without a platform: options become the gateway's pod config, a registry image loses the
python check (a pod's image need not have python), bad options fail at once. The TS e2e
(packages/cli/src/pods-e2e.test.ts) runs pods on real containers through the same gateway routes."""
from __future__ import annotations

import pytest

import beam
from beta9 import Image, OptionError, Pod, QueueDepthAutoscaler
from beta9.pod import _image_spec, _name_from_ref


def test_options_become_the_pod_config() -> None:
    pod = Pod(image=Image.from_registry("ghcr.io/acme/api:2", credentials={"username": "U", "password": "P"}), ports=8000,
              entrypoint=["python3", "-m", "http.server", "8000"], env={"A": "1"}, cpu=0.5, memory="256Mi", authorized=False,
              keep_warm_seconds=30, autoscaler=QueueDepthAutoscaler(max_containers=3), health_path="/healthz", ready_timeout=60)
    assert pod.config == {
        "ports": [8000], "entrypoint": ["python3", "-m", "http.server", "8000"], "env": {"A": "1"}, "cpu": 0.5, "memory": "256Mi",
        "authorized": False, "keepWarmSeconds": 30, "healthPath": "/healthz", "readyTimeout": 60, "autoscaler": {"type": "queue_depth", "maxContainers": 3, "tasksPerContainer": 1, "minContainers": 0},
    }
    spec = _image_spec(pod.image)
    assert spec["base"] == {"kind": "registry", "ref": "ghcr.io/acme/api:2", "credentials": {"username": "U", "password": "P"}}
    assert spec["steps"] == [], "no python check for a pod's image"
    assert beam.Pod is Pod


def test_bad_options_fail_at_once() -> None:
    with pytest.raises(OptionError, match="one port"):
        Pod(image=Image.from_registry("nginx:1.27"), ports=[80, 443])
    with pytest.raises(OptionError, match="entrypoint"):
        Pod(image=Image.from_registry("nginx:1.27"), ports=[80], entrypoint="nginx -g daemon off;")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="Image"):
        Pod(image="nginx", ports=[80])  # type: ignore[arg-type]


def test_names_from_image_refs() -> None:
    assert _name_from_ref("ghcr.io/acme/my_server:1.2") == "my-server"
    assert _name_from_ref("nginx@sha256:abc") == "nginx"
