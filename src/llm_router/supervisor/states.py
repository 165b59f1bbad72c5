"""The supervisor's state machines, one enum each (a leaf module: it imports nothing).

`ServiceState` is what `status` reports for a service from its pid file and the live process; `WatchState` is the
state of a service under `service watch` (supervisord's names), changed only by `watch.transition`.
"""
from __future__ import annotations

from enum import StrEnum


class ServiceState(StrEnum):
    STOPPED = "STOPPED"  # no pid file
    RUNNING = "RUNNING"  # the recorded process is alive and proven ours
    STALE = "STALE"  # a pid file whose process is gone or not proven ours


class WatchState(StrEnum):
    STARTING = "STARTING"  # being started by the watch
    RUNNING = "RUNNING"  # up and ready
    BACKOFF = "BACKOFF"  # crashed or unready; restarted after a delay
    FATAL = "FATAL"  # too many failed starts in the window: left alone
