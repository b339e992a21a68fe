"""``Volume.commit()`` / ``reload()`` client side against a stand-in for the worker's control socket
(a real Unix socket and HTTP server in this process): what a reload writes (whole files renamed into
place, a file where a directory now is, removals), the confirmation it sends, and the errors. The
worker side, with runc and a gateway, is packages/cli/src/volume-sync-e2e.test.ts."""
from __future__ import annotations

import json
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from beta9.options import Volume
from beta9.volume_sync import VolumeSyncError


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[str, dict]] = []
    answers: dict[str, tuple[int, dict]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            calls.append((self.path, body))
            status, answer = answers[self.path]
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self):  # http.server wants a (host, port) client address
            sock, _ = super().get_request()
            return sock, ("local", 0)

    path = str(tmp_path / "worker.sock")
    server = Server(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("BETA9_VOLUME_CONTROL", path)
    yield calls, answers
    server.shutdown()
    server.server_close()


def test_reload_writes_whole_files_removes_and_confirms(worker, tmp_path: Path) -> None:
    calls, answers = worker
    snap = tmp_path / "snap"
    mount = tmp_path / "mount"
    (snap / "a").mkdir(parents=True)
    (snap / "a" / "new.txt").write_text("theirs")
    (snap / "file-now-dir").mkdir()
    (snap / "file-now-dir" / "x").write_text("x")
    mount.mkdir()
    (mount / "gone.txt").write_text("old")
    (mount / "file-now-dir").write_text("was a file here")
    answers["/volume/reload"] = (200, {"name": "v", "version": 3, "source": str(snap), "kept": ["mine.txt"], "remove": ["gone.txt"],
                                       "files": [{"path": "a/new.txt", "size": 6, "mode": 0o600, "mtime": 1_000_000},
                                                 {"path": "file-now-dir/x", "size": 1, "mode": 0o644, "mtime": 2_000}]})
    answers["/volume/reloaded"] = (200, {"name": "v", "version": 3})
    result = Volume("v", str(mount)).reload()
    assert result == {"name": "v", "version": 3, "updated": 2, "removed": 1, "kept": ["mine.txt"]}
    assert (mount / "a" / "new.txt").read_text() == "theirs"
    assert oct((mount / "a" / "new.txt").stat().st_mode & 0o777) == oct(0o600)
    assert (mount / "a" / "new.txt").stat().st_mtime == 1000
    assert (mount / "file-now-dir" / "x").read_text() == "x"
    assert not (mount / "gone.txt").exists()
    assert sorted(os.listdir(mount / "a")) == ["new.txt"], "no temp file left behind"
    assert calls == [("/volume/reload", {"name": "v"}), ("/volume/reloaded", {"name": "v", "version": 3})]


def test_commit_answers_and_errors_carry_the_catalogue_code(worker) -> None:
    calls, answers = worker
    answers["/volume/commit"] = (200, {"name": "v", "version": 5, "changed": 1, "removed": 0, "busy": [], "skipped": []})
    assert Volume("v", "/data").commit()["version"] == 5
    answers["/volume/commit"] = (404, {"error": {"code": "VOLUME_NOT_MOUNTED", "message": "This container does not mount a volume \"w\""}})
    with pytest.raises(VolumeSyncError) as err:
        Volume("w", "/data").commit()
    assert err.value.code == "VOLUME_NOT_MOUNTED" and err.value.status == 404


def test_outside_a_container_the_error_says_what_to_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BETA9_VOLUME_CONTROL", raising=False)
    with pytest.raises(VolumeSyncError, match="BETA9_VOLUME_CONTROL is not set"):
        Volume("v", "/data").commit()
