"""A local stand-in for the Hugging Face Hub: just the HTTP calls ``HfApi.create_repo`` and ``HfApi.upload_folder``
(huggingface_hub 1.x/2.x) make, served from a thread on 127.0.0.1. No network.

    with MockHub() as hub:              # or MockHub(status=401) to answer every request with that error
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        ...
        hub.files["tester/repo"]        # {path in repo: bytes} of everything committed
        hub.authorizations              # every Authorization header received

Endpoints: POST /api/repos/create, GET /api/whoami-v2, POST /api/validate-yaml (a README's metadata), GET /api/models/<repo> (repo_info),
POST /api/models/<repo>/preupload/<rev> (every file "regular": its bytes travel base64 in the commit, no LFS or
Xet upload), POST /api/models/<repo>/commit/<rev> (NDJSON: a header line, then one ``file`` line per file).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = {
    401: "Invalid credentials in Authorization header",
    403: "You don't have the rights to create a model under the namespace",
    404: "Repository not found",
}
REPO_PATH = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")


class MockHub:
    def __init__(self, status: int | None = None, user: str = "tester"):
        self.status = status  # None: answer normally; 401/403/404: answer every request with that error
        self.user = user
        self.repos: dict[str, dict] = {}  # repo id -> {"private": bool}
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> path -> bytes
        self.commits: list[dict] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.authorizations: list[str] = []
        self.unexpected: list[tuple[str, str]] = []
        self.validated: list[str] = []  # README.md texts sent to /api/validate-yaml
        self.lfs_files: list[str] = []  # paths a client tried to commit as LFS (should stay empty)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "MockHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else b""
                path = self.path.split("?", 1)[0]
                hub.requests.append((method, path))
                if self.headers.get("Authorization"):
                    hub.authorizations.append(self.headers["Authorization"])
                if hub.status is not None:
                    message = ERRORS.get(hub.status, "error")
                    headers = {"X-Error-Message": message}
                    if hub.status == 404:
                        headers["X-Error-Code"] = "RepoNotFound"
                    return self._send(hub.status, {"error": message}, headers)
                if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's user-agent telemetry
                    return self._send(200, {"standardEnvVars": [], "harnesses": {}})
                if method == "GET" and path == "/api/whoami-v2":
                    return self._send(200, {"type": "user", "name": hub.user, "orgs": [],
                                            "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
                if method == "POST" and path == "/api/repos/create":
                    payload = json.loads(body or b"{}")
                    repo_id = f"{payload.get('organization') or hub.user}/{payload['name']}"
                    if repo_id in hub.repos:
                        return self._send(409, {"error": "You already created this model repo",
                                                "url": f"{hub.url}/{repo_id}"})
                    hub.repos[repo_id] = {"private": payload.get("visibility") == "private" or
                                          bool(payload.get("private")), "payload": payload}
                    hub.files[repo_id] = {}
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                if method == "POST" and path == "/api/validate-yaml":  # the card's metadata, before any upload
                    content = json.loads(body)["content"]
                    hub.validated.append(content)
                    error = _front_matter_error(content)
                    if error:
                        return self._send(400, {"errors": [{"message": error}], "warnings": []})
                    return self._send(200, {"errors": [], "warnings": []})
                m = REPO_PATH.match(path)
                if m and m["repo"] in hub.repos:
                    repo_id, rest = m["repo"], m["rest"] or ""
                    if method == "GET" and rest == "":
                        return self._send(200, {"id": repo_id, "sha": "0" * 40, "private": hub.repos[repo_id]["private"],
                                                "siblings": [{"rfilename": p} for p in hub.files[repo_id]]})
                    if method == "POST" and rest.startswith("/preupload/"):
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                           "shouldIgnore": False, "oid": None} for f in files]})
                    if method == "POST" and rest.startswith("/commit/"):
                        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                        header = next(x["value"] for x in lines if x["key"] == "header")
                        for item in lines:
                            if item["key"] == "file":
                                hub.files[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                            elif item["key"] == "lfsFile":
                                hub.lfs_files.append(item["value"]["path"])
                        oid = f"{len(hub.commits) + 1:040x}"
                        hub.commits.append({"repo": repo_id, "summary": header.get("summary"),
                                            "files": [x["value"]["path"] for x in lines if x["key"] == "file"]})
                        return self._send(200, {"success": True, "commitOid": oid,
                                                "commitUrl": f"{hub.url}/{repo_id}/commit/{oid}"})
                if m:
                    return self._send(404, {"error": "Repository not found"},
                                      {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                hub.unexpected.append((method, path))
                return self._send(404, {"error": f"not mocked: {method} {path}"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        return Handler


def _front_matter_error(content: str) -> str | None:
    """What the Hub would reject in a README's YAML metadata (here: only YAML that does not parse to a mapping)."""
    import yaml

    if not content.startswith("---\n"):
        return None
    head = content[4:].split("\n---\n", 1)
    if len(head) != 2:
        return "metadata block not closed"
    try:
        meta = yaml.safe_load(head[0])
    except yaml.YAMLError as e:
        return f"invalid YAML: {e}"
    return None if isinstance(meta, dict) else "metadata must be a mapping"


def closed_port_url() -> str:
    """An http://127.0.0.1 URL nobody listens on: connections are refused at once (the Hub unreachable)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
