"""The usage store: one SQLite file under `.router/runtime/usage/` written from inside LiteLLM, read by
`llm-router usage`, `models` and `cooldown` (see docs/usage.md).

This module is the store's one import name (`from . import usage as store`); the store is split by job into
  usage_schema.py   file names, tables, columns, outcome/protocol names, the retention settings and their checks
  usage_writer.py   the writer inside each LiteLLM worker: bounded queue, writer thread, batching, cooldown
                    episodes, bounds (age and size), a corrupt file moved aside
  usage_control.py  control.json, the CLI's reset requests to the writers
  usage_queries.py  the read-only `Reader` and the aggregations the reports use (summarize, per_hour, percentile)
  usage_share.py    the rows shared between instances through a Redis stream, the instance id
Every name is re-exported here, so callers need not know which file holds it.
"""
from __future__ import annotations

from .usage_control import KEEP_RESETS, MAX_CONTROL_BYTES, read_control, request_reset
from .usage_queries import BY_KEYS, Reader, per_hour, percentile, summarize
from .usage_schema import (
    ADDED_COLUMNS,
    COLUMNS,
    CONTROL_NAME,
    DB_NAME,
    DEFAULT_MAX_DAYS,
    DEFAULT_MAX_MB,
    INDEXES,
    MAX_MAX_DAYS,
    MAX_MAX_MB,
    MIN_MAX_MB,
    OUTCOMES,
    PROTOCOLS,
    SCHEMA,
    Settings,
    check_settings,
    control_path,
    db_path,
    settings_from,
)
from .usage_share import (
    INSTANCE_NAME,
    LAST_ID_KEY,
    MAX_READS,
    MAX_STREAM,
    MIN_STREAM,
    PUSH_COUNT,
    PUSHED_KEY,
    READ_COUNT,
    RETRY_AFTER,
    SHARED_COLUMNS,
    STREAM,
    TIMEOUT,
    Connection,
    RedisError,
    RedisTarget,
    Share,
    instance_id,
    stream_length,
)
from .usage_writer import (
    BATCH,
    BUSY_TIMEOUT_MS,
    FLUSH_INTERVAL,
    HEARTBEAT_INTERVAL,
    POLL_INTERVAL,
    PRUNE_INTERVAL,
    QUEUE_SIZE,
    WAL_PAGES,
    CooldownState,
    CorruptDatabase,
    Writer,
    migrate,
    move_aside,
    open_writer_db,
)

__all__ = [
    "ADDED_COLUMNS", "INDEXES", "INSTANCE_NAME", "LAST_ID_KEY", "MAX_READS", "PUSH_COUNT", "PUSHED_KEY",
    "MAX_STREAM", "MIN_STREAM",
    "READ_COUNT", "RETRY_AFTER", "SHARED_COLUMNS", "STREAM", "TIMEOUT", "Connection", "RedisError", "RedisTarget",
    "Share", "instance_id", "migrate", "stream_length",
    "BATCH", "BUSY_TIMEOUT_MS", "BY_KEYS", "COLUMNS", "CONTROL_NAME", "DB_NAME", "DEFAULT_MAX_DAYS",
    "DEFAULT_MAX_MB", "FLUSH_INTERVAL", "HEARTBEAT_INTERVAL", "KEEP_RESETS", "MAX_CONTROL_BYTES", "MAX_MAX_DAYS",
    "MAX_MAX_MB", "MIN_MAX_MB", "OUTCOMES", "POLL_INTERVAL", "PROTOCOLS", "PRUNE_INTERVAL", "QUEUE_SIZE", "SCHEMA",
    "WAL_PAGES", "CooldownState", "CorruptDatabase", "Reader", "Settings", "Writer", "check_settings",
    "control_path", "db_path", "move_aside", "open_writer_db", "per_hour", "percentile", "read_control",
    "request_reset", "settings_from", "summarize",
]
