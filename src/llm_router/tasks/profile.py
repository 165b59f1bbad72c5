"""profile.list, profile.show, profile.diff, profile.set, profile.prove"""
from invoke import Collection, task

from ..commands import profile as cmd
from ._common import JSON_HELP, run


@task(name="list", help={"json": JSON_HELP}, auto_shortflags=False)
def list_(c, json=False):
    """List the policy profiles: name, active marker, source, file, description."""
    run("profile list", cmd.list_, json=json)


@task(help={"name": "the profile (default: the active one)", "json": JSON_HELP}, auto_shortflags=False)
def show(c, name="", json=False):
    """Print a profile's rendered LiteLLM config."""
    run("profile show", cmd.show, json=json, name=name or None)


@task(help={"a": "first profile", "b": "second profile", "json": JSON_HELP}, auto_shortflags=False)
def diff(c, a, b, json=False):
    """Compare two rendered profiles (unified diff)."""
    run("profile diff", cmd.diff, json=json, a=a, b=b)


@task(name="set", help={"name": "the profile to activate", "deep": "also run `litellm --validate_config` (slow)",
                        "json": JSON_HELP}, auto_shortflags=False)
def set_(c, name, deep=False, json=False):
    """Render, validate and activate a profile; a running LiteLLM switches live (rolled back on failure)."""
    run("profile set", cmd.set_, json=json, name=name, deep=deep)


@task(help={"name": "a profile (repeatable; default: every profile)", "json": JSON_HELP}, iterable=["name"],
      auto_shortflags=False)
def prove(c, name=None, json=False):
    """Load profiles in LiteLLM once and cache the verdict (a live switch needs a proven profile)."""
    run("profile prove", cmd.prove, json=json, names=list(name or []))


ns = Collection("profile", list_, show, diff, set_, prove)
