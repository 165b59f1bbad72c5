"""Install the CLIProxyAPI binary of any line (Plus 6.x, mainline 7.x, a Plus fork on 7.x): release lookup,
download, verification, safe extraction, install, status and rollback.

The archive is chosen by the release's assets (`cliproxy_lines.pick_asset`: `CLIProxyAPIPlus_<v>_<os>_<arch>` holding
`cli-proxy-api-plus`, or mainline `CLIProxyAPI_<v>_<os>_<arch>` holding `cli-proxy-api`), not by a fixed name; the
binary is installed as `layout.cliproxy_binary` whatever it was called, and the manifest records the line, the
asset and the binary's name.

Fail-closed. Nothing reaches `.router/runtime/bin/` until the archive's SHA-256 matches the release's
checksums.txt (and the API's `digest` when present), the binary came out of the archive safely and it prints its
version banner, naming the release's version, from a `-h` that exits 0 as the real binary's does. Downloads and
extraction happen in a temp folder under `.router/runtime/tmp/` that is always removed (one left by a killed run is
removed by the next); the install stages every new file inside bin/ first and then only renames, so a failure
leaves the binary, its manifest and the `.previous` pair as they were.

The `-h` probe runs the binary in a process group of its own and kills that group (found by the pid of the probe
this function started, never by name) before reaping it: on a timeout, a failure or Ctrl-C nothing it started is
left running.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import selectors
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit

from . import cliproxy_lines, events, runner
from .config import RouterConfig
from .errors import AUTH, CHECK_FAILED, NOT_FOUND, UNAVAILABLE, USAGE, RouterError
from .fsutil import ensure_dir
from .layout import Layout

SERVICE = "cliproxyapi_plus"
CHECKSUMS = "checksums.txt"
BINARY = "cli-proxy-api-plus"  # the Plus lines' name inside the archive (`.exe` on Windows); mainline: cli-proxy-api
BINARIES = ("cli-proxy-api-plus", "cli-proxy-api")  # every name a release archive may use for the binary
ASSET = cliproxy_lines.ASSET  # `<CLIProxyAPI|CLIProxyAPIPlus>_<version>_<os>_<arch>[_no-plugin].<tar.gz|zip>`
TAG = re.compile(r"^v?\d+\.\d+\.\d+(-\d+)?$")
RELEASE_TAG = re.compile(r"^v?\d[0-9A-Za-z._+-]{0,63}$")  # what a release may call itself (forks: v7.1.5-0-plus)
REPOSITORY = re.compile(r"^[\w.-]+/[\w.-]+$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
BANNER = re.compile(r"CLIProxyAPI Version: ([^,\s]+)")
ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")]+)|Error\(-?\d+, '([^']+)'\)")
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
TIMEOUT = (10.0, 60.0)  # seconds to connect, and to wait for the next bytes
ATTEMPTS = 4  # tries in all for transient failures: HTTP 5xx, reset or refused connections, cut-short downloads
BACKOFF = 1.0  # seconds before the first retry, doubled after each
CHUNK = 256 * 1024
MAX_DOWNLOAD = 512 * 1024 * 1024  # real archives are ~20 MB
MAX_BINARY = 256 * 1024 * 1024  # ... and hold a ~50 MB binary
MAX_MEMBERS = 1000
RUN_CHECK_TIMEOUT = 30.0
MAX_PROBE_OUTPUT = 1024 * 1024  # bytes of `-h` output read; the real binary prints about 3 KB
WORK_PREFIX = "bootstrap-"  # temp folders under runtime/tmp/, each holding WORK_LOCK while its run lives
WORK_LOCK = ".owner.lock"
STALE_UNLOCKED = 60.0  # seconds after which a temp folder without its lock file is an interrupted run's
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
REPO_GONE_HINT = ("the repository may be gone (router-for-me/CLIProxyAPIPlus was deleted in April 2026): point "
                  "bootstrap.cliproxy_repository in routertool.yaml (or --repository OWNER/NAME) at a fork or mirror "
                  "you trust, or install a file you downloaded with --archive PATH")
UNVERIFIED_HINT = "get checksums.txt from the same release; --insecure-skip-checksum installs unverified (not advised)"
FS_HINT = "check that the folder is writable and the disk is not full"

Progress = Callable[[int, int | None], None]


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
    if not TAG.match(tag):
        raise RouterError(f"not a release tag: {tag!r}", hint='use a tag like v6.9.28-0, or "latest"', exit_code=USAGE)
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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def probe(path: Path, timeout: float | None = None) -> tuple[int, str]:
    """Run `path -h` in a new session and return (exit code, stdout and stderr).

    The probe's process group is killed before the probe is reaped, always: its group id is then still the probe's
    own pid (an unreaped process keeps its pid reserved), so the signal reaches only what the probe started.
    A probe still running after `timeout`, or interrupted, raises RouterError or KeyboardInterrupt after that."""
    try:
        proc = subprocess.Popen([str(path), "-h"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=path.parent, start_new_session=True)
    except OSError as exc:
        raise RouterError(f"the CLIProxyAPIPlus binary does not run: {exc.strerror or exc}", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a build for this machine") from None
    output = bytearray()
    timeout = RUN_CHECK_TIMEOUT if timeout is None else timeout
    try:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while len(output) <= MAX_PROBE_OUTPUT and time.monotonic() < deadline:
                if selector.select(min(max(deadline - time.monotonic(), 0), 0.1)):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output += chunk
                elif _exited(proc.pid):
                    break  # whatever it left holding the pipe dies with its group below
        while len(output) <= MAX_PROBE_OUTPUT and not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        timed_out = len(output) <= MAX_PROBE_OUTPUT and not _exited(proc.pid)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this Popen created; its leader is not reaped yet
        proc.wait()
        proc.stdout.close()
    text = output.decode("utf-8", "replace")
    if len(output) > MAX_PROBE_OUTPUT:
        raise RouterError(f"the CLIProxyAPIPlus binary printed more than {MAX_PROBE_OUTPUT // 1024} KiB for `-h`; "
                          "it was stopped", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a CLIProxyAPIPlus build for this machine")
    if timed_out:
        raise RouterError(f"the CLIProxyAPIPlus binary did not exit within {timeout:g} s of `-h`; it was stopped",
                          exit_code=CHECK_FAILED, hint="the archive does not hold a CLIProxyAPIPlus build for this "
                                                       "machine (the real one prints its usage and exits)")
    return proc.returncode, text


def _exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (so its pid, our group id, stays reserved)."""
    if not hasattr(os, "waitid"):  # pragma: no cover - every supported platform has it
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def binary_version(path: Path, returncode: list | None = None) -> str:
    """The version in the banner the binary prints before parsing flags (`CLIProxyAPI Version: 6.9.28-0-plus, ...`).
    `returncode`, when given, receives the exit code of `-h`."""
    code, output = probe(path)
    if returncode is not None:
        returncode.append(code)
    match = BANNER.search(output)
    if not match:
        raise RouterError(f"the CLIProxyAPIPlus binary did not print its `CLIProxyAPI Version:` banner "
                          f"(`-h` exited {code})", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a CLIProxyAPIPlus build for this machine")
    return match.group(1)


def checked_version(path: Path, tag: str) -> str:
    """The banner's version of the binary about to be installed as release `tag`: it must name that release
    (`6.9.28-0-plus` or `6.9.28-0` for v6.9.28-0) and `-h` must exit 0, as the real binary's does (Go's flag
    package exits 0 for -h)."""
    codes: list[int] = []
    version = binary_version(path, codes)
    wanted = tag.removeprefix("v").removesuffix("-plus")
    if version.removeprefix("v").removesuffix("-plus") != wanted:
        raise RouterError(f"the binary in the {tag} archive says it is version {version[:40]!r}, not {wanted}: "
                          "refusing to install it", exit_code=CHECK_FAILED,
                          hint="the release was assembled wrongly or tampered with: do not use it")
    if codes[0] != 0:
        raise RouterError(f"the binary in the {tag} archive printed its banner but `-h` exited {codes[0]} (the real "
                          "binary exits 0): refusing to install it", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a working CLIProxyAPIPlus build for this machine")
    return version


# --------------------------------------------------------------------------- download

def download(cfg: RouterConfig, version: str | None = None, repository: str | None = None,
             archive: str | os.PathLike | None = None, checksums: str | os.PathLike | None = None,
             force: bool = False, insecure_skip_checksum: bool = False, progress: Progress | None = None) -> dict:
    """Install the release's CLIProxyAPIPlus binary for this machine (or from a local `archive`).

    Returns {"result": "installed"|"unchanged", the manifest fields, "path", "litellm_runner", "litellm_version",
    "restart_needed", "warnings"}; raises RouterError (nothing installed) on any failure. Logs `bootstrap_download`.
    """
    configured = cfg.bootstrap.cliproxy_repository
    other_repository = bool(repository) and repository != configured and not archive
    # The pin belongs to the configured repository: `--repository OWNER/NAME` alone takes that one's latest release
    # (the tags of the lines differ: v6.9.28-0, v7.2.140, v7.1.68-6).
    tag = version or ("latest" if other_repository else cfg.bootstrap.cliproxy_version)
    repository = repository or configured
    log = events.for_config(cfg)
    try:
        tag = normalize_tag(tag)
        if not REPOSITORY.match(repository):
            raise RouterError(f"not a repository: {repository!r}", hint="use OWNER/NAME", exit_code=USAGE)
        outcome = _download(cfg, tag, repository, archive, checksums, force, insecure_skip_checksum, progress)
        if other_repository:
            outcome["warnings"].append(
                f"{repository} is not bootstrap.cliproxy_repository ({configured}): the next `bootstrap download` "
                f"goes back to that one; to keep this line set `cliproxy_repository: {repository}` and "
                f"`cliproxy_version: {outcome.get('version')}` (or latest) under bootstrap: in routertool.yaml")
    except RouterError as exc:
        log.append("bootstrap_download", service=SERVICE, result="error",
                   detail={"version": tag, "repository": repository, "error": exc.message})
        raise
    log.append("bootstrap_download", service=SERVICE, result=outcome["result"],
               detail={k: outcome.get(k) for k in ("version", "sha256", "repository", "asset", "line", "verified")})
    return outcome


def _download(cfg: RouterConfig, tag: str, repository: str, archive, checksums, force: bool, insecure: bool,
              progress: Progress | None) -> dict:
    layout = cfg.layout
    os_name, arch = platform_id()
    with _writing(layout.tmp_dir):
        stale = clean_stale_work(layout)
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=ensure_dir(layout.tmp_dir)))
        owner = os.open(work / WORK_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)  # released by the kernel when this process dies, however it dies
        outcome = _download_into(cfg, work, tag, repository, archive, checksums, force, insecure, progress,
                                 os_name, arch)
        if stale:
            outcome["warnings"].append(f"removed {len(stale)} temp folder(s) left by an interrupted download: "
                                       + ", ".join(stale))
        return outcome
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.close(owner)


