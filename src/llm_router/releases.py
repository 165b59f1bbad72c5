"""Find and fetch a CLIProxyAPI release, fail-closed: the release lookup against GitHub's releases API (or a mirror
answering like it), the choice of the asset for this machine, checksums.txt parsing and the sha256 the archive
must have, and the HTTP downloads with their retries and one-line errors.

The archive is chosen by the release's assets (`cliproxy_lines.pick_asset`: `CLIProxyAPIPlus_<v>_<os>_<arch>`
holding `cli-proxy-api-plus`, or mainline `CLIProxyAPI_<v>_<os>_<arch>` holding `cli-proxy-api`), not by a fixed
name. A `Source` names the archive and the sha256 it must have: checksums.txt's entry, which the API's `digest`
(when present) must agree with; without checksums.txt there is no source unless --insecure-skip-checksum is given.
"""
from __future__ import annotations

import hashlib
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, urlsplit

from . import cliproxy_lines
from .archives import CHUNK, Progress, write_chunks
from .config_schema import RELEASE_PIN
from .errors import AUTH, CHECK_FAILED, NOT_FOUND, UNAVAILABLE, USAGE, RouterError

CHECKSUMS = "checksums.txt"
BINARY = "cli-proxy-api-plus"  # the Plus lines' name inside the archive (`.exe` on Windows); mainline: cli-proxy-api
BINARIES = ("cli-proxy-api-plus", "cli-proxy-api")  # every name a release archive may use for the binary
ASSET = cliproxy_lines.ASSET  # `<CLIProxyAPI|CLIProxyAPIPlus>_<version>_<os>_<arch>[_no-plugin].<tar.gz|zip>`
RELEASE_TAG = re.compile(r"^v?\d[0-9A-Za-z._+-]{0,63}$")  # what a release may call itself (forks: v7.1.5-0-plus)
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)|Error\(-?\d+, '([^']+)'\)")
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
TIMEOUT = (10.0, 60.0)  # seconds to connect, and to wait for the next bytes
ATTEMPTS = 4  # tries in all for transient failures: HTTP 5xx, reset or refused connections, cut-short downloads
BACKOFF = 1.0  # seconds before the first retry, doubled after each
MAX_DOWNLOAD = 512 * 1024 * 1024  # real archives are ~20 MB
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
REPO_GONE_HINT = ("the repository may be gone (router-for-me/CLIProxyAPIPlus was deleted in April 2026): point "
                  "bootstrap.cliproxy_repository in routertool.yaml (or --repository OWNER/NAME) at a fork or mirror "
                  "you trust, or install a file you downloaded with --archive PATH")
UNVERIFIED_HINT = "get checksums.txt from the same release; --insecure-skip-checksum installs unverified (not advised)"


@dataclass
class Source:
    """Where the archive comes from and what its SHA-256 must be (None only with --insecure-skip-checksum)."""

    tag: str
    repository: str
    asset: str
    expected: str | None
    origin: str  # download URL or local path
    path: Path | None = None


# --------------------------------------------------------------------------- names and platforms

def platform_id() -> tuple[str, str]:
    """This machine as GoReleaser names it: (linux|darwin|windows, amd64|arm64); unknown CPUs pass through."""
    machine = platform.machine().lower()
    return platform.system().lower(), ARCHES.get(machine, machine)


def asset_name(version: str, os_name: str, arch: str, project: str = "CLIProxyAPIPlus") -> str:
    """`<project>_<version without v>_<os>_<arch>.tar.gz` (`.zip` on Windows); `project` CLIProxyAPI for mainline.
    Only for messages: the archive installed is the one `cliproxy_lines.pick_asset` picks from the release."""
    extension = "zip" if os_name == "windows" else "tar.gz"
    return f"{project}_{version.removeprefix('v')}_{os_name}_{arch}.{extension}"


def binary_names(asset: cliproxy_lines.Asset, os_name: str) -> tuple[str, ...]:
    """The binary's possible names inside `asset`, the line's own first (`cli-proxy-api-plus` for a Plus asset,
    `cli-proxy-api` for a mainline one), `.exe` on Windows."""
    suffix = ".exe" if os_name == "windows" else ""
    ordered = (asset.binary, *(name for name in BINARIES if name != asset.binary))
    return tuple(name + suffix for name in ordered)


