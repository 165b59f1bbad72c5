"""usage.show, usage.models, usage.cooldown-reset"""
from invoke import Collection, task

from ..commands import usage as cmd
from ._common import JSON_HELP, run


@task(default=True, help={"since": "window: 30m, 24h, 7d or all", "by": "model, deployment, provider or protocol",
                          "html": "also write a self-contained HTML report to this file", "json": JSON_HELP},
      auto_shortflags=False)
def show(c, since="24h", by="deployment", html="", json=False):
    """Requests, failures, tokens and latency from the usage store."""
    run("usage", cmd.usage, json=json, since=since, by=by, html=html or None)


@task(help={"quota": "also ask CLIProxyAPIPlus for quota", "json": JSON_HELP}, auto_shortflags=False)
def models(c, quota=False, json=False):
    """Every model, its deployments in failover order, their accounts and live state."""
    run("models", cmd.models, json=json, quota=quota)


@task(name="cooldown-reset", help={"deployment": "a deployment id (see usage.models)", "all": "every deployment",
                                   "json": JSON_HELP}, auto_shortflags=False)
def cooldown_reset(c, deployment="", all=False, json=False):  # noqa: A002
    """Clear LiteLLM's (and CLIProxyAPIPlus's) cooldown on the running stack, without a restart."""
    run("cooldown", cmd.cooldown_reset, json=json, deployment=deployment or None, all=all)


ns = Collection("usage", show, models, cooldown_reset)
