# A Python endpoint that runs on a fresh `beta9 up` (no GPU needed). Try it:
#   ./beta9 deploy examples/python/hello.py:hello
#   ./beta9 run examples/python/hello.py:hello --input '{"name": "you"}'
from beta9 import Image, endpoint


@endpoint(name="hello-py", image=Image(python_version="python3.11"), cpu=0.5, memory=256, keep_warm_seconds=60)
def hello(name: str = "world"):
    return {"message": f"Hello, {name}!"}
