"""`bootstrap download|status|rollback`: the library's typed outcomes become the JSON data here (`to_dict()`)."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from .. import bootstrap
from ..errors import CHECK_FAILED, NOT_FOUND, USAGE, RouterError
from ..output import Result, table
from . import Ctx

RESTART = "llm-router service restart cliproxyapi_plus"


class ProgressBar:
    """`[######........] 12.3/40.0 MiB  2.1 MiB/s` redrawn in place on a terminal, at most ten times a second."""

    WIDTH = 30

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.start = self.last = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.drawn and now - self.last < 0.1 and done != total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-3)
        if total:
            filled = self.WIDTH * done // total
            size = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {_mib(done)}/{_mib(total)} MiB"
        else:
            size = f"{_mib(done)} MiB"
        self.stream.write(f"\r{size}  {_mib(rate)} MiB/s ")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


def _release(version, binary_version, repository) -> str:
    reported = f" ({binary_version})" if binary_version else ""
    return f"{version}{reported} from {repository}"


def download(ctx: Ctx, version: str | None = None, repository: str | None = None, archive: str | None = None,
             checksums: str | None = None, force: bool = False, insecure_skip_checksum: bool = False) -> Result:
    if checksums and not archive:
        raise RouterError("--checksums is only used with --archive", hint="downloads use the release's checksums.txt",
                          exit_code=USAGE)
    if archive and version:
        raise RouterError("--archive takes its version from the file name; drop --cliproxy-version", exit_code=USAGE)
    bar = ProgressBar(sys.stderr) if not ctx.json and sys.stderr.isatty() else None
    try:
        outcome = bootstrap.install(ctx.config, version=version, repository=repository, archive=archive,
                                    checksums=checksums, force=force, insecure_skip_checksum=insecure_skip_checksum,
                                    progress=bar)
    finally:
        if bar:
            bar.close()
    release = _release(outcome.version, outcome.binary_version, outcome.repository)
    if outcome.result == "unchanged":
        lines = [f"CLIProxyAPIPlus {release} is already installed with sha256 {outcome.sha256}; "
                 "nothing to do (--force reinstalls)"]
    else:
        rows = [["binary", outcome.path], ["asset", outcome.asset], ["sha256", outcome.sha256]]
        if outcome.line in bootstrap.cliproxy_lines.LINES:
            rows.append(["line", bootstrap.cliproxy_lines.LINES[outcome.line].title])
        lines = [f"installed CLIProxyAPIPlus {release}", *_indent(table(rows))]
    litellm = f"litellm {outcome.litellm_version}" if outcome.litellm_version else "LiteLLM not installed"
    lines.append(f"LiteLLM runner {outcome.litellm_runner} ({litellm})")
    if outcome.restart_needed:
        lines.append(f"CLIProxyAPIPlus is running the old binary: restart it to use {outcome.version}: {RESTART}")
    return Result("bootstrap download", data=outcome.to_dict(), text="\n".join(lines),
                  warnings=list(outcome.warnings))


def status(ctx: Ctx) -> Result:
    report = bootstrap.status(ctx.config)
    manifest = report.manifest or {}
    pinned = report.pinned
    if not report.installed:
        head, code = "CLIProxyAPIPlus  NOT INSTALLED  run `llm-router bootstrap download`", NOT_FOUND
    elif report.problem:
        head, code = f"CLIProxyAPIPlus  BROKEN  {report.problem}", CHECK_FAILED
    elif not report.intact:
        head, code = ("CLIProxyAPIPlus  MODIFIED  the binary does not match manifest.json; "
                      "`llm-router bootstrap download --force` reinstalls it", CHECK_FAILED)
    else:
        verified = "verified" if manifest.get("verified") else "NOT verified (--insecure-skip-checksum)"
        release = _release(manifest.get("version"), report.binary_version, manifest.get("repository"))
        head, code = f"CLIProxyAPIPlus  INSTALLED  {release}, {verified}", 0
    rows = [["path", report.path]]
    if manifest:
        rows += [["sha256", f"{manifest.get('sha256')} ({manifest.get('asset')})"],
                 ["installed", manifest.get("installed_at")]]
        if manifest.get("line") in bootstrap.cliproxy_lines.LINES:
            rows.append(["line", bootstrap.cliproxy_lines.LINES[manifest["line"]].title])
    rows.append(["pinned", f"{pinned.version} from {pinned.repository} (bootstrap in routertool.yaml)"])
    if report.previous:
        rows.append(["previous", f"{report.previous} (`llm-router bootstrap rollback` switches to it)"])
    litellm = f"litellm {report.litellm_version}" if report.litellm_version else \
        "LiteLLM not installed: uv sync --group runtime"
    rows.append(["litellm", f"{report.litellm_runner or 'runner not generated yet'}, {litellm}"])
    text = "\n".join([head, *_indent(table(rows))])
    return Result("bootstrap status", data=report.to_dict(), text=text, ok=code == 0, exit_code=code)


def rollback(ctx: Ctx) -> Result:
    outcome = bootstrap.rollback(ctx.config)
    lines = [f"CLIProxyAPIPlus is now {outcome.version or 'the previous binary (no manifest)'}; "
             f"{outcome.previous or 'the replaced binary'} is kept as previous (roll back again to undo)"]
    if outcome.restart_needed:
        lines.append(f"CLIProxyAPIPlus is running the replaced binary: restart it to use this one: {RESTART}")
    return Result("bootstrap rollback", data=outcome.to_dict(), text="\n".join(lines))


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("bootstrap", help="download, verify, install and roll back the CLIProxyAPIPlus binary",
                            parents=[common])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    dl = actions.add_parser("download", parents=[common],
                            help="install the pinned release (verified against checksums.txt) and the LiteLLM runner")
    dl.add_argument("--cliproxy-version", metavar="TAG", dest="version",
                    help='a release tag like v6.9.28-0, or "latest" (default: bootstrap.cliproxy_version)')
    dl.add_argument("--repository", metavar="OWNER/NAME",
                    help="the GitHub repository to download from (default: bootstrap.cliproxy_repository)")
    dl.add_argument("--archive", metavar="PATH",
                    help="install this release archive instead of downloading (offline machines, mirrors)")
    dl.add_argument("--checksums", metavar="PATH", help="checksums.txt for --archive (default: the one beside it)")
    dl.add_argument("--force", action="store_true", help="reinstall even if this version is already installed")
    dl.add_argument("--insecure-skip-checksum", action="store_true",
                    help="install even without checksums.txt (NOT advised: the binary is not verified)")
    dl.set_defaults(run=lambda ctx, a: download(ctx, version=a.version, repository=a.repository, archive=a.archive,
                                                checksums=a.checksums, force=a.force,
                                                insecure_skip_checksum=a.insecure_skip_checksum))
    actions.add_parser("status", parents=[common], help="the installed binary, its manifest and the pinned release") \
        .set_defaults(run=lambda ctx, a: status(ctx))
    actions.add_parser("rollback", parents=[common], help="switch back to the binary kept before the last download") \
        .set_defaults(run=lambda ctx, a: rollback(ctx))
