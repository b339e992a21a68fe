"""``Image``: the container image a workload runs in, described in code and built by the platform.

It maps to the gateway's image spec (``{base, steps, env}``); the spec's hash is the image id, so
an unchanged image is never rebuilt. The default base is Debian bookworm (minbase) with python3.11.

Private registries: ``credentials`` names workspace secrets, never values (specs are hashed, listed
and shown): ``{"username": "REG_USER", "password": "REG_PASSWORD"}``, or ``{"secret": "REG_AUTH"}``
for one secret holding ``user:password`` or a registry token. Dockerfiles are sent as text and
translated by the gateway with the same parser the TypeScript SDK uses.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import image_files

#: The python3 the default base provides (Debian bookworm).
DEFAULT_BASE_PYTHON = "python3.11"
_PYTHON_VERSION = re.compile(r"^python3(\.\d{1,2})?$")


class ImageError(ValueError):
    """An image description that cannot be built; the message names the option."""


_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Whether a Dockerfile copies local files (then its context is uploaded); a false hit only uploads more.
_COPIES = re.compile(r"^\s*(COPY|ADD)\s", re.IGNORECASE | re.MULTILINE)


def _credentials(option: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    keys = set(value) if isinstance(value, dict) else set()
    if keys not in ({"secret"}, {"username", "password"}) or not all(isinstance(v, str) and _SECRET_NAME.match(v) for v in value.values()):
        raise ImageError(f'{option}(credentials={value!r}): expected secret names, {{"username": "REG_USER", "password": "REG_PASSWORD"}} '
                         f'or {{"secret": "REG_AUTH"}} (a secret holding "user:password" or a token); create them with `beta9 secret create`')
    return dict(value)


def _remote(option: str, remote: Any) -> str:
    if not isinstance(remote, str) or not remote.startswith("/"):
        raise ImageError(f"Image.{option}: the path in the image must be absolute, got {remote!r}")
    return remote


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
        #: A base other than the default or base_image (a Dockerfile), as a spec base.
        self._base: dict[str, Any] | None = None
        self._credentials: dict[str, str] | None = None
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
        other._base = self._base
        other._credentials = self._credentials
        other._steps = list(self._steps)
        other._env = dict(self._env)
        return other

    @classmethod
    def from_registry(cls, ref: str, python_version: str = "python3", credentials: dict[str, str] | None = None) -> "Image":
        """An OCI image from a registry (``"python:3.11-slim"``, ``"ghcr.io/org/img:tag"``); private ones with ``credentials``."""
        image = cls(python_version=python_version, base_image=ref)
        image._credentials = _credentials("Image.from_registry", credentials)
        return image

    @classmethod
    def from_dockerfile(cls, path: str | os.PathLike[str], python_version: str = "python3", build_args: dict[str, str] | None = None,
                        credentials: dict[str, str] | None = None, context: str | os.PathLike[str] | None = None) -> "Image":
        """An image built from a Dockerfile by the platform's builder (no Docker needed).

        FROM, RUN, COPY/ADD of local paths, ENV, ARG, WORKDIR, USER and SHELL are built; CMD,
        ENTRYPOINT, EXPOSE, LABEL, VOLUME and STOPSIGNAL are ignored; anything else fails the build
        naming its line. COPY/ADD read the context directory (default: the Dockerfile's, minus
        .dockerignore), uploaded with the build, so its content is part of the image id.
        """
        if build_args is not None and not (isinstance(build_args, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in build_args.items())):
            raise ImageError(f"Image.from_dockerfile(build_args={build_args!r}): expected a dict of NAME -> string value")
        image = cls(python_version=python_version)
        # Read when the spec is made (to_spec, at deploy), never here: the workload's module is
        # also imported inside its container, where the Dockerfile is not.
        image._base = {"kind": "dockerfile", "path": str(Path(path).resolve()), "build_args": dict(build_args or {}),
                       "credentials": _credentials("Image.from_dockerfile", credentials),
                       "context": str(Path(context).resolve()) if context is not None else None}
        return image

    @staticmethod
    def _dockerfile_base(d: dict[str, Any]) -> dict[str, Any]:
        try:
            text = Path(d["path"]).read_text("utf-8")
        except OSError as err:
            raise ImageError(f"Image.from_dockerfile({d['path']!r}): cannot read it ({err.strerror or err})") from err
        base: dict[str, Any] = {"kind": "dockerfile", "dockerfile": text}
        if _COPIES.search(text):
            ctx = Path(d["context"]) if d["context"] is not None else Path(d["path"]).parent
            try:
                base["context"] = image_files.pack_directory(ctx, image_files.dockerignore(ctx))
            except image_files.ImageFilesError as err:
                raise ImageError(f"Image.from_dockerfile: {err}") from err
        if d["build_args"]:
            base["buildArgs"] = d["build_args"]
        if d["credentials"]:
            base["credentials"] = d["credentials"]
        return base

    @staticmethod
    def _local_step(step: dict[str, Any]) -> dict[str, Any]:
        """A copy step for a local file or directory, packed now (see add_local_file)."""
        try:
            if step["kind"] == "local_file":
                digest, name = image_files.pack_file(step["local"])
                return {"kind": "copy", "object": digest, "src": [name], "dest": step["remote"]}
            digest = image_files.pack_directory(step["local"], step["ignore"])
        except image_files.ImageFilesError as err:
            raise ImageError(f"Image.add_{step['kind']}: {err}") from err
        return {"kind": "copy", "object": digest, "src": ["."], "dest": step["remote"] if step["remote"].endswith("/") else step["remote"] + "/"}

    def add_local_file(self, local: str | os.PathLike[str], remote: str) -> "Image":
        """Copies a local file into the image at ``remote`` (absolute; ending in / copies into that directory).

        The file is read when the spec is made (at deploy); its content is part of the image id."""
        other = self._copy()
        other._steps.append({"kind": "local_file", "local": str(Path(local).resolve()), "remote": _remote("add_local_file", remote)})
        return other

    def add_local_dir(self, local: str | os.PathLike[str], remote: str, ignore: Sequence[str] = ()) -> "Image":
        """Copies a local directory's contents into the image directory ``remote``; ``ignore``: .dockerignore-style patterns."""
        other = self._copy()
        other._steps.append({"kind": "local_dir", "local": str(Path(local).resolve()), "remote": _remote("add_local_dir", remote),
                             "ignore": _strings("add_local_dir(ignore)", list(ignore)) if ignore else []})
        return other

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
        if self.base_image is None and self._base is None and self.python_version not in ("python3", DEFAULT_BASE_PYTHON):
            raise ImageError(
                f"Image(python_version={self.python_version!r}): the default base (Debian bookworm) provides "
                f"{DEFAULT_BASE_PYTHON} only; use {DEFAULT_BASE_PYTHON}, or base_image= an image that has "
                f"{self.python_version} (e.g. \"python:{self.python_version[6:]}-slim\")")

    def to_spec(self) -> dict[str, Any]:
        """The gateway's image spec. Registry bases check their python first, so a wrong one fails the build by name."""
        self.check_python()
        steps: list[dict[str, Any]] = []
        has_pip = any(s["kind"] == "pip" for s in self._steps)
        if self.base_image is None and self._base is None:
            base: dict[str, Any] = {"kind": "default"}
            if has_pip:
                # The default base is minimal: pip comes from Debian, installed once before the first pip step.
                steps.append({"kind": "apt", "packages": ["python3-pip"]})
        else:
            base = self._dockerfile_base(self._base) if self._base else {"kind": "registry", "ref": self.base_image}
            if self._credentials:
                base["credentials"] = dict(self._credentials)
            want = self.python_version
            steps.append({"kind": "shell", "command": (
                f"command -v {want} >/dev/null 2>&1 || {{ echo {shlex.quote(f'this image has no {want}: pick a base_image that provides it, or change python_version')} >&2; exit 1; }}")})
        steps.extend(self._local_step(s) if s["kind"] in ("local_file", "local_dir") else s for s in self._steps)
        return {"base": base, "steps": steps, "env": dict(sorted(self._env.items()))}

    def __repr__(self) -> str:
        return f"Image({self.to_spec()!r})"
