"""Redis for shared LiteLLM router state: the config llm-router renders for the Redis it runs, and a RESP probe.

LiteLLM keeps cooldowns, `allowed_fails` counters and rpm/tpm counters in each worker's memory; with
`router_settings.redis_host/redis_port/redis_password` (or `redis_url`) every worker and every instance shares them
(reference: litellm.md; router.py `Router(redis_...)`, `CooldownCache` re-reads Redis every 1 s). When Redis goes
away LiteLLM keeps serving from its in-memory state.

The managed Redis is Debian's `redis-server`, started by the supervisor (supervisor/services.py, from `SPEC` below)
through the same launch path
as every other service: its own session, the launch marker, the pid file, readiness. It reads everything from
`runtime/redis/redis.conf` (0600): the password is in that file, never on the command line (visible in `ps`).
Loopback by default, `protected-mode yes`, a password always, persistence off (nothing on disk) or AOF.

Redis speaks RESP, not HTTP: readiness is `AUTH <password>` + `PING` answered `+PONG` over a socket, plus a socket
of the launch listening on the port (process.listens_on).
"""
from __future__ import annotations

import time
from pathlib import Path

from . import resp
from .config import REDIS_PASSWORD_ENV, RedisConfig, RouterConfig
from .errors import NOT_FOUND, USAGE, RouterError
from .fsutil import atomic_write, ensure_private_dir
from .supervisor import services as supervisor
from .supervisor.health import Probe
from .supervisor.model import Launch, ServiceSpec
from .supervisor.process import ProcessRecord, log_tail

PROBE_TIMEOUT = 2.0


def password(cfg: RouterConfig, generate: bool = True) -> str | None:
    """The Redis password: REDIS_PASSWORD from the environment or secret_files, or the one generated into
    secrets/ (0600) for a managed Redis. An external Redis's password is never generated."""
    if generate and cfg.redis is not None and cfg.redis.managed:
        from . import keys

        return keys.ensure_key(cfg, REDIS_PASSWORD_ENV)
    return cfg.secret(REDIS_PASSWORD_ENV)


def find_binary(redis: RedisConfig) -> str | None:
    import shutil  # here, like socket below: `status` loads this module and needs neither

    path = Path(redis.binary)
    if path.is_absolute() or "/" in redis.binary:
        return str(path) if path.is_file() else None
    return shutil.which(redis.binary) or next(
        (str(p) for p in (Path("/usr/bin") / redis.binary, Path("/usr/sbin") / redis.binary) if p.is_file()), None)


