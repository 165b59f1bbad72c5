"""A GitHub stand-in: the releases API and release downloads on 127.0.0.1, with fault injection.

    python -m llm_router.standin.github [--port 0] [--repository OWNER/NAME] [--version V ...]

Routes (GitHub's shapes, reference cliproxyapiplus.md §1):
  GET /repos/<owner>/<name>  -> {"full_name", "name", "owner": {"login"}, "html_url"} for a repository with a release
  GET /repos/<owner>/<name>/releases/latest and /releases/tags/<tag>
      -> {"tag_name", "name", "html_url", "assets": [{"name", "size", "browser_download_url", "digest"}]}
  GET /<owner>/<name>/releases/download/<tag>/<asset>  -> the file
Unknown repositories, tags and assets answer 404 `{"message": "Not Found"}`. Point `bootstrap.github_api_url`
at `server.url`. Faults (`set_fault`, or `POST /_standin/fault` with the same fields) apply per URL path ("*" for
all): an HTTP status with headers, a truncated body, or a connection reset. The command line builds stand-in
release archives for every platform (standin.cliproxy.build_release_archive) and serves them.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from llm_router.standin.httpbase import (
    LOOPBACK,
    RequestError,
    StandinHandler,
    StandinServer,
    install_stop_handlers,
    serve_until_stopped,
)

DOCS_URL = "https://docs.github.com/rest"


@dataclass
class HttpFault:
    """What to do to the next `count` requests for one path (-1: every request)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    count: int = -1
    truncate: bool = False  # announce the full Content-Length, send half, close
    reset: bool = False  # close the connection with a TCP reset, no answer


class GitHubServer(StandinServer):
    """Releases per (repository, tag); the last release added with `latest=True` is `/releases/latest`."""

    def __init__(self, port: int = 0) -> None:
        self.releases: dict[tuple[str, str], dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}  # download path -> content
        self.latest: dict[str, str] = {}
        self._faults: dict[str, HttpFault] = {}
        self._lock = threading.Lock()
        super().__init__(port, GitHubHandler, "github")
        # after the base class, whose `requests` is the /v1/ request log (GitHub has no /v1/ paths)
        self.requests: list[dict[str, Any]] = []  # type: ignore[assignment]  # {"method", "path", "authorization"}

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_port}"

    @staticmethod
    def release_path(repository: str, tag: str = "latest") -> str:
        return f"/repos/{repository}/releases/" + ("latest" if tag == "latest" else f"tags/{tag}")

    @staticmethod
    def download_path(repository: str, tag: str, name: str) -> str:
        return f"/{repository}/releases/download/{tag}/{name}"

    def add_release(self, repository: str, tag: str, files: Iterable[Path], digests: bool = True,
                    latest: bool = True) -> dict[str, Any]:
        """Publish `files` as the assets of `tag`; `digests` adds the API's `sha256:<hex>` field."""
        assets = []
        for file in files:
            data = Path(file).read_bytes()
            path = self.download_path(repository, tag, Path(file).name)
            asset = {"name": Path(file).name, "size": len(data), "content_type": "application/octet-stream",
                     "state": "uploaded", "browser_download_url": self.url + path}
            if digests:
                asset["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
            assets.append(asset)
            self.files[path] = data
        release = {"tag_name": tag, "name": tag, "draft": False, "prerelease": False,
                   "html_url": f"https://github.com/{repository}/releases/tag/{tag}",
                   "published_at": "2026-04-17T00:00:00Z", "assets": assets}
        with self._lock:
            self.releases[(repository, tag)] = release
            if latest:
                self.latest[repository] = tag
        return release

    def set_fault(self, path: str = "*", **fault: Any) -> None:
        with self._lock:
            self._faults[path] = HttpFault(**fault)

    def rate_limit(self, path: str = "*", reset_at: float | None = None, status: int = 403) -> None:
        """GitHub's primary rate limit: 403 (or 429) with X-RateLimit-Remaining 0 and the reset time."""
        reset = int(reset_at if reset_at is not None else time.time() + 600)
        headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Used": "60",
                   "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core"}
        if status == 429:
            headers["Retry-After"] = str(max(reset - int(time.time()), 0))
        self.set_fault(path, status=status, headers=headers)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, path: str) -> HttpFault | None:
        with self._lock:
            key = path if path in self._faults else "*"
            fault = self._faults.get(key)
            if fault is not None and fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    del self._faults[key]
            return fault

    def hits(self, path: str) -> int:
        """How many requests reached `path`."""
        with self._lock:
            return sum(1 for request in self.requests if request["path"] == path)


def github_error(status: int, headers: dict[str, str]) -> dict[str, Any]:
    if headers.get("X-RateLimit-Remaining") == "0":
        message = (f"API rate limit exceeded for {LOOPBACK}. (But here's the good news: Authenticated requests get "
                   "a higher rate limit. Check out the documentation for more details.)")
    else:
        message = {401: "Bad credentials", 403: "Forbidden", 404: "Not Found"}.get(
            status, "Server Error" if status >= 500 else "Error")
    return {"message": message, "documentation_url": DOCS_URL, "status": str(status)}


