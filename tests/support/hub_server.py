"""A local HTTP server in the Hugging Face hub's layout, for testing real ``huggingface_hub`` downloads.

Serves, for each repo ``org/name`` and any revision:

- ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "siblings"}`` (``HfApi.repo_info``);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file list (``HfApi.list_repo_tree``);
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: the bytes with the headers ``huggingface_hub``'s
  ``get_hf_file_metadata`` requires (``X-Repo-Commit``, ``ETag``, ``Content-Length``) and ``Range``
  support (``206`` + ``Content-Range``) for resumed downloads; unknown files are ``404`` with
  ``X-Error-Code: EntryNotFound`` as the hub answers.

``truncate`` names files whose first full GET is cut off halfway (the connection drops), so a client
has to resume with a ``Range`` request. ``log`` records (method, path, Range header) of every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    def __init__(self, repos: dict[str, dict[str, bytes]], truncate: set[str] | None = None):
        self.repos = repos
        self.truncate = set(truncate or ())
        self.log: list[tuple[str, str, str | None]] = []
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _json(self, data) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self, code: str) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        self.hub.log.append((self.command, path, rng))
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
            files = self.hub.repos.get(m.group(1))
            if files is None:
                return self._not_found("RepoNotFound")
            return self._json(
                {"id": m.group(1), "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
            )
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path):
            files = self.hub.repos.get(m.group(1))
            if files is None:
                return self._not_found("RepoNotFound")
            under = (m.group(3) or "").strip("/")
            rows = [
                {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for f, b in sorted(files.items())
                if not under or f.startswith(under + "/")
            ]
            return self._json(rows)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        files = self.hub.repos.get(m.group(1)) if m else None
        if m is None or files is None or m.group(3) not in files:
            return self._not_found("EntryNotFound" if files is not None else "RepoNotFound")
        self._file(m.group(1) + "/" + m.group(3), files[m.group(3)], head, rng)

    def _file(self, key: str, data: bytes, head: bool, rng: str | None) -> None:
        start = 0
        if rng and (r := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(r.group(1))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if not start and key in self.hub.truncate:
            self.hub.truncate.discard(key)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])
