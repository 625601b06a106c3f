"""A stand-in Hugging Face Hub on 127.0.0.1 (HF_ENDPOINT=hub.url) for the security and fault tests.

It answers the requests huggingface_hub makes for `hf_hub_download` and `get_hf_file_metadata` the
way huggingface.co does (headers X-Repo-Commit, ETag, X-Error-Code), records every request with its
headers, and can play a gated, private, missing or silent repository.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """mode: "ok" (serves `files`), "gated", "private" (401 RepoNotFound), "missing" (404 RepoNotFound),
    "slow" (headers after `delay` seconds)."""

    def __init__(self, files: dict[str, str | bytes] | None = None, mode: str = "ok", delay: float = 0.0,
                 token: str | None = None):
        self.files = files or {}
        self.mode, self.delay, self.token = mode, delay, token
        self.requests: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, with_body: bool):
                hub.requests.append({"method": self.command, "path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()}})
                if hub.delay:
                    time.sleep(hub.delay)
                authorized = hub.token is not None and self.headers.get("authorization") == f"Bearer {hub.token}"
                mode = "ok" if (hub.mode in ("gated", "private") and authorized) else hub.mode
                if mode == "gated":
                    return self._error(403 if self.headers.get("authorization") else 401, "GatedRepo",
                                       "Access to this model is restricted. You must have access to it and be "
                                       "authenticated to access it. Please log in.")
                if mode in ("private", "missing"):
                    return self._error(401 if mode == "private" else 404, "RepoNotFound",
                                       "Repository Not Found for url: " + self.path)
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                if "/resolve/" not in self.path or name not in hub.files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist")
                f = hub.files[name]
                body = f if isinstance(f, bytes) else f.encode()     # bytes: safetensors headers
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", '"' + hashlib.sha1(body).hexdigest() + '"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str):
                body = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                # a client that hung up (kvfit gave up on purpose): socketserver would print a traceback on
                # whatever sys.stderr is at that moment, possibly another test's captured output
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections and never answers: a Hub behind a black-holing proxy."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def __enter__(self) -> "SilentServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        for c in self.conns:
            c.close()
        self.sock.close()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
