"""Invoke tasks for llm-router (`inv --list`). Thin: every task lives in `llm_router.tasks`."""
from llm_router.tasks import namespace

ns = namespace