def clean_stale_work(layout: Layout, remove: bool = True) -> list[str]:
    """The `runtime/tmp/bootstrap-*` folders of runs that died (kill -9, power loss): older than a minute (so a run
    that has created its folder but not yet locked it is never taken) and their owner lock free or missing.
    Removed unless `remove` is false; returns their names."""
    try:
        candidates = sorted(p for p in layout.tmp_dir.iterdir() if p.name.startswith(WORK_PREFIX) and p.is_dir()
                            and not p.is_symlink())
    except OSError:
        return []
    stale = []
    for folder in candidates:
        try:
            if time.time() - folder.stat().st_mtime < STALE_UNLOCKED:
                continue
        except OSError:
            continue
        try:
            fd = os.open(folder / WORK_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            stale.append(folder)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live run holds it
        else:
            stale.append(folder)
            if remove:  # while we hold its lock no run can be using it
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
    if remove:
        for folder in stale:
            if folder.exists():  # the unlocked ones
                shutil.rmtree(folder, ignore_errors=True)
    return [folder.name for folder in stale]


def _download_into(cfg: RouterConfig, work: Path, tag: str, repository: str, archive, checksums, force: bool,
                   insecure: bool, progress: Progress | None, os_name: str, arch: str) -> dict:
    layout = cfg.layout
    if archive:
        source = _local_source(Path(archive), checksums, repository, os_name, arch, insecure)
    else:
        with _session() as session:
            source = _remote_source(session, cfg.bootstrap.github_api_url, repository, tag, os_name, arch,
                                    insecure)
            if not force and source.expected and _unchanged(layout, source.tag, source.expected):
                return _outcome(cfg, "unchanged", read_manifest(layout.bin_manifest), insecure)
            source.path = work / source.asset
            _fetch(session, source.origin, f"release asset {source.asset}", dest=source.path, progress=progress)
    sha = sha256_file(source.path)
    if source.expected and sha != source.expected:
        raise RouterError(f"checksum mismatch for {source.asset}: expected sha256 {source.expected}, got {sha}",
                          hint="the file is damaged or was tampered with: download it again, and if it "
                               "repeats do not use this release", exit_code=CHECK_FAILED)
    if not force and _unchanged(layout, source.tag, sha):
        return _outcome(cfg, "unchanged", read_manifest(layout.bin_manifest), insecure)
    asset = cliproxy_lines.parse_asset(source.asset)
    staged, member = extract_binary(source.path, work / "CLIProxyAPIPlus", binary_names(asset, os_name))
    line = cliproxy_lines.classify(source.tag, source.asset)
    manifest = {"version": source.tag, "repository": repository, "asset": source.asset, "line": line.key,
                "binary": member, "sha256": sha, "verified": source.expected is not None,
                "binary_version": checked_version(staged, source.tag), "binary_sha256": sha256_file(staged),
                "source": source.origin, "installed_at": events.now_iso()}
    _install(layout, staged, manifest)
    return _outcome(cfg, "installed", manifest, insecure)


def _outcome(cfg: RouterConfig, result: str, manifest: dict | None, insecure: bool) -> dict:
    layout = cfg.layout
    runner_path = runner.ensure_litellm_runner(layout)
    available, litellm_version = runner.litellm_available()
    warnings = []
    if insecure:
        warnings.append("--insecure-skip-checksum: this binary was NOT required to match the release's checksums.txt"
                        + ("" if (manifest or {}).get("verified") else " and it was NOT verified at all"))
    if not available:
        warnings.append(f"LiteLLM (dependency group `runtime`) is not installed: run `{runner.RUNTIME_GROUP_HINT}`")
    line = cliproxy_lines.LINES.get((manifest or {}).get("line") or "")
    if line is not None and not line.copilot:
        plus = [name for name, (key, _) in cliproxy_lines.KNOWN_REPOSITORIES.items()
                if cliproxy_lines.LINES[key].copilot]
        warnings.append(f"{line.title} has no GitHub Copilot: Copilot models and `auth copilot login` need a Plus "
                        "line (" + "; ".join(f"llm-router bootstrap download --repository {name}" for name in plus)
                        + "); `llm-router doctor` names the models affected")
    return {"result": result, **(manifest or {}), "path": str(layout.cliproxy_binary),
            "litellm_runner": str(runner_path), "litellm_version": litellm_version,
            "restart_needed": result == "installed" and _running(cfg), "warnings": warnings}


def _running(cfg: RouterConfig) -> bool:
    from . import services

    return services.is_running(cfg, SERVICE)


def _unchanged(layout: Layout, tag: str, sha: str) -> bool:
    """The installed binary is `tag` from an archive with this sha256, and has not changed since."""
    manifest = read_manifest(layout.bin_manifest) or {}
    if (manifest.get("version"), manifest.get("sha256")) != (tag, sha) or not layout.cliproxy_binary.is_file():
        return False
    return sha256_file(layout.cliproxy_binary) == manifest.get("binary_sha256")


def _local_source(archive: Path, checksums, repository: str, os_name: str, arch: str, insecure: bool) -> Source:
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


def _remote_source(session, api_url: str, repository: str, tag: str, os_name: str, arch: str,
                   insecure: bool) -> Source:
    path = "releases/latest" if tag == "latest" else f"releases/tags/{quote(tag)}"
    url = f"{api_url.rstrip('/')}/repos/{repository}/{path}"
    try:
        response = _fetch(session, url, f"release {tag} of {repository}", accept="application/vnd.github+json")
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
        text = _fetch(session, _asset_url(assets[CHECKSUMS], url), f"{CHECKSUMS} of {tag}").text
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


def _session():
    import requests

    session = requests.Session()
    session.headers.update({"User-Agent": "llm-router", "X-GitHub-Api-Version": "2022-11-28"})
    token = os.environ.get("GITHUB_TOKEN")
    if token:  # requests drops it when a download redirects to another host (GitHub's object storage)
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _fetch(session, url: str, what: str, accept: str = "application/octet-stream", dest: Path | None = None,
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
    done = _write_chunks(response.iter_content(CHUNK), dest, MAX_DOWNLOAD, progress, total)
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


# --------------------------------------------------------------------------- files

@contextlib.contextmanager
def _writing(path: Path):
    """Report an OSError raised inside as a local file-system problem with `path`."""
    try:
        yield
    except OSError as exc:
        raise RouterError(f"cannot write {path}: {exc.strerror or exc}", hint=FS_HINT, exit_code=USAGE) from None


def _write_chunks(chunks: Iterable[bytes], dest: Path, limit: int, progress: Progress | None = None,
                  total: int | None = None) -> int:
    """Stream `chunks` into `dest`; read errors pass through, write errors become RouterErrors."""
    with _writing(dest):
        out = open(dest, "wb")
    done = 0
    with out:
        for chunk in chunks:
            done += len(chunk)
            if done > limit:
                raise RouterError(f"{dest.name} is larger than {limit // 2**20} MiB: refusing it",
                                  exit_code=CHECK_FAILED)
            with _writing(dest):
                out.write(chunk)
            if progress:
                progress(done, total)
        with _writing(dest):
            out.flush()
            os.fsync(out.fileno())
    return done


def extract_binary(archive: Path, dest: Path, member: str | Iterable[str]) -> tuple[Path, str]:
    """Copy only the binary out of a .tar.gz or .zip into `dest` (0755), after checking every entry is safe.
    `member` is its name, or its possible names in order of preference; returns (dest, the name found)."""
    wanted = (member,) if isinstance(member, str) else tuple(member)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as package:
                infos = package.infolist()
                index = _check_entries(archive.name, [(i.filename, _zip_kind(i), i.file_size) for i in infos], wanted)
                found = infos[index].filename
                with package.open(infos[index]) as src:
                    _write_chunks(iter(lambda: src.read(CHUNK), b""), dest, MAX_BINARY)
        else:
            with tarfile.open(archive, "r:gz") as package:
                members = package.getmembers()
                index = _check_entries(archive.name, [(m.name, _tar_kind(m), m.size) for m in members], wanted)
                found = members[index].name
                src = package.extractfile(members[index])
                _write_chunks(iter(lambda: src.read(CHUNK), b""), dest, MAX_BINARY)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:  # OSError: BadGzipFile
        raise RouterError(f"{archive.name} is not a valid archive: {exc}", exit_code=CHECK_FAILED,
                          hint="the file is damaged or not a release archive: download it again") from None
    os.chmod(dest, 0o755)
    return dest, PurePosixPath(found).as_posix()


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return "link"
    if member.isdev():
        return "device"
    return "file" if member.isfile() else "folder" if member.isdir() else "special file"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "device"
    return "folder" if info.is_dir() else "file"


def _check_entries(archive: str, entries: list[tuple[str, str, int]], wanted: tuple[str, ...]) -> int:
    """Refuse the whole archive if any entry is unsafe; return the index of the first name of `wanted` that is a
    regular file at the archive's root."""
    if len(entries) > MAX_MEMBERS:
        raise RouterError(f"unsafe archive {archive}: {len(entries)} entries", exit_code=CHECK_FAILED)
    for name, kind, size in entries:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
            problem = "an absolute path"
        elif ".." in path.parts:
            problem = "a path with '..'"
        elif kind not in ("file", "folder"):
            problem = f"a {kind}"
        elif size > MAX_BINARY:
            problem = f"absurdly large ({size} bytes)"
        else:
            continue
        raise RouterError(f"unsafe archive {archive}: entry {name!r} is {problem}", exit_code=CHECK_FAILED,
                          hint="refusing to extract anything from it; get the archive from a source you trust")
    for member in wanted:
        for index, (name, kind, _) in enumerate(entries):
            if PurePosixPath(name).as_posix() == member and kind == "file":
                return index
    names = ", ".join(name for name, _, _ in entries) or "nothing"
    raise RouterError(f"{archive} does not contain {' or '.join(wanted)} (it holds: {names})", exit_code=CHECK_FAILED,
                      hint="this is not a CLIProxyAPI or CLIProxyAPIPlus release archive")


def _stage(folder: Path, src: Path | bytes, mode: int) -> Path:
    """A hidden copy of `src` (a file or bytes) in `folder`, fsynced, ready to be renamed into place."""
    fd, name = tempfile.mkstemp(prefix=".staged-", dir=folder)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(src, bytes):
                out.write(src)
            else:
                with open(src, "rb") as handle:
                    shutil.copyfileobj(handle, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _install(layout: Layout, staged: Path, manifest: dict) -> None:
    """Keep the current binary and manifest as `.previous`, then put the new pair in place, by renames only."""
    bin_dir = ensure_dir(layout.bin_dir)
    moves: list[tuple[Path, Path]] = []
    try:
        with _writing(bin_dir), layout.lock():
            if layout.cliproxy_binary.exists():
                moves.append((_stage(bin_dir, layout.cliproxy_binary, 0o755), layout.cliproxy_previous_binary))
                if layout.bin_manifest.exists():
                    moves.append((_stage(bin_dir, layout.bin_manifest, 0o644), layout.bin_previous_manifest))
            moves.append((_stage(bin_dir, staged, 0o755), layout.cliproxy_binary))
            moves.append((_stage(bin_dir, json.dumps(manifest, indent=2).encode() + b"\n", 0o644),
                          layout.bin_manifest))
            if layout.cliproxy_binary.exists() and not layout.bin_manifest.exists():
                layout.bin_previous_manifest.unlink(missing_ok=True)  # it described an older binary
            for src, dst in moves:
                os.replace(src, dst)
    finally:
        for src, _ in moves:
            src.unlink(missing_ok=True)


# --------------------------------------------------------------------------- status and rollback

def status(cfg: RouterConfig) -> dict:
    """The installed binary (manifest, whether it still matches it, the version it reports), the one kept for
    rollback, the pinned release, and the LiteLLM runner."""
    layout = cfg.layout
    manifest = read_manifest(layout.bin_manifest)
    installed = layout.cliproxy_binary.is_file()
    data = {"path": str(layout.cliproxy_binary), "installed": installed, "manifest": manifest,
            "intact": None, "binary_version": None, "problem": None,
            "pinned": {"repository": cfg.bootstrap.cliproxy_repository, "version": cfg.bootstrap.cliproxy_version},
            "previous": (read_manifest(layout.bin_previous_manifest) or {}).get("version")
            or ("unknown version" if layout.cliproxy_previous_binary.is_file() else None),
            "litellm_runner": str(layout.litellm_runner) if layout.litellm_runner.is_file() else None,
            "litellm_version": runner.litellm_available()[1]}
    if installed:
        data["intact"] = bool(manifest) and sha256_file(layout.cliproxy_binary) == manifest.get("binary_sha256")
        try:
            data["binary_version"] = binary_version(layout.cliproxy_binary)
        except RouterError as exc:
            data["problem"] = exc.message
    return data


def _swap(a: Path, b: Path) -> None:
    """Exchange two files by renames; a missing one simply moves across."""
    tmp = a.with_name(f".{a.name}.swap")
    if a.exists():
        os.replace(a, tmp)
    if b.exists():
        os.replace(b, a)
    if tmp.exists():
        os.replace(tmp, b)


def rollback(cfg: RouterConfig) -> dict:
    """Swap the binary and manifest with their `.previous` pair (a second rollback undoes the first)."""
    layout = cfg.layout
    log = events.for_config(cfg)
    try:
        if not layout.cliproxy_previous_binary.is_file():
            raise RouterError("no previous CLIProxyAPIPlus binary to roll back to",
                              hint="one is kept when `llm-router bootstrap download` replaces a binary",
                              exit_code=NOT_FOUND)
        with _writing(layout.bin_dir), layout.lock():
            _swap(layout.cliproxy_binary, layout.cliproxy_previous_binary)
            _swap(layout.bin_manifest, layout.bin_previous_manifest)
    except RouterError as exc:
        log.append("bootstrap_rollback", service=SERVICE, result="error", detail={"error": exc.message})
        raise
    current = read_manifest(layout.bin_manifest) or {}
    outcome = {"version": current.get("version"), "sha256": current.get("sha256"),
               "previous": (read_manifest(layout.bin_previous_manifest) or {}).get("version"),
               "path": str(layout.cliproxy_binary), "restart_needed": _running(cfg)}
    log.append("bootstrap_rollback", service=SERVICE, result="ok",
               detail={k: outcome[k] for k in ("version", "sha256", "previous")})
    return outcome
