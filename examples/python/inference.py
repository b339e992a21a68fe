# The seed's endpoint example, as written. It asks for an A10G: without a worker that has one, deploy
# warns and calls answer 503 CAPACITY_UNAVAILABLE (see README). Run: ./beta9 deploy examples/python/inference.py:handler
from beam import Image, endpoint
from beam import QueueDepthAutoscaler

@endpoint(
    image=Image(python_version="python3.11"),
    gpu="A10G",
    cpu=2,
    memory="16Gi",
    autoscaler=QueueDepthAutoscaler(max_containers=5, tasks_per_container=30)
)
def handler():
    return {"label": "cat", "confidence": 0.97}