class GitHubHandler(StandinHandler):
    server: GitHubServer
    server_version = "GitHub.com"

    def handle_api(self) -> None:
        with self.server._lock:
            self.server.requests.append({"method": self.command, "path": self.url_path,
                                         "authorization": self.headers.get("Authorization")})
        fault = self.server.take_fault(self.url_path)
        if fault and fault.reset:
            self.reset_connection()
            return
        if fault and fault.status is not None:
            raise RequestError(fault.status, github_error(fault.status, fault.headers), fault.headers)
        if self.command != "GET":
            raise RequestError(404, github_error(404, {}))
        data = self.server.files.get(self.url_path)
        if data is not None:
            self.send_file(data, truncate=bool(fault and fault.truncate))
            return
        self.send_json(200, self.find_release())

    def find_release(self) -> dict[str, Any]:
        parts = self.url_path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "repos":
            return self.find_repository(f"{parts[1]}/{parts[2]}")
        if len(parts) < 5 or parts[0] != "repos" or parts[3] != "releases":
            raise RequestError(404, github_error(404, {}))
        repository = f"{parts[1]}/{parts[2]}"
        if parts[4:] == ["latest"]:
            tag = self.server.latest.get(repository)
        elif len(parts) == 6 and parts[4] == "tags":
            tag = parts[5]
        else:
            tag = None
        release = self.server.releases.get((repository, tag or ""))
        if release is None:
            raise RequestError(404, github_error(404, {}))
        return release

    def find_repository(self, repository: str) -> dict[str, Any]:
        """A repository exists while it has a release (a deleted one, like router-for-me/CLIProxyAPIPlus, is 404)."""
        with self.server._lock:
            known = any(name == repository for name, _ in self.server.releases)
        if not known:
            raise RequestError(404, github_error(404, {}))
        owner, name = repository.split("/", 1)
        return {"full_name": repository, "name": name, "owner": {"login": owner}, "private": False,
                "html_url": f"https://github.com/{repository}"}

    def reset_connection(self) -> None:
        """Close with a TCP RST (linger 0); the socket only really closes once `rfile` (a makefile) is closed."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True

    def send_file(self, data: bytes, truncate: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if truncate else data)
        if truncate:
            self.close_connection = True

    def handle_control(self) -> None:
        route = (self.command, self.url_path)
        if route == ("POST", "/_standin/fault"):
            body = self.json_body()
            try:
                self.server.set_fault(str(body.pop("path", "*")), **body)
            except TypeError as exc:
                raise RequestError(400, {"message": f"bad fault: {exc}"}) from exc
            self.send_json(200, {"status": "ok"})
        elif route == ("POST", "/_standin/reset"):
            self.server.clear_faults()
            self.send_json(200, {"status": "ok"})
        else:
            self.not_found()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `server.requests`; access lines would only clutter their output


def publish(server: GitHubServer, repository: str, version: str, dest_dir: Path,
            platforms: Iterable[tuple[str, str]] = (("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"),
                                                    ("darwin", "arm64"), ("windows", "amd64"), ("windows", "arm64")),
            latest: bool = True, lines: Iterable[str | None] = (None,), no_plugin: bool = False,
            checksums: bool = True) -> dict[str, Any]:
    """Build stand-in archives for `version` plus checksums.txt in `dest_dir` and publish them as tag v<version>.
    `lines` picks the asset kinds (None: the line the version implies; several: a release with both kinds);
    `no_plugin` adds the 7.x `_no-plugin` builds next to the default ones."""
    from llm_router.standin.cliproxy import build_release_archive, write_checksums

    version = version.removeprefix("v")
    folder = Path(dest_dir) / version
    platforms = list(platforms)
    archives = []
    for line in lines:
        for os_name, arch in platforms:
            archives.append(build_release_archive(folder, version, os_name, arch, line=line))
            if no_plugin and os_name != "windows":
                archives.append(build_release_archive(folder, version, os_name, arch, line=line, no_plugin=True))
    files = [*archives, write_checksums(folder, archives)] if checksums else archives
    return server.add_release(repository, f"v{version}", files, latest=latest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_router.standin.github", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--repository", default="router-for-me/CLIProxyAPIPlus")
    parser.add_argument("--version", dest="versions", action="append",
                        help="a release to publish (repeatable; the last one is latest; default 6.9.28-0)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        server = GitHubServer(args.port)
    except OSError as exc:
        print(f"standin github: cannot listen on {LOOPBACK}:{args.port}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    with tempfile.TemporaryDirectory(prefix="standin-github-") as folder:
        for version in args.versions or ["6.9.28-0"]:
            publish(server, args.repository, version, Path(folder))
        print(f"standin github listening on {LOOPBACK}:{server.server_port}", flush=True)
        serve_until_stopped(server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
