"""Loading a workload from its handler reference (``"pkg/app.py:handler"``) and calling it.

The file is imported as a module of the code directory (``pkg.app``), so its own imports work and
its ``if __name__ == "__main__":`` block does not run. The CLI's ``describe`` loads the same way.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any

from ..abstractions import WORKLOAD_MARKER, Workload
from ..schema import Schema, SchemaError


class LoadError(Exception):
    """The workload cannot be loaded; the message names the file and line when there is one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InputError(Exception):
    """The input does not fit the handler (422 INPUT_INVALID)."""


def module_name(relative_file: str) -> str:
    path = Path(relative_file)
    if path.suffix != ".py" or path.is_absolute() or ".." in path.parts:
        raise LoadError("HANDLER_INVALID", f"{relative_file}: expected a relative path to a .py file")
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        raise LoadError("HANDLER_INVALID", f"{relative_file}: every directory and the file name must be valid Python identifiers to import it")
    return ".".join(parts)


def _shadowed(root: Path, top: str) -> bool:
    """True when ``top`` already names a module from elsewhere (``types``, ``queue``, ``json``…), so
    importing the user's file by name would silently return that module instead."""
    if top in sys.builtin_module_names:
        return True
    existing = sys.modules.get(top)
    if existing is None:
        return top in sys.stdlib_module_names
    origin = getattr(existing, "__file__", None)
    try:
        return origin is None or not Path(origin).resolve().is_relative_to(root)
    except OSError:
        return True


def _import(root: Path, file: str, name: str) -> Any:
    if not _shadowed(root, name.split(".")[0]):
        return importlib.import_module(name)
    if "." in name:
        top = name.split(".")[0]
        raise LoadError("HANDLER_INVALID", f"{top}/: the package name {top!r} is also a standard module; rename the directory")
    # A top-level file named like a standard module (types.py, queue.py): load it from its path under
    # a private name, as `python3 types.py` would run it, leaving the standard module in place.
    private = f"_beta9_user_{name}"
    spec = importlib.util.spec_from_file_location(private, root / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[private] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(private, None)
        raise
    return module


def _where(err: BaseException, root: Path) -> str:
    """file:line of the deepest frame inside the user's code, for one-line errors."""
    best = ""
    for frame in traceback.extract_tb(err.__traceback__):
        try:
            rel = Path(frame.filename).resolve().relative_to(root)
        except ValueError:
            continue
        best = f"{rel}:{frame.lineno}"
    return best


def load(code_dir: str | Path, ref: str) -> Workload:
    """Imports ``file.py`` under ``code_dir`` and returns its workload named by ``ref``."""
    root = Path(code_dir).resolve()
    file, sep, attr = ref.rpartition(":")
    if not sep or not file or not attr.isidentifier():
        raise LoadError("HANDLER_INVALID", f'{ref!r}: expected "file.py:function"')
    name = module_name(file)
    if not (root / file).is_file():
        raise LoadError("HANDLER_NOT_FOUND", f"{file}: no such file in {root}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = _import(root, file, name)
    except SyntaxError as err:
        where = f"{Path(err.filename or file).name}:{err.lineno}" if err.lineno else file
        try:
            where = f"{Path(err.filename).resolve().relative_to(root)}:{err.lineno}" if err.filename else where
        except ValueError:
            pass
        raise LoadError("PYTHON_SYNTAX_ERROR", f"{where}: syntax error: {err.msg}") from None
    except BaseException as err:  # an import error, or anything the module raised at import
        if isinstance(err, KeyboardInterrupt):
            raise
        where = _where(err, root) or file
        raise LoadError("PYTHON_IMPORT_ERROR", f"{where}: {type(err).__name__}: {err}") from None
    value = getattr(module, attr, None)
    if value is None:
        raise LoadError("EXPORT_NOT_FOUND", f"{file} has no {attr!r}; name a function decorated with @endpoint, @asgi, @task_queue, @function or @schedule")
    if not getattr(value, WORKLOAD_MARKER, False):
        raise LoadError("NOT_A_WORKLOAD", f"{file}:{attr} is not a workload; decorate it with @endpoint, @asgi, @task_queue, @function or @schedule from beta9")
    return value


def bind(workload: Workload, payload: Any, context: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments for one call: an object → keyword arguments (or the ``inputs`` schema instance),
    a list → positional arguments, null → none, anything else → the one argument."""
    func = workload.func
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if workload.inputs is not None:
        try:
            args = (workload.inputs.from_dict({} if payload is None else payload),)
        except SchemaError as err:
            raise InputError(str(err)) from None
    elif isinstance(payload, dict):
        kwargs = dict(payload)
    elif isinstance(payload, list):
        args = tuple(payload)
    elif payload is not None:
        args = (payload,)
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return args, kwargs
    if "context" in sig.parameters:
        if "context" in kwargs:
            raise InputError("context: reserved (the handler's context argument); rename this input")
        kwargs["context"] = context
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        raise InputError(f"{err}; the handler is {func.__name__}{sig}") from None
    return args, kwargs


def output_of(workload: Workload, result: Any) -> Any:
    """The JSON result; with ``outputs=`` it must match that schema (ValueError naming the field)."""
    if workload.outputs is not None:
        if isinstance(result, workload.outputs):
            return result.to_dict()
        try:
            return workload.outputs.from_dict(result.to_dict() if isinstance(result, Schema) else result).to_dict()
        except SchemaError as err:
            raise ValueError(f"the result does not match outputs={workload.outputs.__name__}: {err}") from None
    if isinstance(result, Schema):
        return result.to_dict()
    return result
