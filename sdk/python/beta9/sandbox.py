"""Sandboxes (placeholder until the full client lands)."""
from __future__ import annotations


class SandboxInstance:
    pass


class Sandbox:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("Sandbox is not implemented yet in the Python SDK")