def normalize_tag(tag: str) -> str:
    """`latest`, or a release tag with its leading `v` (6.9.28-0 -> v6.9.28-0)."""
    if tag == "latest":
        return tag
    if not RELEASE_PIN.match(tag):
        raise RouterError(f"not a release tag: {tag!r}", hint='use a tag like v7.2.31, v6.9.28-0 or v7.1.5-0-plus, '
                          'or "latest"', exit_code=USAGE)
    return tag if tag.startswith("v") else f"v{tag}"


def parse_checksums(text: str, where: str = CHECKSUMS) -> dict[str, str]:
    """GoReleaser's checksums.txt (`<sha256 hex>  <file name>` per line) as {file name: lower-case hex}.

    A file listed twice with different hashes makes the whole list untrustworthy: RouterError (exit 1)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and SHA256.match(parts[0]):
            name, digest = parts[1].lstrip("*"), parts[0].lower()
            if sums.get(name, digest) != digest:
                raise RouterError(f"{where} lists {name} twice with different sha256 hashes: refusing it",
                                  hint="the checksums file was altered or garbled: get it again from the release, "
                                       "and if it repeats do not use this release", exit_code=CHECK_FAILED)
            sums[name] = digest
    return sums


def sha256_file(path: Path) -> str:
    """The lower-case hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- release sources

def local_source(archive: Path, checksums, repository: str, os_name: str, arch: str, insecure: bool) -> Source:
    """A release archive on disk (`--archive`), with the sha256 its checksums.txt (beside it, or `checksums`) lists."""
    archive = archive.expanduser().absolute()
    if not archive.is_file():
        raise RouterError(f"archive not found: {archive}", exit_code=NOT_FOUND)
    asset = cliproxy_lines.parse_asset(archive.name)
    if asset is None or cliproxy_lines.pick_asset([archive.name], os_name, arch) is None \
            or not RELEASE_TAG.match(f"v{asset.version}") or archive.name.endswith(".zip") != (os_name == "windows"):
        raise RouterError(f"{archive.name} is not a CLIProxyAPIPlus release asset for this machine ({os_name}/{arch}), "
                          "nor a mainline CLIProxyAPI one",
                          hint=f"use the file named {asset_name('<version>', os_name, arch)} or "
                               f"{asset_name('<version>', os_name, arch, 'CLIProxyAPI')} (arm64 may be spelled "
                               "aarch64, a _no-plugin build is fine), under its released name: checksums.txt lists it "
                               "by that name", exit_code=USAGE)
    sums_path = Path(checksums).expanduser().absolute() if checksums else archive.with_name(CHECKSUMS)
    try:
        text = sums_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = None
    expected = _expected(text, archive.name, str(sums_path), None, insecure,
                         missing=f"no checksums file at {sums_path}: refusing to install an unverified binary")
    return Source(tag=f"v{asset.version}", repository=repository, asset=archive.name, expected=expected,
                  origin=str(archive), path=archive)


def remote_source(session, api_url: str, repository: str, tag: str, os_name: str, arch: str,
                   insecure: bool) -> Source:
    """Release `tag` of `repository` from the releases API at `api_url`: this machine's asset, and the sha256 its
    checksums.txt lists (agreeing with the API's digest when it gives one)."""
    path = "releases/latest" if tag == "latest" else f"releases/tags/{quote(tag)}"
    url = f"{api_url.rstrip('/')}/repos/{repository}/{path}"
    try:
        response = fetch(session, url, f"release {tag} of {repository}", accept="application/vnd.github+json")
    except RouterError as exc:
        if exc.exit_code != NOT_FOUND:
            raise
        raise _release_not_found(session, api_url, repository, tag, url) from None
    tag, assets = _parse_release(response, url)
    same_release = [n for n in assets if (a := cliproxy_lines.parse_asset(n))
                    and cliproxy_lines.plain_version(a.version) == cliproxy_lines.plain_version(tag)]
    picked = cliproxy_lines.pick_asset(same_release, os_name, arch)
    if picked is None:
        listed = ", ".join(sorted(assets)) or "none"
        raise RouterError(f"release {tag} of {repository} has no asset for {os_name}/{arch} "
                          f"({asset_name(tag, os_name, arch)} or {asset_name(tag, os_name, arch, 'CLIProxyAPI')}); "
                          f"its assets: {listed}", hint="build the binary yourself and install it with --archive, "
                                                       "or use a release that ships your platform",
                          exit_code=NOT_FOUND)
    name = picked.name
    text = None
    if CHECKSUMS in assets:
        text = fetch(session, _asset_url(assets[CHECKSUMS], url), f"{CHECKSUMS} of {tag}").text
    origin = _asset_url(assets[name], url)
    digest = assets[name].get("digest")
    digest = digest if isinstance(digest, str) else ""
    expected = _expected(text, name, f"{CHECKSUMS} of {tag}",
                         digest[len("sha256:"):].lower() if digest.startswith("sha256:") else None, insecure,
                         missing=f"release {tag} of {repository} has no {CHECKSUMS}: refusing to install an "
                                 "unverified binary")
    return Source(tag=tag, repository=repository, asset=name, expected=expected, origin=origin)


