"""A local stand-in for the Hugging Face Hub: just the HTTP calls ``HfApi.create_repo`` and ``HfApi.upload_folder``
(huggingface_hub 1.x/2.x) make, served from a thread on 127.0.0.1. No network.

    with MockHub() as hub:              # or MockHub(status=401) to answer every request with that error
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        ...
        hub.files["tester/repo"]        # {path in repo: bytes} of everything committed
        hub.authorizations              # every Authorization header received

Endpoints: POST /api/repos/create, GET /api/whoami-v2, POST /api/validate-yaml (a README's metadata), GET /api/models/<repo> (repo_info),
POST /api/models/<repo>/preupload/<rev> (every file "regular": its bytes travel base64 in the commit, no LFS or
Xet upload), POST /api/models/<repo>/commit/<rev> (NDJSON: a header line, then one ``file`` line per file),
HEAD /api/telemetry/... (answered, ignored).

It can also serve a local folder as a dataset repo, for ``datasets.load_dataset("owner/name")`` and
huggingface_hub's downloads (huggingface_hub 2.x, datasets 5.x):

    with MockHub() as hub:
        hub.serve_dataset("owner/name", folder)   # every file under folder, at revision "main" (sha DATASET_SHA)
        env["HF_ENDPOINT"] = hub.url            # then load_dataset in a subprocess with that environment

Dataset endpoints: GET /api/datasets/<repo>[/revision/<rev>] (info: sha, siblings), GET
/api/datasets/<repo>/tree/<rev>[/<path>] (``recursive``; one page), POST /api/datasets/<repo>/paths-info/<rev>,
GET/HEAD /datasets/<repo>/resolve/<rev>/<path> (X-Repo-Commit, ETag, Content-Length; byte ranges). A repo not
served is a 404 RepoNotFound; other dataset calls are logged in ``hub.unexpected`` and answered 404.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = {
    401: "Invalid credentials in Authorization header",
    403: "You don't have the rights to create a model under the namespace",
    404: "Repository not found",
}
REPO_PATH = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
DATASET_API = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
DATASET_FILE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
DATASET_SHA = "d" * 40  # the one commit every served dataset repo is at


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
        self.datasets: dict[str, Path] = {}  # dataset repo id -> local folder served read-only (``serve_dataset``)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def unexpected_about(self, repo_id: str) -> list[tuple[str, str]]:
        """The unexpected requests that write, or touch ``repo_id``. Reads of other repos are not the code under
        test's: transformers' `kernels` integration (installed with transformers 5.25) asks the Hub about
        kernels-community while a model loads."""
        return [u for u in self.unexpected if u[0] != "GET" or repo_id in u[1]]

    def serve_dataset(self, repo_id: str, folder: str | Path) -> None:
        """Serve ``folder`` (every file under it) as the dataset repo ``repo_id``, at revision ``main`` or
        ``DATASET_SHA``, for ``datasets.load_dataset`` / ``hf_hub_download`` / ``HfFileSystem``."""
        self.datasets[repo_id] = Path(folder)

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

            def _send(self, status: int, payload: dict | list, headers: dict | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self._body() if method == "POST" else b""
                path, _, query = self.path.partition("?")
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
                if method == "HEAD" and path.startswith("/api/telemetry/"):  # e.g. trl's, when HF_HUB_OFFLINE=0
                    return self._send(200, {})
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
                if path.startswith(("/api/datasets/", "/datasets/")):
                    return self._dataset(method, path, query, body)
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

            def _not_found(self, what: str = "Repository not found", code: str = "RepoNotFound") -> None:
                self._send(404, {"error": what}, {"X-Error-Code": code, "X-Error-Message": what})

            def _dataset(self, method: str, path: str, query: str, body: bytes) -> None:
                """A served dataset repo (``hub.serve_dataset``): info, tree, paths-info and file downloads."""
                m = DATASET_FILE.match(path) or DATASET_API.match(path)
                repo_id = m and unquote(m["repo"])
                if repo_id not in hub.datasets:
                    return self._not_found()
                folder = hub.datasets[repo_id]
                files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
                if "path" in m.groupdict():  # GET/HEAD /datasets/<repo>/resolve/<rev>/<path>
                    if unquote(m["rev"]) not in ("main", DATASET_SHA):
                        return self._not_found("Invalid rev id", "RevisionNotFound")
                    name = unquote(m["path"])
                    if name not in files:
                        return self._not_found("Entry not found", "EntryNotFound")
                    return self._file(method, (folder / name).read_bytes())
                rest = m["rest"] or ""
                if method == "GET" and (rest == "" or rest in ("/revision/main", f"/revision/{DATASET_SHA}")):
                    return self._send(200, {"id": repo_id, "sha": DATASET_SHA, "private": False, "disabled": False,
                                            "gated": False, "downloads": 0, "likes": 0, "tags": [],
                                            "lastModified": "2026-01-01T00:00:00.000Z",
                                            "siblings": [{"rfilename": f} for f in files]})
                tree = re.match(r"^/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?$", rest)
                if method == "GET" and tree:
                    sub = unquote(tree["sub"] or "").strip("/")
                    recursive = parse_qs(query).get("recursive", ["false"])[0].lower() == "true"
                    base = folder / sub if sub else folder
                    if not base.is_dir():
                        return self._not_found("Entry not found", "EntryNotFound")
                    found = sorted(base.rglob("*") if recursive else base.iterdir())
                    return self._send(200, [_entry(folder, p) for p in found])
                if method == "POST" and rest.startswith("/paths-info/"):
                    if self.headers.get("Content-Type", "").startswith("application/json"):
                        wanted = json.loads(body or b"{}").get("paths", [])
                    else:
                        wanted = parse_qs(body.decode()).get("paths", [])
                    return self._send(200, [_entry(folder, folder / w) for w in wanted if (folder / w).exists()])
                hub.unexpected.append((method, path))
                return self._not_found(f"not mocked: {method} {path}", "EntryNotFound")

            def _file(self, method: str, data: bytes) -> None:
                start, end = 0, len(data)
                status = 200
                byte_range = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
                if byte_range and data:
                    first, last = byte_range.groups()
                    if first:
                        start, end = int(first), (int(last) + 1 if last else len(data))
                    else:
                        start = max(0, len(data) - int(last))
                    end = min(end, len(data))
                    status = 206
                chunk = data[start:end]
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("ETag", f'"{_oid(data)}"')
                self.send_header("X-Repo-Commit", DATASET_SHA)
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(chunk)

            def do_HEAD(self):
                self._handle("HEAD")

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        return Handler


def _oid(data: bytes) -> str:
    """The git blob id of ``data`` (what the Hub reports as a file's oid and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _entry(folder: Path, path: Path) -> dict:
    """A tree / paths-info entry for ``path`` (under ``folder``), as the Hub's API gives it."""
    rel = str(path.relative_to(folder))
    if path.is_dir():
        return {"type": "directory", "path": rel, "oid": hashlib.sha1(rel.encode()).hexdigest()}
    data = path.read_bytes()
    return {"type": "file", "path": rel, "size": len(data), "oid": _oid(data)}


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
