"""The invoke front end: one collection per noun, mirroring `llm-router`'s commands. `tasks.py` at the repo
root exposes `namespace`. Tasks only map their flags onto `llm_router.commands`."""
from __future__ import annotations

import importlib

from invoke import Collection

TASK_MODULES = ("config", "events", "service", "check", "bootstrap", "auth")


def build_namespace() -> Collection:
    namespace = Collection()
    for name in TASK_MODULES:
        namespace.add_collection(importlib.import_module(f".{name}", __package__).ns)
    return namespace


namespace = build_namespace()
