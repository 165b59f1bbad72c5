"""check.security (check.doctor and check.smoke join it)"""
from invoke import Collection, task

from ..commands import check as cmd
from ._common import JSON_HELP, run


@task(help={"fix": "repair modes and append missing ignore rules (never deletes files)", "json": JSON_HELP},
      auto_shortflags=False)
def security(c, fix=False, json=False):
    """Secrets tracked by git, file modes, .gitignore rules; fails on any finding."""
    run("check security", cmd.security, json=json, fix=fix)


ns = Collection("check", security)