def _release_not_found(session, api_url: str, repository: str, tag: str, url: str) -> RouterError:
    """The error for a 404 on the release: a missing tag of a live repository, or a repository that is gone (then
    naming the known continuations and the command that picks each)."""
    exists = _repository_exists(session, api_url, repository)
    if exists:
        return RouterError(f"release {tag} of {repository} not found (HTTP 404 from {url})",
                           hint=f"{repository} has no release {tag}: set bootstrap.cliproxy_version (or "
                                f"--cliproxy-version) to one of its tags (https://github.com/{repository}/releases) "
                                "or latest, or point bootstrap.cliproxy_repository at another repository",
                           exit_code=NOT_FOUND)
    why = " (it was deleted in April 2026)" if repository == cliproxy_lines.GONE_REPOSITORY else ""
    maybe = f" (or it has no release {tag})" if exists is None else ""
    return RouterError(f"release {tag} of {repository} not found (HTTP 404 from {url}): the repository is gone or "
                       f"private{why}{maybe}",
                       hint=f"the repository may be gone; {cliproxy_lines.continuations_text(repository)} (then set "
                            "bootstrap.cliproxy_repository to it in routertool.yaml); or install a file you "
                            "downloaded with --archive PATH", exit_code=NOT_FOUND)


def _repository_exists(session, api_url: str, repository: str) -> bool | None:
    """Whether GitHub (or the mirror) knows `repository`: True (200), False (404), None (could not tell). One try."""
    import requests

    try:
        with session.get(f"{api_url.rstrip('/')}/repos/{repository}", timeout=TIMEOUT,
                         headers={"Accept": "application/vnd.github+json"}) as response:
            return {200: True, 404: False}.get(response.status_code)
    except requests.RequestException:
        return None


def _malformed(url: str, what: str) -> RouterError:
    return RouterError(f"{url} did not answer a usable GitHub release: {what}",
                       hint="check bootstrap.github_api_url (or --repository); a mirror must answer like GitHub's "
                            "releases API; or install a file you downloaded with --archive PATH",
                       exit_code=UNAVAILABLE)


def _parse_release(response, url: str) -> tuple[str, dict[str, dict]]:
    """(tag, {asset name: asset}) of a releases-API answer, refusing anything not shaped like one."""
    try:
        release = response.json()
    except (ValueError, RecursionError):
        raise _malformed(url, "not JSON") from None
    if not isinstance(release, dict):
        raise _malformed(url, "not a JSON object")
    tag = release.get("tag_name")
    if not isinstance(tag, str) or not RELEASE_TAG.match(tag):
        raise _malformed(url, "no tag_name like v6.9.28-0")
    listed = release.get("assets", [])
    if not isinstance(listed, list):
        raise _malformed(url, '"assets" is not a list')
    assets = {}
    for asset in listed:
        if not isinstance(asset, dict) or not isinstance(asset.get("name"), str):
            raise _malformed(url, "an asset without a name")
        assets[asset["name"]] = asset
    return tag, assets


def _asset_url(asset: dict, api_url: str) -> str:
    """The asset's `browser_download_url`: https, or http on a loopback host (a local mirror or the stand-in)."""
    value = asset.get("browser_download_url")
    name = str(asset.get("name"))[:80]
    if not isinstance(value, str) or not value:
        raise _malformed(api_url, f"asset {name} has no browser_download_url")
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = None, None
    if not host or not (scheme == "https" or (scheme == "http" and host in LOOPBACK_HOSTS)):
        shown = "".join(c if c.isprintable() else "?" for c in value[:80])
        raise _malformed(api_url, f"asset {name} has the download URL {shown!r} (https only)")
    return value


