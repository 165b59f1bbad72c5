"""Codex and GitHub Copilot logins through CLIProxyAPIPlus, the Codex CLI token import, and account listing.

Library functions return account descriptions (provider, account, email, plan, expiry; never a token) and raise
RouterError. Progress during a login reaches the user through a `notify(str)` callback.
"""
from .codex_import import default_source, import_codex
from .files import CODEX, COPILOT, JWTError, describe, jwt_claims
from .login import INTERRUPTED, callback_state, codex_login, copilot_login, has_display
from .status import status

__all__ = ["CODEX", "COPILOT", "INTERRUPTED", "JWTError", "callback_state", "codex_login", "copilot_login",
           "default_source", "describe", "has_display", "import_codex", "jwt_claims", "status"]
