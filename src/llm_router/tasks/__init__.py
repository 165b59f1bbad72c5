"""The invoke front end: one collection per noun, mirroring `llm-router`'s commands. `tasks.py` at the repo
root exposes `namespace`. Tasks only map their flags onto `llm_router.commands`."""
from __future__ import annotations

import importlib

from invoke import Collection

TASK_MODULES = ("config", "events", "service", "check", "bootstrap", "auth", "profile", "bench", "connect", "usage")
ROOT_TASKS = (("stack", "up"), ("stack", "down"), ("demo", "demo"))  # (module, task) at the top level


def build_namespace() -> Collection:
    namespace = Collection()
    for name in TASK_MODULES:
        namespace.add_collection(importlib.import_module(f".{name}", __package__).ns)
    for module, name in ROOT_TASKS:
        namespace.add_task(getattr(importlib.import_module(f".{module}", __package__), name))
    return namespace


namespace = build_namespace()
