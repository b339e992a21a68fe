"""``python3 -m beta9 describe FILE.py:FUNCTION [--bundle OUT]``: the contract between the beta9 CLI
and this SDK. It loads the file the way the runner will, and prints one JSON object on stdout:

  {"kind", "name", "config", "image": <image spec>, "handler": "rel/file.py:function",
   "codeSha256", "root", "files": [...], "bundle": OUT (when asked; the packed code is written there),
   "imageFiles": {sha256: base64} (local files the image copies, for the CLI to upload)}

or, on failure, {"error": {"code", "message"}} with exit status 2 (a usage or code problem).
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from . import image_files
from .bundle import BundleError, bundle, package_root
from .image import ImageError
from .options import OptionError
from .runner.loader import LoadError, load


def describe(target: str, bundle_out: str | None) -> dict[str, object]:
    file, sep, attr = target.rpartition(":")
    if not sep or not file:
        raise LoadError("TARGET_INVALID", f'{target!r}: expected FILE.py:FUNCTION, e.g. app.py:handler')
    path = Path(file).resolve()
    if not path.is_file():
        raise LoadError("FILE_NOT_FOUND", f"{file}: no such file")
    root = package_root(path)
    workload = load(root, f"{path.relative_to(root).as_posix()}:{attr}")
    code = bundle(path, attr, root)
    if bundle_out:
        Path(bundle_out).write_bytes(code.data)
    image = workload.image.to_spec()
    files = {digest: base64.b64encode(data).decode("ascii") for digest, data in image_files.pending(image).items()}
    return {
        "kind": workload.kind, "name": workload.name, "config": workload.stub_config(),
        "image": image, "handler": code.handler, "codeSha256": code.sha256, **({"imageFiles": files} if files else {}),
        "root": str(root), "files": [str(f) for f in code.files], **({"bundle": bundle_out} if bundle_out else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m beta9", description="beta9 Python SDK tools (used by the beta9 CLI)")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="describe a workload as JSON (and pack its code)")
    d.add_argument("target", help="FILE.py:FUNCTION")
    d.add_argument("--bundle", help="write the packed code (tar.gz) to this path")
    args = parser.parse_args(argv)
    # The user's module prints go to stderr, so stdout carries only the JSON answer.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        result: dict[str, object] = describe(args.target, args.bundle)
        status = 0
    except LoadError as err:
        result, status = {"error": {"code": err.code, "message": str(err)}}, 2
    except (OptionError, ImageError) as err:
        result, status = {"error": {"code": "INVALID_OPTION", "message": str(err)}}, 2
    except BundleError as err:
        result, status = {"error": {"code": "BUNDLE_FAILED", "message": str(err)}}, 2
    finally:
        sys.stdout = real_stdout
    print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
