"""Install the CLIProxyAPI binary of any line (Plus 6.x, mainline 7.x, a Plus fork on 7.x) and keep it: the
operations `install` (download or take a local archive, verify, extract, put in place), `status` and `rollback`,
each returning a small frozen dataclass whose `to_dict()` is the command's JSON data.

The release lookup, the asset choice, checksums and HTTP live in `releases.py`, the safe extraction in
`archives.py`, the manifest and the `-h` banner check in `cliproxy_binary.py`; their public names are re-exported
here, so `bootstrap.probe`, `bootstrap.sha256_file`, ... keep working (patch a constant such as BACKOFF in its own
module).
The binary is installed as `layout.cliproxy_binary` whatever it was called in the archive, and the manifest records
the line, the asset and the binary's name.

Fail-closed. Nothing reaches `.router/runtime/bin/` until the archive's SHA-256 matches the release's
checksums.txt (and the API's `digest` when present), the binary came out of the archive safely and it prints its
version banner, naming the release's version, from a `-h` that exits 0 as the real binary's does. Downloads and
extraction happen in a temp folder under `.router/runtime/tmp/` that is always removed (one left by a killed run is
removed by the next); the install stages every new file inside bin/ first and then only renames, so a failure
leaves the binary, its manifest and the `.previous` pair as they were.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cliproxy_lines, events, releases
from .archives import CHUNK, Progress, extract_binary, writing
from .cliproxy_binary import RUN_CHECK_TIMEOUT, binary_version, checked_version, read_manifest
from .config import RouterConfig
from .config_schema import REPOSITORY
from .errors import CHECK_FAILED, NOT_FOUND, USAGE, RouterError
from .fsutil import ensure_dir
from .layout import Layout
from .litellm import runner
from .releases import binary_names, normalize_tag, platform_id, sha256_file

# Re-exported, so every name this module had before the split keeps working (cliproxy.py, checks/doctor.py and the
# tests use several); a constant read by the moved code is patched in its own module.
# isort: off
import selectors  # noqa: F401  transitional: tests/test_hostile_state.py patches `bootstrap.selectors`
from .archives import FS_HINT, MAX_BINARY, MAX_MEMBERS  # noqa: F401
from .cliproxy_binary import BANNER, MAX_PROBE_OUTPUT, probe  # noqa: F401
from .releases import (ARCHES, ASSET, ATTEMPTS, BACKOFF, BINARIES, BINARY, CHECKSUMS, ERRNO_TEXT,  # noqa: F401
                       LOOPBACK_HOSTS, MAX_DOWNLOAD, RELEASE_TAG, REPO_GONE_HINT, SHA256, TIMEOUT, UNVERIFIED_HINT,
                       Source, asset_name, parse_checksums)
# isort: on

SERVICE = "cliproxyapi_plus"
WORK_PREFIX = "bootstrap-"  # temp folders under runtime/tmp/, each holding WORK_LOCK while its run lives
WORK_LOCK = ".owner.lock"
STALE_UNLOCKED = 60.0  # seconds after which a temp folder without its lock file is an interrupted run's


# --------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class InstallOutcome:
    """What `install` did: `result` installed|unchanged, the manifest of the binary now in place (None only when an
    unchanged binary has none), its path, the LiteLLM runner, and whether the running service needs a restart."""

    result: str
    manifest: dict | None
    path: str
    litellm_runner: str
    litellm_version: str | None
    restart_needed: bool
    warnings: tuple[str, ...] = ()

    def _field(self, key: str):
        return (self.manifest or {}).get(key)

    @property
    def version(self) -> str | None:
        return self._field("version")

    @property
    def sha256(self) -> str | None:
        return self._field("sha256")

    @property
    def repository(self) -> str | None:
        return self._field("repository")

    @property
    def asset(self) -> str | None:
        return self._field("asset")

    @property
    def line(self) -> str | None:
        return self._field("line")

    @property
    def binary_version(self) -> str | None:
        return self._field("binary_version")

    def to_dict(self) -> dict:
        """`bootstrap download`'s JSON data: result, the manifest's fields, then the rest."""
        return {"result": self.result, **(self.manifest or {}), "path": self.path,
                "litellm_runner": self.litellm_runner, "litellm_version": self.litellm_version,
                "restart_needed": self.restart_needed, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class Pin:
    """The release routertool.yaml pins (`bootstrap.cliproxy_repository`, `bootstrap.cliproxy_version`)."""

    repository: str
    version: str

    def to_dict(self) -> dict:
        return {"repository": self.repository, "version": self.version}


@dataclass(frozen=True)
class StatusReport:
    """The installed binary (its manifest, whether it still matches it, the version it reports or the problem
    running it), the pinned release, the version kept for rollback, and the LiteLLM runner."""

    path: str
    installed: bool
    manifest: dict | None
    intact: bool | None
    binary_version: str | None
    problem: str | None
    pinned: Pin
    previous: str | None
    litellm_runner: str | None
    litellm_version: str | None

    def to_dict(self) -> dict:
        """`bootstrap status`'s JSON data."""
        return {"path": self.path, "installed": self.installed, "manifest": self.manifest, "intact": self.intact,
                "binary_version": self.binary_version, "problem": self.problem, "pinned": self.pinned.to_dict(),
                "previous": self.previous, "litellm_runner": self.litellm_runner,
                "litellm_version": self.litellm_version}


