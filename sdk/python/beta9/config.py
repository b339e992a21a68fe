"""Where the SDK finds its gateway and token: the environment first (BETA9_GATEWAY, BETA9_TOKEN),
then the CLI's current context (written by `beta9 up` / `beta9 config`), then the local default.

The context file is the TypeScript CLI's: ``$BETA9_CONFIG_DIR/config.json`` (default
``~/.beta9/config.json``), ``{"current": name, "contexts": {name: {"gateway", "token"}}}``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GATEWAY = "http://127.0.0.1:1994"


class ConfigError(Exception):
    """The saved CLI configuration cannot be used; the message says which file and what to fix."""


@dataclass(frozen=True)
class Settings:
    gateway: str
    token: str | None
    source: str
    #: PEM of the gateway's own certificate, the only one trusted for it (``beta9 up --tls``).
    tls_ca: str | None = None


def tls_ca_from_env(env: dict[str, str]) -> str | None:
    """BETA9_TLS_CA: the path of the gateway's PEM certificate (the PEM itself is taken too)."""
    value = env.get("BETA9_TLS_CA")
    if not value:
        return None
    if "BEGIN CERTIFICATE" in value:
        return value
    try:
        return Path(value).read_text("utf-8")
    except OSError as err:
        raise ConfigError(f"BETA9_TLS_CA: cannot read {value}: {err}") from err


def config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    directory = env.get("BETA9_CONFIG_DIR") or str(Path.home() / ".beta9")
    return Path(directory) / "config.json"


def _current_context(path: Path, name: str | None) -> tuple[str, dict[str, str]] | None:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object; fix or delete it")
    contexts = data.get("contexts") or {}
    wanted = name or data.get("current")
    if not wanted:
        return None
    ctx = contexts.get(wanted) if isinstance(contexts, dict) else None
    if name and not isinstance(ctx, dict):
        raise ConfigError(f"no context {name!r} in {path}; list them with: beta9 config list")
    if not isinstance(ctx, dict) or not isinstance(ctx.get("gateway"), str):
        return None
    return wanted, ctx


def resolve(gateway: str | None = None, token: str | None = None, context: str | None = None,
            env: dict[str, str] | None = None) -> Settings:
    """Explicit arguments win, then BETA9_GATEWAY/BETA9_TOKEN, then the CLI's current context."""
    env = dict(os.environ) if env is None else env
    context = context or env.get("BETA9_CONTEXT") or None
    if gateway is None and not context:
        gateway = env.get("BETA9_GATEWAY") or None
    if token is None and not context:
        token = env.get("BETA9_TOKEN") or None
    env_ca = tls_ca_from_env(env)
    if gateway is not None and token is not None:
        return Settings(gateway.rstrip("/"), token, "arguments/environment", env_ca)
    path = config_path(env)
    found = _current_context(path, context)
    if found is not None:
        name, ctx = found
        # A gateway named explicitly that differs from the context's keeps its own (absent) token and certificate.
        if gateway is None or gateway.rstrip("/") == ctx["gateway"].rstrip("/"):
            ca = ctx.get("tlsCa") if isinstance(ctx.get("tlsCa"), str) else None
            return Settings(ctx["gateway"].rstrip("/"), token or ctx.get("token"), f"context {name} in {path}", env_ca or ca)
    return Settings((gateway or DEFAULT_GATEWAY).rstrip("/"), token, "environment" if gateway else "default", env_ca)
