"""bootstrap.download, bootstrap.status, bootstrap.rollback"""
from invoke import Collection, task

from ..commands import bootstrap as cmd
from ._common import JSON_HELP, run


@task(help={"cliproxy_version": 'a release tag like v6.9.28-0, or "latest" (default: bootstrap.cliproxy_version)',
            "repository": "OWNER/NAME to download from (default: bootstrap.cliproxy_repository)",
            "archive": "install this release archive instead of downloading",
            "checksums": "checksums.txt for --archive (default: the one beside it)",
            "force": "reinstall even if this version is already installed",
            "insecure_skip_checksum": "install even without checksums.txt (NOT advised)",
            "json": JSON_HELP}, auto_shortflags=False)
def download(c, cliproxy_version="", repository="", archive="", checksums="", force=False,
             insecure_skip_checksum=False, json=False):
    """Download, verify and install CLIProxyAPIPlus, and generate the LiteLLM runner."""
    run("bootstrap download", cmd.download, json=json, version=cliproxy_version or None,
        repository=repository or None, archive=archive or None, checksums=checksums or None, force=force,
        insecure_skip_checksum=insecure_skip_checksum)


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def status(c, json=False):
    """Show the installed CLIProxyAPIPlus binary, its manifest and the pinned release."""
    run("bootstrap status", cmd.status, json=json)


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def rollback(c, json=False):
    """Switch back to the CLIProxyAPIPlus binary kept before the last download."""
    run("bootstrap rollback", cmd.rollback, json=json)


ns = Collection("bootstrap", download, status, rollback)