@dataclass(frozen=True)
class RollbackOutcome:
    """The binary now in place after a rollback, the one now kept as previous, and whether to restart."""

    version: str | None
    sha256: str | None
    previous: str | None
    path: str
    restart_needed: bool

    def to_dict(self) -> dict:
        """`bootstrap rollback`'s JSON data."""
        return {"version": self.version, "sha256": self.sha256, "previous": self.previous, "path": self.path,
                "restart_needed": self.restart_needed}


# --------------------------------------------------------------------------- install

def install(cfg: RouterConfig, version: str | None = None, repository: str | None = None,
            archive: str | os.PathLike | None = None, checksums: str | os.PathLike | None = None,
            force: bool = False, insecure_skip_checksum: bool = False,
            progress: Progress | None = None) -> InstallOutcome:
    """Install the release's CLIProxyAPIPlus binary for this machine (or from a local `archive`).

    Raises RouterError (nothing installed) on any failure. Logs `bootstrap_download`.
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
            outcome = dataclasses.replace(outcome, warnings=(
                *outcome.warnings,
                f"{repository} is not bootstrap.cliproxy_repository ({configured}): the next `bootstrap download` "
                f"goes back to that one; to keep this line set `cliproxy_repository: {repository}` and "
                f"`cliproxy_version: {outcome.version}` (or latest) under bootstrap: in routertool.yaml"))
    except RouterError as exc:
        log.append("bootstrap_download", service=SERVICE, result="error",
                   detail={"version": tag, "repository": repository, "error": exc.message})
        raise
    log.append("bootstrap_download", service=SERVICE, result=outcome.result,
               detail={k: outcome._field(k) for k in ("version", "sha256", "repository", "asset", "line", "verified")})
    return outcome


def _download(cfg: RouterConfig, tag: str, repository: str, archive, checksums, force: bool, insecure: bool,
              progress: Progress | None) -> InstallOutcome:
    layout = cfg.layout
    os_name, arch = platform_id()
    with writing(layout.tmp_dir):
        stale = clean_stale_work(layout)
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=ensure_dir(layout.tmp_dir)))
        owner = os.open(work / WORK_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX)  # released by the kernel when this process dies, however it dies
        outcome = _download_into(cfg, work, tag, repository, archive, checksums, force, insecure, progress,
                                 os_name, arch)
        if stale:
            outcome = dataclasses.replace(outcome, warnings=(
                *outcome.warnings, f"removed {len(stale)} temp folder(s) left by an interrupted download: "
                + ", ".join(stale)))
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
                   insecure: bool, progress: Progress | None, os_name: str, arch: str) -> InstallOutcome:
    layout = cfg.layout
    if archive:
        source = releases.local_source(Path(archive), checksums, repository, os_name, arch, insecure)
    else:
        with releases.open_session() as session:
            source = releases.remote_source(session, cfg.bootstrap.github_api_url, repository, tag, os_name, arch,
                                            insecure)
            if not force and source.expected and _unchanged(layout, source.tag, source.expected):
                return _outcome(cfg, "unchanged", read_manifest(layout.bin_manifest), insecure)
            source.path = work / source.asset
            releases.fetch(session, source.origin, f"release asset {source.asset}", dest=source.path, progress=progress)
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
                # RUN_CHECK_TIMEOUT read here, so patching `bootstrap.RUN_CHECK_TIMEOUT` (tests) still reaches it
                "binary_version": checked_version(staged, source.tag, RUN_CHECK_TIMEOUT),
                "binary_sha256": sha256_file(staged),
                "source": source.origin, "installed_at": events.now_iso()}
    _put_in_place(layout, staged, manifest)
    return _outcome(cfg, "installed", manifest, insecure)


def _outcome(cfg: RouterConfig, result: str, manifest: dict | None, insecure: bool) -> InstallOutcome:
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
    return InstallOutcome(result=result, manifest=manifest, path=str(layout.cliproxy_binary),
                          litellm_runner=str(runner_path), litellm_version=litellm_version,
                          restart_needed=result == "installed" and _running(cfg), warnings=tuple(warnings))


def _running(cfg: RouterConfig) -> bool:
    from . import stack

    return stack.is_running(cfg, SERVICE)


def _unchanged(layout: Layout, tag: str, sha: str) -> bool:
    """The installed binary is `tag` from an archive with this sha256, and has not changed since."""
    manifest = read_manifest(layout.bin_manifest) or {}
    if (manifest.get("version"), manifest.get("sha256")) != (tag, sha) or not layout.cliproxy_binary.is_file():
        return False
    return sha256_file(layout.cliproxy_binary) == manifest.get("binary_sha256")


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


def _put_in_place(layout: Layout, staged: Path, manifest: dict) -> None:
    """Keep the current binary and manifest as `.previous`, then put the new pair in place, by renames only."""
    bin_dir = ensure_dir(layout.bin_dir)
    moves: list[tuple[Path, Path]] = []
    try:
        with writing(bin_dir), layout.lock():
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

def status(cfg: RouterConfig) -> StatusReport:
    """The installed binary (manifest, whether it still matches it, the version it reports), the one kept for
    rollback, the pinned release, and the LiteLLM runner."""
    layout = cfg.layout
    manifest = read_manifest(layout.bin_manifest)
    installed = layout.cliproxy_binary.is_file()
    previous = (read_manifest(layout.bin_previous_manifest) or {}).get("version") \
        or ("unknown version" if layout.cliproxy_previous_binary.is_file() else None)
    litellm_runner = str(layout.litellm_runner) if layout.litellm_runner.is_file() else None
    litellm_version = runner.litellm_available()[1]
    intact = reported = problem = None
    if installed:
        intact = bool(manifest) and sha256_file(layout.cliproxy_binary) == manifest.get("binary_sha256")
        try:
            reported = binary_version(layout.cliproxy_binary)
        except RouterError as exc:
            problem = exc.message
    return StatusReport(path=str(layout.cliproxy_binary), installed=installed, manifest=manifest, intact=intact,
                        binary_version=reported, problem=problem,
                        pinned=Pin(cfg.bootstrap.cliproxy_repository, cfg.bootstrap.cliproxy_version),
                        previous=previous, litellm_runner=litellm_runner, litellm_version=litellm_version)


def _swap(a: Path, b: Path) -> None:
    """Exchange two files by renames; a missing one simply moves across."""
    tmp = a.with_name(f".{a.name}.swap")
    if a.exists():
        os.replace(a, tmp)
    if b.exists():
        os.replace(b, a)
    if tmp.exists():
        os.replace(tmp, b)


def rollback(cfg: RouterConfig) -> RollbackOutcome:
    """Swap the binary and manifest with their `.previous` pair (a second rollback undoes the first)."""
    layout = cfg.layout
    log = events.for_config(cfg)
    try:
        if not layout.cliproxy_previous_binary.is_file():
            raise RouterError("no previous CLIProxyAPIPlus binary to roll back to",
                              hint="one is kept when `llm-router bootstrap download` replaces a binary",
                              exit_code=NOT_FOUND)
        with writing(layout.bin_dir), layout.lock():
            _swap(layout.cliproxy_binary, layout.cliproxy_previous_binary)
            _swap(layout.bin_manifest, layout.bin_previous_manifest)
    except RouterError as exc:
        log.append("bootstrap_rollback", service=SERVICE, result="error", detail={"error": exc.message})
        raise
    current = read_manifest(layout.bin_manifest) or {}
    outcome = RollbackOutcome(version=current.get("version"), sha256=current.get("sha256"),
                              previous=(read_manifest(layout.bin_previous_manifest) or {}).get("version"),
                              path=str(layout.cliproxy_binary), restart_needed=_running(cfg))
    log.append("bootstrap_rollback", service=SERVICE, result="ok",
               detail={"version": outcome.version, "sha256": outcome.sha256, "previous": outcome.previous})
    return outcome
