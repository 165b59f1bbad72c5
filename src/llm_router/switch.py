"""Make a profile live: prove it, write it, serve it (a worker swap or a restart), roll back on failure, and
record the switch; and finish a switch that was interrupted half-way (`reconcile`).

This is the only place that takes the runtime lock for a switch, once: everything it calls below it
(profiles.write_active, litellm.service.serve_active, the supervisor's restart_held) expects the lock held.
A switch writes the journal (journal.py) before it changes a file, so Ctrl-C rolls back in the command and a
kill -9 is rolled back by the next command that takes the lock (start, stop, profile set: `reconcile`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import events, journal, profiles
from .config import RouterConfig
from .errors import RouterError
from .litellm import prove
from .litellm import service as litellm_service
from .supervisor import services as supervisor

SWITCH_EVENT = profiles.SWITCH_EVENT


@dataclass
class SwitchResult:
    """What `profile set` did: the new active profile, the previous one, how the running LiteLLM took it."""
    name: str
    sha256: str
    time: str
    template: str
    config: str
    previous: str | None
    applied: dict  # {"how": "worker swap" | "restart" | "not running", timings..., "notes": [...]}
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def how(self) -> str:
        return self.applied["how"]

    def to_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "time": self.time, "template": self.template,
                "config": self.config, "previous": self.previous, "applied": self.applied, "seconds": self.seconds}


def set_profile(cfg: RouterConfig, name: str, deep: bool = False) -> SwitchResult:
    """Render, validate and prove the profile, activate it, and make a running LiteLLM serve it (restoring the
    previous profile if it does not become ready)."""
    started = time.monotonic()
    rendered = profiles.checked(cfg, profiles.find(cfg, name))
    if deep:
        prove.validate_deep(cfg, rendered.profile.name, rendered.text)
    if litellm_service.litellm_mode(cfg) == "gunicorn":
        # A live worker that cannot load its config stops the whole gunicorn server: prove it first.
        prove.ensure_proven(cfg, name, rendered.text)
    with supervisor.locked(cfg):
        notes = reconcile(cfg)  # an earlier switch that was interrupted is rolled back first
        previous = journal.read_active(cfg.layout)
        info, saved = profiles.write_active(cfg, rendered, journal_from=previous["name"] if previous else "")
        try:
            applied = _serve(cfg, rendered.profile.name, previous, saved)
        except BaseException as exc:
            if not isinstance(exc, RouterError):  # Ctrl-C: rolled back like any failure (`_serve`), recorded
                _event(cfg, name, "rolled_back", {"error": "interrupted",
                                                  "restored": previous["name"] if previous else None})
            raise
        journal.clear(cfg.layout)
        applied["notes"] = [*notes, *applied.get("notes", [])]
        detail = {"from": previous["name"] if previous else None, "sha256": info["sha256"],
                  "applied": applied["how"], "seconds": round(time.monotonic() - started, 3)}
        for key in ("worker_ready_s", "switch_s", "replaced_hung"):
            if key in applied:
                detail[key] = applied[key]
        _event(cfg, name, "ok", detail)
    return SwitchResult(**info, previous=detail["from"], applied=applied, seconds=detail["seconds"])


def ensure_active(cfg: RouterConfig) -> dict:
    """The active profile, activating the default one when none is (profiles.ensure_active, under the lock)."""
    with supervisor.locked(cfg):
        return profiles.ensure_active(cfg)


def _serve(cfg: RouterConfig, name: str, previous: dict | None, saved: dict) -> dict:
    """Make a running LiteLLM serve the new profile. When that fails, the previous files are put back (through
    `restore`) and served again; the rollback is recorded and raised."""
    try:
        return litellm_service.serve_active(cfg, restore=lambda: profiles.restore_files(saved, cfg.layout))
    except RouterError as exc:
        restored = previous["name"] if previous else None
        _event(cfg, name, "rolled_back", {"error": exc.message, "restored": restored})
        where = f"the previous profile '{restored}' is active again" if restored else "no profile was active before"
        raise RouterError(f"profile '{name}' was not applied ({where}): {exc.message}",
                          hint=exc.hint or "see `llm-router events` and the LiteLLM log",
                          exit_code=exc.exit_code) from None


def reconcile(cfg: RouterConfig, workers_too: bool = True) -> list[str]:
    """Finish what an interrupted profile switch left (the caller holds the runtime lock: the stack's start and
    stop, and `set_profile`): put the files back from the switch journal, and bring a gunicorn master back to
    the workers it should have, serving the active file. Returns what was done, for the command's notes."""
    layout = cfg.layout
    notes = []
    pending, problem = journal.read(layout)
    if pending is not None and pending.ours:  # this process's own switch, in progress: not interrupted
        return notes
    if pending is not None:
        journal.restore(pending)
        journal.clear(layout)
        _event(cfg, pending.profile, "rolled_back", {"error": "the switch was interrupted",
                                                     "restored": pending.previous})
        notes.append(f"an interrupted switch to profile '{pending.profile}' was rolled back"
                     + (f"; '{pending.previous}' is active again" if pending.previous else ""))
    elif problem:
        journal.clear(layout)
        notes.append(f"{problem}: removed")
    if workers_too:
        notes += litellm_service.reconcile_workers(cfg, after_interrupted_switch=pending is not None)
    return notes


def _event(cfg: RouterConfig, profile: str, result: str, detail: dict) -> None:
    events.for_config(cfg).append(SWITCH_EVENT, service="litellm", profile=profile, result=result, detail=detail)
