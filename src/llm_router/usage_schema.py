"""The usage store's shape, shared by its writer and its readers: the file names under `.router/runtime/usage/`,
the tables (`requests`, `cooldowns`, `workers`, `meta`; ADDED_COLUMNS: those a store made earlier lacks), the
columns and outcome/protocol names a row may carry, and the retention settings (`usage_max_days`, `usage_max_mb`)
with their checks (see docs/usage.md).

Nothing here opens the database; `usage_writer.py` writes it, `usage_queries.py` reads it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "usage.db"
CONTROL_NAME = "control.json"
DEFAULT_MAX_DAYS = 30
DEFAULT_MAX_MB = 64
MIN_MAX_MB = 1
MAX_MAX_MB = 100_000
MAX_MAX_DAYS = 3650
OUTCOMES = ("ok", "429", "5xx", "timeout", "refused", "client_error", "error")
PROTOCOLS = ("chat", "responses", "messages", "completions", "embeddings", "other")
# `uid` (a uuid) and `instance` (usage_share.instance_id) last: the writer sets them, whatever a row says
COLUMNS = ("ts", "model", "deployment", "provider", "protocol", "stream", "outcome", "status", "latency_ms",
           "ttft_ms", "tokens_in", "tokens_out", "trace", "error", "rl_requests", "rl_tokens", "uid", "instance")
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, model TEXT, deployment TEXT, provider TEXT, protocol TEXT,
  stream INTEGER, outcome TEXT, status INTEGER, latency_ms REAL, ttft_ms REAL, tokens_in INTEGER,
  tokens_out INTEGER, trace TEXT, error TEXT, rl_requests INTEGER, rl_tokens INTEGER, uid TEXT, instance TEXT);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS cooldowns (
  id INTEGER PRIMARY KEY, deployment TEXT NOT NULL, pid INTEGER, started REAL, until REAL, status INTEGER,
  ended REAL, end_reason TEXT);
CREATE INDEX IF NOT EXISTS cooldowns_deployment ON cooldowns (deployment, started);
CREATE TABLE IF NOT EXISTS workers (
  pid INTEGER PRIMARY KEY, started REAL, seen REAL, written INTEGER, dropped INTEGER, reset_seq INTEGER,
  max_mb INTEGER, max_days INTEGER, unshared INTEGER);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
# columns added since the first release: a store without them gets them (ALTER TABLE) when a writer opens it; its
# old rows keep a null uid (never shared) and get the writer's instance id
ADDED_COLUMNS = (("requests", "uid", "TEXT"), ("requests", "instance", "TEXT"), ("workers", "unshared", "INTEGER"))
# after ADDED_COLUMNS: a row's uuid is unique (INSERT OR IGNORE of the rows shared through Redis, usage_share.py)
INDEXES = "CREATE UNIQUE INDEX IF NOT EXISTS requests_uid ON requests (uid);"


@dataclass(frozen=True)
class Settings:
    max_days: float = DEFAULT_MAX_DAYS
    max_mb: float = DEFAULT_MAX_MB

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


def db_path(usage_dir: Path) -> Path:
    return Path(usage_dir) / DB_NAME


def control_path(usage_dir: Path) -> Path:
    return Path(usage_dir) / CONTROL_NAME


def check_settings(max_days: Any, max_mb: Any) -> list[tuple[str, str]]:
    """(key, problem) for each bad retention value (config.py reports them with their lines)."""
    problems = []
    if isinstance(max_days, bool) or not isinstance(max_days, (int, float)) or not 0 < max_days <= MAX_MAX_DAYS:
        problems.append(("usage_max_days", f"must be a number of days above 0, at most {MAX_MAX_DAYS}"))
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not MIN_MAX_MB <= max_mb <= MAX_MAX_MB:
        problems.append(("usage_max_mb", f"must be a number of megabytes between {MIN_MAX_MB} and {MAX_MAX_MB}"))
    return problems


def settings_from(max_days: Any, max_mb: Any) -> Settings:
    """Settings from possibly bad values: a bad value falls back to its default."""
    bad = {key for key, _ in check_settings(max_days, max_mb)}
    return Settings(max_days=DEFAULT_MAX_DAYS if "usage_max_days" in bad else float(max_days),
                    max_mb=DEFAULT_MAX_MB if "usage_max_mb" in bad else float(max_mb))
