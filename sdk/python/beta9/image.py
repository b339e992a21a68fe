"""``Image``: the container image a workload runs in, described in code and built by the platform.

It maps to the gateway's image spec (``{base, steps, env}``); the spec's hash is the image id, so
an unchanged image is never rebuilt. The default base is Debian bookworm (minbase) with python3.11.
"""
from __future__ import annotations

import re
import shlex
from typing import Any, Iterable, Sequence

#: The python3 the default base provides (Debian bookworm).
DEFAULT_BASE_PYTHON = "python3.11"
_PYTHON_VERSION = re.compile(r"^python3(\.\d{1,2})?$")


class ImageError(ValueError):
    """An image description that cannot be built; the message names the option."""


def _strings(option: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ImageError(f"Image({option}=...): expected a list of non-empty strings, got {value!r}")
    return list(value)


class Image:
    """An image. Every builder method returns a new Image, so a base can be shared and extended.

    >>> Image(python_version="python3.11", python_packages=["numpy"]).add_commands(["echo hi"])
    """

    def __init__(self, python_version: str = DEFAULT_BASE_PYTHON, python_packages: Sequence[str] | str = (),
                 commands: Sequence[str] | str = (), base_image: str | None = None,
                 env_vars: dict[str, str] | None = None) -> None:
        if not isinstance(python_version, str) or not _PYTHON_VERSION.match(python_version):
            raise ImageError(f'Image(python_version={python_version!r}): expected "python3" or "python3.X", e.g. "python3.11"')
        if base_image is not None and (not isinstance(base_image, str) or not base_image.strip()):
            raise ImageError(f"Image(base_image={base_image!r}): expected a registry reference such as \"python:3.11-slim\"")
        self.python_version = python_version
        self.base_image = base_image
        self._steps: list[dict[str, Any]] = []
        self._env: dict[str, str] = {}
        if python_packages:
            self._steps.append({"kind": "pip", "packages": _strings("python_packages", python_packages)})
        for command in _strings("commands", commands) if commands else []:
            self._steps.append({"kind": "shell", "command": command})
        if env_vars:
            self._env.update(self._check_env("env_vars", env_vars))

    @staticmethod
    def _check_env(option: str, env: Any) -> dict[str, str]:
        if isinstance(env, (list, tuple)):  # beta9 also takes ["KEY=value", …]
            pairs: dict[str, str] = {}
            for item in env:
                if not isinstance(item, str) or "=" not in item:
                    raise ImageError(f"Image.{option}: {item!r} is not KEY=value")
                key, _, value = item.partition("=")
                pairs[key] = value
            env = pairs
        if not isinstance(env, dict) or not all(isinstance(k, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) and isinstance(v, str) for k, v in env.items()):
            raise ImageError(f"Image.{option}: expected a dict of NAME -> string value, got {env!r}")
        return dict(env)

    def _copy(self) -> "Image":
        other = Image.__new__(Image)
        other.python_version = self.python_version
        other.base_image = self.base_image
        other._steps = list(self._steps)
        other._env = dict(self._env)
        return other

    @classmethod
    def from_registry(cls, ref: str, python_version: str = "python3") -> "Image":
        """An OCI image from a registry (``"python:3.11-slim"``, ``"ghcr.io/org/img:tag"``)."""
        return cls(python_version=python_version, base_image=ref)

    def add_python_packages(self, packages: Sequence[str] | str) -> "Image":
        other = self._copy()
        other._steps.append({"kind": "pip", "packages": _strings("add_python_packages", packages)})
        return other

    def add_commands(self, commands: Sequence[str] | str) -> "Image":
        other = self._copy()
        other._steps.extend({"kind": "shell", "command": c} for c in _strings("add_commands", commands))
        return other

    def add_apt_packages(self, packages: Sequence[str] | str) -> "Image":
        other = self._copy()
        other._steps.append({"kind": "apt", "packages": _strings("add_apt_packages", packages)})
        return other

    def with_envs(self, env: dict[str, str] | Iterable[str]) -> "Image":
        other = self._copy()
        other._env.update(self._check_env("with_envs", env))
        return other

    def check_python(self) -> None:
        """Fails (before any build) when the default base cannot provide ``python_version``."""
        if self.base_image is None and self.python_version not in ("python3", DEFAULT_BASE_PYTHON):
            raise ImageError(
                f"Image(python_version={self.python_version!r}): the default base (Debian bookworm) provides "
                f"{DEFAULT_BASE_PYTHON} only; use {DEFAULT_BASE_PYTHON}, or base_image= an image that has "
                f"{self.python_version} (e.g. \"python:{self.python_version[6:]}-slim\")")

    def to_spec(self) -> dict[str, Any]:
        """The gateway's image spec. Registry bases check their python first, so a wrong one fails the build by name."""
        self.check_python()
        steps: list[dict[str, Any]] = []
        has_pip = any(s["kind"] == "pip" for s in self._steps)
        if self.base_image is None:
            base: dict[str, Any] = {"kind": "default"}
            if has_pip:
                # The default base is minimal: pip comes from Debian, installed once before the first pip step.
                steps.append({"kind": "apt", "packages": ["python3-pip"]})
        else:
            base = {"kind": "registry", "ref": self.base_image}
            want = self.python_version
            steps.append({"kind": "shell", "command": (
                f"command -v {want} >/dev/null 2>&1 || {{ echo {shlex.quote(f'this image has no {want}: pick a base_image that provides it, or change python_version')} >&2; exit 1; }}")})
        steps.extend(self._steps)
        return {"base": base, "steps": steps, "env": dict(sorted(self._env.items()))}

    def __repr__(self) -> str:
        return f"Image({self.to_spec()!r})"
