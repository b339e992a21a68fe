"""The seed document's Python examples, run exactly as written (``from beam import …``), against a
real gateway and runc workers. The sandbox example lives in test_sandbox.py.
"""
from __future__ import annotations

import json
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import SDK_ROOT, Platform, wait_until, write

ENDPOINT_EXAMPLE = textwrap.dedent('''\
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
''')

TASK_QUEUE_EXAMPLE = textwrap.dedent('''\
    from beam import Image, TaskPolicy, schema, task_queue


    class Input(schema.Schema):
        image_url = schema.String()


    @task_queue(
        name="image-processor",
        image=Image(python_version="python3.11"),
        cpu=1,
        memory=1024,
        inputs=Input,
        task_policy=TaskPolicy(max_retries=3),
    )
    def my_background_task(input: Input, *, context):
        image_url = input.image_url
        print(f"Processing image: {image_url}")
        return {"image_url": image_url}


    if __name__ == "__main__":
        # Invoke a background task from your app (without deploying it)
        my_background_task.put(image_url="https://example.com/image.jpg")

        # You can also deploy this behind a versioned endpoint with:
        # beam deploy app.py:my_background_task --name image-processor
''')




def tasks(platform: Platform) -> list[dict[str, Any]]:
    return json.loads(platform.cli("task", "list", "--json", "--limit", "200").stdout)


def test_endpoint_example_warns_and_answers_503_until_a_worker_with_an_a10g_joins(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", ENDPOINT_EXAMPLE)
    deployed = platform.cli("deploy", "app.py:handler", cwd=app_dir)
    # The only worker has no GPU: the deploy succeeds, says why it cannot run yet, and calls fail fast.
    assert "warning:" in deployed.stderr + deployed.stdout
    assert "A10G" in deployed.stderr + deployed.stdout
    status, body = platform.post("/endpoint/handler", {})
    assert status == 503, body
    assert body["error"]["code"] == "CAPACITY_UNAVAILABLE"
    assert "A10G" in body["error"]["message"]

    # A pool that declares an A10G (its devices are not visible here; the handler does not use them).
    platform.start_worker("pytgpu", "10.219.78.0/24", "--gpus", "A10G:1")
    status, body = platform.post("/endpoint/handler", {})
    assert (status, body) == (200, {"label": "cat", "confidence": 0.97})


def test_task_queue_example_put_without_deploying_then_deploy_by_name(platform: Platform, app_dir: Path) -> None:
    write(app_dir, "app.py", TASK_QUEUE_EXAMPLE)
    before = {t["id"] for t in tasks(platform)}
    ran = platform.python("app.py", cwd=app_dir)
    assert ran.returncode == 0, ran.stderr
    new = wait_until("the task put by app.py", lambda: [t for t in tasks(platform) if t["id"] not in before])
    assert len(new) == 1
    done = wait_until("the task to finish", lambda: (lambda t: t if t["status"] in ("COMPLETE", "ERROR", "TIMEOUT") else None)(
        platform.client.get_task(new[0]["id"])), timeout=300)
    assert done["status"] == "COMPLETE", done
    assert done["result"] == {"image_url": "https://example.com/image.jpg"}

    # The comment's command, with our CLI's name.
    deployed = platform.cli("deploy", "app.py:my_background_task", "--name", "image-processor", cwd=app_dir)
    assert "image-processor" in deployed.stdout
    status, body = platform.post("/taskqueue/image-processor", {"image_url": "https://example.com/b.jpg"})
    assert status == 200, body
    result = platform.client.wait_task(body["task_id"])
    assert result["status"] == "COMPLETE" and result["result"] == {"image_url": "https://example.com/b.jpg"}


EXAMPLES = SDK_ROOT.parents[1] / "examples" / "python"


def test_the_example_files_are_the_seed_as_written() -> None:
    assert ENDPOINT_EXAMPLE in (EXAMPLES / "inference.py").read_text()
    assert TASK_QUEUE_EXAMPLE in (EXAMPLES / "app.py").read_text()
    assert 'sandbox.process.run_code("print(\'I am running remotely\')")' in (EXAMPLES / "sandbox.py").read_text()


def test_readme_quick_start(platform: Platform) -> None:
    """The README's Python quick start, from the repository root as written there."""
    repo = SDK_ROOT.parents[1]
    deployed = platform.cli("deploy", "examples/python/hello.py:hello", cwd=repo, extra_env={"BETA9_CLI": str(repo / "beta9")})
    assert "hello-py" in deployed.stdout
    # The printed invoke line works when pasted into a shell (its token comes from `beta9 config token`).
    line = next(l for l in deployed.stdout.splitlines() if l.startswith("invoke: "))[len("invoke: "):]
    pasted = subprocess.run(["bash", "-c", line + " -sS"], env=platform.env, capture_output=True, text=True, timeout=120)
    assert json.loads(pasted.stdout) == {"message": "Hello, world!"}, (line, pasted.stdout, pasted.stderr)
    status, body = platform.post("/endpoint/hello-py", {"name": "you"})
    assert (status, body) == (200, {"message": "Hello, you!"})
    ran = platform.cli("run", "examples/python/hello.py:hello", "--input", '{"name": "you"}', "-q", cwd=repo)
    assert json.loads(ran.stdout) == {"message": "Hello, you!"}
    # beta9 run on a task queue puts one task and prints its result.
    queued = platform.cli("run", "examples/python/app.py:my_background_task", "--input", '{"image_url": "x.jpg"}', "-q", cwd=repo)
    assert json.loads(queued.stdout) == {"image_url": "x.jpg"}
    failed = platform.cli("run", "examples/python/app.py:my_background_task", "--input", '{"url": "x.jpg"}', "-q", cwd=repo, check=False)
    assert failed.returncode != 0 and "image_url" in failed.stderr, failed.stderr