def _quote(value: str) -> str:
    """A redis.conf string; a value with a line break or control character (a REDIS_PASSWORD from the
    environment, say) could add a directive, so it is refused."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise RouterError("REDIS_PASSWORD (or another redis.conf value) holds a control character or line break",
                          hint="use printable characters only (llm-router generates one when it is unset)",
                          exit_code=USAGE)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(cfg: RouterConfig, secret: str) -> str:
    """redis.conf for the managed Redis (see the module doc). Logs go to stdout, which is the service log."""
    redis, layout = cfg.redis, cfg.layout
    assert redis is not None and redis.managed
    aof = redis.persistence == "aof"
    lines = [
        "# Rendered by llm-router (services.redis in routertool.yaml); rewritten at every start. Do not edit.",
        f"bind {redis.host}",
        f"port {redis.port}",
        "protected-mode yes",
        f"requirepass {_quote(secret)}",
        "daemonize no",
        "supervised no",
        # Redis's process title would overwrite the memory that holds its environment, and with it the launch
        # marker (LLM_ROUTER_LAUNCH_ID) that proves the process ours (process.py): keep the plain command line.
        "set-proc-title no",
        'pidfile ""',
        'logfile ""',
        "loglevel notice",
        "databases 16",
        f"dir {_quote(str(layout.redis_data_dir))}",
        'save ""',  # no RDB snapshots: router state is short-lived (cooldowns, per-minute counters)
        "stop-writes-on-bgsave-error no",
        f"appendonly {'yes' if aof else 'no'}",
        "appendfsync everysec",
        "maxmemory 256mb",
        "maxmemory-policy volatile-ttl",  # router keys carry TTLs; evict the soonest-expiring first
        "timeout 0",
        "tcp-keepalive 60",
    ]
    return "\n".join(lines) + "\n"


def write_config(cfg: RouterConfig) -> Path:
    """Render redis.conf (0600) and its data folder (0700); returns the config path."""
    layout = cfg.layout
    secret = password(cfg)
    ensure_private_dir(layout.redis_dir)
    ensure_private_dir(layout.redis_data_dir)
    atomic_write(layout.redis_config, render_config(cfg, secret), mode=0o600)
    return layout.redis_config


def prepare_argv(cfg: RouterConfig) -> list[str]:
    redis = cfg.redis
    if redis is None or not redis.managed:
        raise RouterError("services.redis is not enabled", hint="set services.redis.enabled: true in routertool.yaml",
                          exit_code=USAGE)
    binary = find_binary(redis)
    if binary is None:
        raise RouterError(f"{redis.binary} is not installed",
                          hint="install Debian's redis-server (`sudo apt-get install redis-server`; llm-router "
                               "starts its own, so `sudo systemctl disable --now redis-server` keeps the system "
                               "one out of the way), or set services.redis.url to an external Redis",
                          exit_code=NOT_FOUND)
    return [binary, str(write_config(cfg))]


# --------------------------------------------------------------------------- RESP

def call(host: str, port: int, secret: str | None, *commands: tuple[str, ...],
         timeout: float = PROBE_TIMEOUT, use_tls: bool = False) -> list[object]:
    """Send `commands` (after AUTH when `secret`) over one connection; the replies, errors as resp.ReplyError
    values. Raises OSError/ConnectionError when Redis cannot be reached."""
    raw = resp.connect(host, port, timeout, use_tls)
    with raw, raw.makefile("rb") as reader:
        sent = ([("AUTH", secret)] if secret else []) + list(commands)
        replies = resp.exchange(raw, reader, sent)
    return replies[1:] if secret else replies


def probe(host: str, port: int, secret: str | None, timeout: float = PROBE_TIMEOUT, use_tls: bool = False) -> Probe:
    """AUTH + PING; ready only on +PONG. Never raises; never shows the password."""
    url = f"redis{'s' if use_tls else ''}://{host}:{port}"
    started = time.monotonic()
    try:
        replies = call(host, port, secret, ("PING",), timeout=timeout, use_tls=use_tls)
    except (OSError, ConnectionError, ValueError) as exc:
        return Probe(url, False, None, None, error=f"unreachable ({exc.strerror or exc})"
                     if isinstance(exc, OSError) and exc.strerror else f"unreachable ({exc})")
    latency = round((time.monotonic() - started) * 1000, 1)
    reply = replies[-1] if replies else None
    if reply == "PONG":
        return Probe(url, True, None, latency)
    text = str(reply)
    if "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text.lower():
        return Probe(url, False, None, latency, error="the Redis password (REDIS_PASSWORD) is refused")
    return Probe(url, False, None, latency, error=f"unexpected answer to PING: {text[:80]}")


def probe_config(cfg: RouterConfig, timeout: float = PROBE_TIMEOUT) -> Probe | None:
    """The configured Redis (managed or external), probed with the configured password; None when Redis is off.
    Read-only: never generates a password."""
    redis = cfg.redis
    if redis is None:
        return None
    return probe(redis.host, redis.port, password(cfg, generate=False), timeout=timeout, use_tls=redis.tls)


# --------------------------------------------------------------------------- the service

def prepare(cfg: RouterConfig) -> Launch:
    """Debian's redis-server on the rendered runtime/redis/redis.conf (0600; the password is only in there)."""
    argv = prepare_argv(cfg)
    redis = cfg.redis
    secret = password(cfg)
    notes = [] if redis.is_loopback else [
        f"Redis listens on {redis.host}: only its password protects the router state; prefer 127.0.0.1 and an "
        "SSH tunnel (docs/scale-out.md)"]
    return Launch(argv=argv, env=supervisor.child_env({}), ready_url=f"redis://{redis.host}:{redis.port}",
                  ready_key=None, notes=notes,
                  ready_probe=lambda: probe(redis.host, redis.port, secret, timeout=2.0))


def _after_ready(cfg: RouterConfig, record: ProcessRecord, offset: int) -> list[str]:
    for line in log_tail(Path(record.log), lines=200, since=offset):
        if "Redis version=" in line:  # redis-server: "... * Redis version=7.0.15, bits=64, ..."
            record.version = line.split("Redis version=", 1)[1].split(",")[0].strip()
            break
    return []


SPEC = ServiceSpec(name="redis", prepare=prepare, probe=lambda cfg: probe_config(cfg), after_ready=_after_ready)