def _expected(text: str | None, asset: str, where: str, digest: str | None, insecure: bool, missing: str) -> str | None:
    """The sha256 the archive must have: checksums.txt's entry, which the API digest (if any) must agree with."""
    if text is None:
        if insecure:
            return digest
        raise RouterError(missing, hint=UNVERIFIED_HINT, exit_code=CHECK_FAILED)
    expected = parse_checksums(text).get(asset)
    if expected is None and not insecure:
        raise RouterError(f"{asset} is not listed in {where}: refusing to install an unverified binary",
                          hint=UNVERIFIED_HINT, exit_code=CHECK_FAILED)
    if expected and digest and digest != expected:
        raise RouterError(f"checksum mismatch for {asset}: {where} says {expected}, the release API says {digest}",
                          hint="the release was altered after publishing: do not use it", exit_code=CHECK_FAILED)
    return expected or digest


# --------------------------------------------------------------------------- HTTP

class _Truncated(Exception):
    pass


def open_session():
    import requests

    session = requests.Session()
    session.headers.update({"User-Agent": "llm-router", "X-GitHub-Api-Version": "2022-11-28"})
    token = os.environ.get("GITHUB_TOKEN")
    if token:  # requests drops it when a download redirects to another host (GitHub's object storage)
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def fetch(session, url: str, what: str, accept: str = "application/octet-stream", dest: Path | None = None,
           progress: Progress | None = None):
    """GET `url` (into `dest` when given), retrying transient failures; HTTP errors become RouterErrors."""
    import requests

    delay = BACKOFF
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with session.get(url, timeout=TIMEOUT, stream=dest is not None, headers={"Accept": accept}) as response:
                if response.status_code < 500:
                    _raise_for_status(response, what, url)
                    if dest is not None:
                        _save(response, dest, progress)
                    return response
                problem = f"HTTP {response.status_code}"
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                _Truncated) as exc:
            problem = _reason(exc)
        except requests.RequestException as exc:  # not transient: a bad URL or scheme, a redirect loop, ...
            raise RouterError(f"cannot fetch {what} from {urlsplit(url).netloc or url[:80]}: "
                              f"{type(exc).__name__}", hint="check bootstrap.github_api_url", exit_code=UNAVAILABLE) \
                from None
        if attempt < ATTEMPTS:
            time.sleep(delay)
            delay *= 2
    raise RouterError(f"cannot fetch {what} from {urlsplit(url).netloc}: {problem} (after {ATTEMPTS} attempts)",
                      hint="check the network and bootstrap.github_api_url; on a machine without access use "
                           "--archive PATH", exit_code=UNAVAILABLE)


def _save(response, dest: Path, progress: Progress | None) -> None:
    total = int(response.headers["Content-Length"]) if response.headers.get("Content-Length", "").isdigit() else None
    done = write_chunks(response.iter_content(CHUNK), dest, MAX_DOWNLOAD, progress, total)
    if total is not None and done != total:
        raise _Truncated(f"got {done} of {total} bytes")


def _reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, (_Truncated, requests.exceptions.ChunkedEncodingError)):
        return "the connection closed before the download finished"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    match = ERRNO_TEXT.search(str(exc))
    return (match.group(1) or match.group(2)).strip() if match else "the connection failed"


def _raise_for_status(response, what: str, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 404:
        raise RouterError(f"{what} not found (HTTP 404 from {url})", hint=REPO_GONE_HINT, exit_code=NOT_FOUND)
    if status == 429 or (status == 403 and response.headers.get("X-RateLimit-Remaining") == "0"):
        raise RouterError(f"GitHub API rate limit reached (HTTP {status}){_reset_text(response.headers)}",
                          hint="set GITHUB_TOKEN to a GitHub token (5,000 requests an hour instead of 60), wait "
                               "for the reset, or install a file you downloaded with --archive PATH",
                          exit_code=UNAVAILABLE)
    if status in (401, 403):
        raise RouterError(f"GitHub refused the request for {what} (HTTP {status})",
                          hint="check GITHUB_TOKEN (or unset it) and that the repository is readable", exit_code=AUTH)
    raise RouterError(f"unexpected HTTP {status} for {what} from {url}", exit_code=UNAVAILABLE)


def _reset_text(headers) -> str:
    now = time.time()
    if headers.get("X-RateLimit-Reset", "").isdigit():
        reset = float(headers["X-RateLimit-Reset"])
    elif headers.get("Retry-After", "").isdigit():
        reset = now + float(headers["Retry-After"])
    else:
        return ""
    when = datetime.fromtimestamp(reset, timezone.utc)
    return f"; it resets at {when:%H:%M:%S} UTC (in {math.ceil(max(reset - now, 0) / 60)} min)"


