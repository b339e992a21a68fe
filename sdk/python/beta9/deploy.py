"""Deploying a Python workload: build its image (once per spec), bundle and upload its code (only
when the hash is new), and get or create its stub. ``workload.deploy()``, ``.serve()``, calls on
an undeployed workload and the CLI's ``beta9 deploy app.py:fn`` all come through here."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from .bundle import bundle
from .client import ApiError, Client


class ImageBuildError(Exception):
    """The image did not build; the message holds the build's error (its log went to on_log)."""


def build_image(client: Client, spec: dict[str, Any], on_log: Callable[[str], None] | None = None) -> str:
    image = client.build_image(spec)
    if image.get("status") == "building":
        for name, data in client.follow_image(image["id"]):
            if name == "log" and on_log:
                on_log(str(data.get("line", "")))
            elif name == "end":
                image = data
                break
    if image.get("status") != "ready":
        raise ImageBuildError(f"image build failed: {image.get('error') or 'unknown error'}")
    return str(image["id"])


def prepare_stub(client: Client, workload: Any, file: Path, attr: str, variant: str,
                 on_log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Image, code and stub for ``workload`` defined as ``attr`` in ``file``; variant "deployment" or "serve"."""
    image_id = build_image(client, workload.image.to_spec(), on_log)
    code = bundle(file, attr)
    uploaded = False
    if not client.has_object(code.sha256):
        client.put_object(code.sha256, code.data)
        uploaded = True
    created = client.create_stub({
        "name": workload.name, "type": f"{workload.kind}/{variant}", "objectId": code.sha256,
        "config": {**workload.stub_config(), "imageId": image_id, "handler": code.handler},
    })
    warnings = [str(w) for w in created.get("warnings") or []]
    for w in warnings:
        sys.stderr.write(f"warning: {w}\n")
    return {"stub": created["stub"], "warnings": warnings, "image_id": image_id, "code_sha256": code.sha256, "code_uploaded": uploaded}


def is_deployed(client: Client, name: str, kind: str) -> bool:
    """Whether an active deployment of this name and kind exists in the workspace."""
    try:
        found = client.request("GET", "/deployment", query={"name": name, "active": True, "limit": 100})
    except ApiError:
        return False
    items = found.get("items", found) if isinstance(found, dict) else found
    return any(str(d.get("stubType", "")).startswith(f"{kind}/") for d in items or [])
