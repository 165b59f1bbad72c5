"""Load, migrate and validate `routertool.yaml` into typed dataclasses. The only module that reads that file.

Validation collects every problem before failing, each with its dotted path and, where the YAML tells, its line.
Legacy spellings are migrated in memory with a one-line deprecation warning; the file itself is rewritten only
by `migrate_file(..., write=True)`, which keeps a backup.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import USAGE, RouterError
from .fsutil import atomic_write, read_text_bounded, write_private
from .layout import DEFAULT_RUNTIME_DIR, SERVICES, Layout

CURRENT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # 1 (and a missing version) is migrated in memory to 2
CONFIG_ENV = "LLM_ROUTER_CONFIG"
DEFAULT_CONFIG = Path("config/routertool.yaml")
EXAMPLE_CONFIG = Path("config/examples/routertool.yaml")

UPSTREAM_KEY_ENV = "ROUTER_UPSTREAM_API_KEY"  # clients of CLIProxyAPIPlus (LiteLLM) present this key
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # northbound clients present this key to LiteLLM
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"  # the Redis password (generated for a managed Redis; LiteLLM reads it)
GENERATED_SECRETS = (UPSTREAM_KEY_ENV, MASTER_KEY_ENV, REDIS_PASSWORD_ENV)  # local keys: generated into secrets/
PROVIDER_TYPES = ("cliproxyapi_plus", "openai_compatible")
TIERS = ("subscription", "paid")
DEFAULT_TIER = {"cliproxyapi_plus": "subscription", "openai_compatible": "paid"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z, not $: "$" also matches before a trailing newline
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# Refused in every string and key of the config: C0 and C1 controls (newline, NUL, ...), DEL, and the Unicode line
# and paragraph separators, which YAML (and so LiteLLM's loader) also reads as line breaks.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_CONFIG_BYTES = 1 << 20  # routertool.yaml, and the Codex CLI's auth.json
MAX_SECRET_BYTES = 64 << 10  # a secret file
MAX_YAML_NODES = 100_000  # values a YAML document may hold once its aliases are expanded
MAX_YAML_DEPTH = 64  # nesting levels, aliases expanded

SERVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cliproxyapi_plus": {"host": "127.0.0.1", "port": 8317, "config_file": "config/cliproxyapi.yaml",
                         "readiness_path": "/v1/models", "startup_timeout": 30},
    "litellm": {"host": "127.0.0.1", "port": 4000, "readiness_path": "/health/readiness", "startup_timeout": 90,
                "mode": "gunicorn", "worker_boot_timeout": 10, "workers": 1},
}
# services.redis: optional; llm-router runs Debian's redis-server (managed), or LiteLLM uses an external `url`.
REDIS_DEFAULTS: dict[str, Any] = {"enabled": False, "host": "127.0.0.1", "port": 6379, "startup_timeout": 30,
                                  "persistence": "off", "binary": "redis-server"}
REDIS_KEYS = set(REDIS_DEFAULTS) | {"url"}
REDIS_PERSISTENCE = ("off", "aof")
MAX_LITELLM_WORKERS = 16
DEFAULT_HEALTH_PATH = "/v1/models"
SERVICE_KEYS = {"host", "port", "readiness_path", "health_path", "startup_timeout"}
EXTRA_SERVICE_KEYS = {"cliproxyapi_plus": {"config_file"},
                      "litellm": {"mode", "worker_boot_timeout", "max_rss_mb", "workers", "usage_max_days", "usage_max_mb"}}
LITELLM_MODES = ("gunicorn", "uvicorn")  # gunicorn: profile switches swap workers live; uvicorn: they restart
# The Plus fork on 7.x (Copilot needs a Plus line; router-for-me/CLIProxyAPIPlus is gone): cliproxy_lines.py.
BOOTSTRAP_DEFAULTS = {"cliproxy_repository": "kaitranntt/CLIProxyAPIPlus", "cliproxy_version": "latest",
                      "github_api_url": "https://api.github.com"}
TOP_KEYS = {"config_version", "runtime_dir", "default_profile", "bootstrap", "services", "providers", "models",
            "secret_files"}
PROVIDER_KEYS = {"type", "api_base", "api_key_env", "tier"}


# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class ServiceConfig:
    name: str
    host: str
    port: int
    readiness_path: str
    health_path: str
    startup_timeout: float
    config_file: Path | None = None
    mode: str | None = None  # litellm only
    worker_boot_timeout: float = 10.0  # litellm only: a worker not serving this long after its fork is replaced
    max_rss_mb: int | None = None  # litellm only: `service watch` recycles the worker above this
    workers: int = 1  # litellm only (gunicorn mode): worker processes behind the one socket

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class RedisConfig:
    """Shared router state for LiteLLM (cooldowns, allowed_fails and rpm/tpm counters across workers and hosts).

    managed: llm-router runs `binary` on host:port (a ServiceConfig named "redis" is in `services` too);
    otherwise `url` names an external Redis (no password in it: the password is the REDIS_PASSWORD secret)."""
    managed: bool
    host: str
    port: int
    url: str | None = None  # external only: redis[s]://host:port[/db], never with a password
    persistence: str = "off"  # managed only: off (nothing on disk) or aof (appendonly, everysec)
    binary: str = "redis-server"
    db: int = 0  # external only: the database number of the URL

    @property
    def tls(self) -> bool:
        return bool(self.url and self.url.startswith("rediss://"))

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: str
    tier: str
    api_base: str | None = None  # openai_compatible only; cliproxy's comes from services
    api_key_env: str | None = None

    @property
    def key_env(self) -> str:
        """The environment variable that holds this provider's key."""
        return UPSTREAM_KEY_ENV if self.type == "cliproxyapi_plus" else str(self.api_key_env)


@dataclass(frozen=True)
class Deployment:
    provider: str
    model: str
    rpm: int | None = None  # requests per minute LiteLLM lets through to it (a profile enforces it; shared via Redis)
    tpm: int | None = None  # tokens per minute, likewise


@dataclass(frozen=True)
class ModelGroup:
    name: str
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True)
class BootstrapConfig:
    cliproxy_repository: str
    cliproxy_version: str
    github_api_url: str


@dataclass(frozen=True)
class RouterConfig:
    path: Path
    root: Path
    config_version: int
    runtime_dir: Path
    default_profile: str
    bootstrap: BootstrapConfig
    services: dict[str, ServiceConfig]
    providers: dict[str, ProviderConfig]
    models: tuple[ModelGroup, ...]
    secret_files: dict[str, Path]
    warnings: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    redis: RedisConfig | None = None  # None: no Redis; LiteLLM keeps its router state in each worker's memory

    @property
    def layout(self) -> Layout:
        return Layout(root=self.root, runtime_dir=self.runtime_dir)

    def service(self, name: str) -> ServiceConfig:
        return self.services[name]

    def secret_names(self) -> list[str]:
        """Every environment variable this configuration treats as a secret."""
        names = [UPSTREAM_KEY_ENV, MASTER_KEY_ENV] + ([REDIS_PASSWORD_ENV] if self.redis else [])
        names += [p.key_env for p in self.providers.values() if p.type != "cliproxyapi_plus"]
        names += list(self.secret_files)
        return list(dict.fromkeys(names))

    def secret(self, name: str, environ: dict | None = None) -> str | None:
        """A secret's value: the environment, else its `secret_files` entry, else the key llm-router generated
        into the secrets folder (only the local keys in GENERATED_SECRETS are ever generated). None when unset."""
        return self._secret_with_source(name, environ)[0]

    def secret_source(self, name: str, environ: dict | None = None) -> str:
        """Where a secret comes from, never its value: `env`, `file`, `generated` or `missing`."""
        return self._secret_with_source(name, environ)[1]

    def _secret_with_source(self, name: str, environ: dict | None) -> tuple[str | None, str]:
        env = os.environ if environ is None else environ
        if env.get(name):
            return env[name], "env"
        for path, source in ((self.secret_files.get(name), "file"), (self.layout.secret_file(name), "generated")):
            if path is None:
                continue
            try:  # bounded and regular files only: a FIFO or /dev/zero here must not hang every command
                text = read_text_bounded(path, MAX_SECRET_BYTES, "secret file").strip()
            except (OSError, UnicodeDecodeError, RouterError):
                continue  # never raises: redaction on error paths asks for every secret (validate reports it)
            if text:
                return text, source
        return None, "missing"

    def known_secrets(self) -> list[str]:
        """Values to redact from logs and output (the generated keys are added by their owners)."""
        values = [self.secret(name) for name in self.secret_names()]
        values.append(os.environ.get("GITHUB_TOKEN"))
        return [v for v in values if v]


# --------------------------------------------------------------------------- locating and loading

def is_loopback_host(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_config_path(explicit: str | os.PathLike | None = None, cwd: Path | None = None) -> tuple[Path, str]:
    """The config file to use and why: `--config`, else $LLM_ROUTER_CONFIG, else `config/routertool.yaml`
    in the working folder or the nearest parent that has one."""
    cwd = Path.cwd() if cwd is None else cwd
    if explicit:
        return (cwd / Path(explicit).expanduser()).resolve(), "--config"
    if os.environ.get(CONFIG_ENV):
        return (cwd / Path(os.environ[CONFIG_ENV]).expanduser()).resolve(), f"${CONFIG_ENV}"
    for folder in (cwd, *cwd.parents):
        candidate = folder / DEFAULT_CONFIG
        if candidate.is_file():
            return candidate.resolve(), "default"
    return (cwd / DEFAULT_CONFIG).resolve(), "default"


def root_for(config_path: Path) -> Path:
    """The repo root: the folder holding `config/`, else the config file's own folder."""
    parent = config_path.parent
    return parent.parent if parent.name == "config" else parent


def load(explicit: str | os.PathLike | None = None, cwd: Path | None = None) -> RouterConfig:
    path, source = resolve_config_path(explicit, cwd)
    return load_file(path, source)


def load_file(path: Path, source: str = "--config") -> RouterConfig:
    text = _read_config_text(path, source)
    raw, lines = cached_parse(path, text) or parse_text(text, path)
    migrated, lines, warnings = migrate(raw, lines)
    return validate(migrated, path, lines, warnings)


# PyYAML's import alone is ~30 ms of the ~150 ms an `llm-router status` takes (its modules compile a dozen regexes
# at import). So `service start`, which writes state anyway, keeps the parse of the config file it started from as
# JSON beside that state (`remember_parse`), and loading the very same text later reuses it without importing
# PyYAML. The cache is read only from the default state folder (`<root>/.router`) and only for identical text;
# read-only commands (status, doctor, config check) never write it.
def parse_cache_path(config_path: Path) -> Path:
    root = root_for(config_path)
    return Layout(root=root, runtime_dir=root / DEFAULT_RUNTIME_DIR).parse_cache


def cached_parse(path: Path, text: str) -> tuple[dict, dict[str, int]] | None:
    """The parse `remember_parse` stored for exactly this file and text, else None."""
    try:
        cached = json.loads(read_text_bounded(parse_cache_path(path), 4 * MAX_CONFIG_BYTES, "parse cache"))
        data, lines = cached["data"], cached["lines"]
        if (cached["path"] == str(path.resolve()) and cached["text"] == text and isinstance(data, dict)
                and isinstance(lines, dict)):
            return data, lines
    except (OSError, ValueError, KeyError, TypeError, RecursionError, RouterError):
        pass  # none yet, another file's, or damaged: parse the YAML
    return None


def remember_parse(cfg: RouterConfig) -> bool:
    """Store the parse of `cfg`'s file for `cached_parse` (0600 in a 0700 folder). Skipped, returning False, when
    the state folder is not the default one (the reader would not look there), the file cannot be read or written,
    or JSON would not give back exactly what PyYAML gave (non-string keys, dates)."""
    target = parse_cache_path(cfg.path)
    if cfg.layout.parse_cache != target:
        return False
    try:
        text = read_text_bounded(cfg.path, MAX_CONFIG_BYTES, "config file")
        data, lines = parse_text(text, cfg.path)
        entry = {"path": str(cfg.path.resolve()), "text": text, "data": data, "lines": lines}
        encoded = json.dumps(entry)
    except (OSError, UnicodeDecodeError, RouterError, TypeError, ValueError):
        return False
    if json.loads(encoded) != entry:
        return False
    try:
        write_private(target, encoded)
    except RouterError:  # a cache: failing to write it never fails the command that offered it
        return False
    return True


def _read_config_text(path: Path, source: str) -> str:
    try:  # a FIFO, a device or a huge file is refused (RouterError, exit 2) instead of hanging or filling memory
        return read_text_bounded(path, MAX_CONFIG_BYTES, "config file")
    except FileNotFoundError:
        root = root_for(path)
        raise RouterError(
            f"config file not found: {path} (from {source})",
            hint=f"create it from the example: cp {root / EXAMPLE_CONFIG} {path}", exit_code=USAGE) from None
    except IsADirectoryError:
        raise RouterError(f"config path is a folder, not a file: {path}", exit_code=USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RouterError(f"cannot read config file {path}: {reason}", exit_code=USAGE) from None


class YAMLProblem(Exception):
    """Why `load_yaml` refused a text: `message` (one line) and the 1-based `line` it points at, if any."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


_STRICT_LOADER: Any = None


def _strict_loader() -> Any:
    """PyYAML's safe loader (libyaml's when available: same result, faster) that also refuses duplicate keys."""
    global _STRICT_LOADER
    if _STRICT_LOADER is None:
        import yaml

        class StrictSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            def construct_mapping(self, node: Any, deep: bool = False) -> dict:
                if isinstance(node, yaml.MappingNode):  # before merges are flattened: `<<` keys may be overridden
                    seen: dict[Any, int] = {}
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":
                            continue
                        key = self.construct_object(key_node, deep=True)
                        try:
                            first = seen.get(key)
                        except TypeError:
                            continue  # unhashable: the base class reports it
                        if first is not None:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"duplicate key {_show(key)} (first on line {first}); only one may be "
                                            "given", key_node.start_mark)
                        seen[key] = key_node.start_mark.line + 1
                return super().construct_mapping(node, deep=deep)

        _STRICT_LOADER = StrictSafeLoader
    return _STRICT_LOADER


def load_yaml(text: str) -> tuple[Any, Any]:
    """(node tree, data) of a YAML text: the one YAML reader of routertool.yaml and of rendered LiteLLM configs.

    Raises YAMLProblem for a syntax error, a duplicate mapping key (PyYAML keeps the last one silently), aliases
    that expand to more than MAX_YAML_NODES values or MAX_YAML_DEPTH levels (a few-KB "billion laughs" document
    would otherwise fill memory in `_index_lines` and everything that walks the data), and a recursive alias.
    """
    import yaml  # here, not at the top: see cached_parse

    loader = _strict_loader()(text)
    try:  # compose once: the node tree gives the line index, constructing it gives the data
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return node, loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        prefix = "" if problem.startswith("duplicate key") else "not valid YAML: "
        raise YAMLProblem(_one_line(prefix + problem), mark.line + 1 if mark is not None else None) from None
    finally:
        loader.dispose()


def _check_expansion(root: Any) -> None:
    """Refuse a node graph whose aliases expand beyond MAX_YAML_NODES values or MAX_YAML_DEPTH levels, or that
    refers to itself. Each node is measured once, so the check costs what the document's text costs."""
    import yaml

    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) once expanded
    open_nodes: set[int] = set()

    def measure(node: Any, depth: int) -> tuple[int, int]:
        line = node.start_mark.line + 1
        if depth > MAX_YAML_DEPTH:
            raise YAMLProblem(f"nested deeper than {MAX_YAML_DEPTH} levels", line)
        known = measured.get(id(node))
        if known is None:
            if id(node) in open_nodes:
                raise YAMLProblem("an alias refers to the node that contains it (a recursive structure)", line)
            children: list[Any] = []
            if isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            open_nodes.add(id(node))
            values, levels = 1, 1
            for child in children:
                child_values, child_levels = measure(child, depth + 1)
                values += child_values
                levels = max(levels, child_levels + 1)
                if values > MAX_YAML_NODES:
                    break
            open_nodes.discard(id(node))
            known = measured[id(node)] = (values, levels)
        if known[0] > MAX_YAML_NODES:
            raise YAMLProblem(f"more than {MAX_YAML_NODES} values once its aliases are expanded (an alias "
                              "bomb?); write the values out or use fewer aliases", line)
        if depth + known[1] - 1 > MAX_YAML_DEPTH:
            raise YAMLProblem(f"nested deeper than {MAX_YAML_DEPTH} levels once its aliases are expanded", line)
        return known

    measure(root, 1)


def parse_text(text: str, path: Path) -> tuple[dict, dict[str, int]]:
    """Parse YAML (JSON is a subset) into a dict plus a dotted-path → line index."""
    try:
        node, data = load_yaml(text)
    except YAMLProblem as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise RouterError(f"{where}: {exc.message}",
                          hint="fix the file; `llm-router config check` re-reads it", exit_code=USAGE) from None
    if data is None:
        raise RouterError(f"{path}: the config file is empty",
                          hint=f"start from {root_for(path) / EXAMPLE_CONFIG}", exit_code=USAGE)
    if not isinstance(data, dict):
        raise RouterError(f"{path}:1: the config must be a mapping of keys, got {_kind(data)}", exit_code=USAGE)
    lines: dict[str, int] = {}
    _index_lines(node, "", lines)
    return data, lines


def _index_lines(node: Any, prefix: str, lines: dict[str, int]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            lines[path] = key_node.start_mark.line + 1
            _index_lines(value_node, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines[path] = item.start_mark.line + 1
            _index_lines(item, path, lines)


# --------------------------------------------------------------------------- migration

@dataclass(frozen=True)
class Rename:
    """A legacy key and its new spelling, as dotted paths."""
    old: str
    new: str


RENAMES = (Rename("secrets", "secret_files"), Rename("services.cliproxyapi", "services.cliproxyapi_plus"))


def migrate(raw: dict, lines: dict[str, int]) -> tuple[dict, dict[str, int], list[str]]:
    """Return the config in the current schema, its line index, and one deprecation warning per change."""
    data = dict(raw)
    warnings: list[str] = []
    problems: list[str] = []
    for rename in RENAMES:
        parent_path, _, old_key = rename.old.rpartition(".")
        new_key = rename.new.rpartition(".")[2]
        parent = _get(data, parent_path)
        if not isinstance(parent, dict) or old_key not in parent:
            continue
        if new_key in parent:
            problems.append(_at(lines, rename.old, f"{rename.old}: legacy key given together with {rename.new}; "
                                                   f"keep only {rename.new}"))
            continue
        parent = dict(parent)
        parent[new_key] = parent.pop(old_key)
        data = _set(data, parent_path, parent)
        lines = {(rename.new + k[len(rename.old):] if k == rename.old or k.startswith(rename.old + ".")
                  or k.startswith(rename.old + "[") else k): v for k, v in lines.items()}
        warnings.append(f"deprecated key '{rename.old}' was read as '{rename.new}'; "
                        f"run `llm-router config migrate --write` to update the file")
    version = data.get("config_version")
    if version is None or version == 1:
        what = "missing config_version" if version is None else "config_version 1"
        warnings.append(f"{what} was read as config_version: {CURRENT_VERSION}; "
                        f"run `llm-router config migrate --write` to update the file")
        data["config_version"] = CURRENT_VERSION
    if problems:
        raise _invalid(problems)
    return data, lines, warnings


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in filter(None, dotted.split(".")):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(data: dict, dotted: str, value: Any) -> dict:
    if not dotted:
        return value
    head, _, rest = dotted.partition(".")
    copy = dict(data)
    copy[head] = _set(dict(copy.get(head) or {}), rest, value) if rest else value
    return copy


def migrate_file(path: Path, write: bool = False) -> dict:
    """Migrate the file's text, keeping comments and layout: legacy keys are renamed in place and
    `config_version: 2` is added. With `write`, the original is kept as `<name>.bak-<time>` first."""
    text = _read_config_text(path, "--config")
    raw, lines = parse_text(text, path)
    migrated, _, warnings = migrate(raw, lines)
    new_text = _migrated_text(text, raw)
    check, _ = parse_text(new_text, path)
    if check != migrated:  # the text edit must say exactly what the in-memory migration says
        raise RouterError(f"cannot migrate {path} automatically",
                          hint="rename the keys by hand; `llm-router config check` names them", exit_code=USAGE)
    changed = new_text != text
    backup = None
    if write and changed:
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d%H%M%S')}")
        atomic_write(backup, text, mode=path.stat().st_mode & 0o777)
        atomic_write(path, new_text, mode=path.stat().st_mode & 0o777)
    return {"path": str(path), "changed": changed, "written": bool(write and changed),
            "backup": str(backup) if backup else None, "changes": warnings, "text": new_text}


def _migrated_text(text: str, raw: dict) -> str:
    root, _ = load_yaml(text)  # already read by parse_text: within bounds
    edits: list[tuple[int, int, str]] = []
    for rename in RENAMES:
        key_node = _find_key_node(root, rename.old.split("."))
        if key_node is None or _get(raw, rename.new) is not None:
            continue
        new_key = rename.new.rpartition(".")[2]
        original = text[key_node.start_mark.index:key_node.end_mark.index]
        quote = original[0] if original[:1] in "\"'" else ""
        edits.append((key_node.start_mark.index, key_node.end_mark.index, f"{quote}{new_key}{quote}"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    if raw.get("config_version") in (None, 1):
        if "config_version" in raw:
            text = re.sub(r"(?m)^(\s*[\"']?config_version[\"']?\s*:\s*)1\b", rf"\g<1>{CURRENT_VERSION}", text, 1)
        elif text.lstrip().startswith("{"):
            brace = text.index("{")
            text = f'{text[:brace + 1]}"config_version": {CURRENT_VERSION}, {text[brace + 1:]}'
        else:
            text = f"config_version: {CURRENT_VERSION}\n{text}"
    return text


def _find_key_node(node: Any, parts: list[str]) -> Any:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if key_node.value == parts[0]:
            return key_node if len(parts) == 1 else _find_key_node(value_node, parts[1:])
    return None


# --------------------------------------------------------------------------- validation

class _Problems:
    def __init__(self, lines: dict[str, int]):
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(_one_line(_at(self.lines, path, f"{path}: {message}")))

    def unknown_keys(self, mapping: dict, allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            self.add(path, f"unknown key{hint}")


def _at(lines: dict[str, int], path: str, message: str) -> str:
    line = lines.get(path)
    while line is None and path:
        path = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path) if re.search(r"(\.|\[)", path) else ""
        line = lines.get(path)
    return f"line {line}: {message}" if line else message


def _one_line(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\u2028`): one printable line."""
    return CONTROL.sub(lambda m: _escape(m.group()), text)


def _escape(char: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\u{ord(char):04x}"


def _control_characters(p: _Problems, value: Any, path: str) -> None:
    """One rule for every string of the config, keys included: no control characters. A newline in a model, a
    group name or a variable name could otherwise start a new line, and so new entries, in a rendered config."""
    if isinstance(value, str):
        found = CONTROL.search(value)
        if found:
            shown = value if len(value) <= 120 else value[:117] + "..."
            p.add(path, f"contains a control character ({_escape(found.group())}); names, ids, hosts, "
                        f"paths, models and URLs must be one line of printable text, got {_show(shown)}")
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and CONTROL.search(key):
                p.add(sub, "the key contains a control character; keys must be one line of printable text")
            _control_characters(p, item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _control_characters(p, item, f"{path}[{i}]")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value) if not isinstance(value, (dict, list)) \
        else _kind(value)


def _invalid(problems: list[str], path: Path | None = None) -> RouterError:
    where = f"{path}" if path else "the config"
    hint = "fix the lines listed, then run `llm-router config check`"
    if len(problems) == 1:
        return RouterError(f"{where}: {problems[0]}", hint=hint, exit_code=USAGE, details=problems)
    return RouterError(f"{where} is invalid ({len(problems)} problems):", hint=hint, exit_code=USAGE,
                       details=problems)


def validate(data: dict, path: Path, lines: dict[str, int] | None = None,
             warnings: list[str] | None = None) -> RouterConfig:
    """Check `data` (already migrated) and build the typed config, or raise one RouterError listing every problem."""
    p = _Problems(lines or {})
    warnings = list(warnings or ())
    root = root_for(path)
    _control_characters(p, data, "")
    p.unknown_keys(data, TOP_KEYS, "")

    version = data.get("config_version")
    if version != CURRENT_VERSION:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        p.add("config_version", f"unsupported version {_show(version)}; supported versions: {supported} "
                                f"(1 is migrated to {CURRENT_VERSION})")

    runtime_dir = _string(p, data, "runtime_dir", str(DEFAULT_RUNTIME_DIR), "")
    default_profile = _string(p, data, "default_profile", "balanced", "")
    if default_profile and not NAME.match(default_profile):
        p.add("default_profile", f"must be a profile name (letters, digits, . _ -), got {_show(default_profile)}")

    bootstrap_raw = _mapping(p, data, "bootstrap")
    p.unknown_keys(bootstrap_raw, set(BOOTSTRAP_DEFAULTS), "bootstrap")
    boot = {k: _string(p, bootstrap_raw, k, d, "bootstrap") for k, d in BOOTSTRAP_DEFAULTS.items()}
    if boot["cliproxy_repository"] and not re.match(r"^[\w.-]+/[\w.-]+\Z", boot["cliproxy_repository"]):
        p.add("bootstrap.cliproxy_repository", f"must look like OWNER/NAME, got {_show(boot['cliproxy_repository'])}")
    if boot["cliproxy_version"] and boot["cliproxy_version"] != "latest" \
            and not re.match(r"^v?\d+\.\d+\.\d+(-\d+)?\Z", boot["cliproxy_version"]):
        p.add("bootstrap.cliproxy_version",
              f"must be a release tag like v6.9.28-0, or \"latest\", got {_show(boot['cliproxy_version'])}")
    if boot["github_api_url"] and not re.match(r"^https?://", boot["github_api_url"]):
        p.add("bootstrap.github_api_url", f"must be an http(s) URL, got {_show(boot['github_api_url'])}")

    services_raw = _mapping(p, data, "services")
    redis = _validate_redis(p, services_raw, warnings)
    services = _validate_services(p, {k: v for k, v in services_raw.items() if k != "redis"}, root)
    if redis is not None and redis.managed:
        services = {"redis": ServiceConfig(name="redis", host=redis.host, port=redis.port, readiness_path="/",
                                           health_path="/", startup_timeout=float(
                                               _mapping(p, services_raw, "redis", "services").get(
                                                   "startup_timeout", REDIS_DEFAULTS["startup_timeout"]))),
                    **services}
        for name, svc in services.items():
            if name != "redis" and svc.port == redis.port:
                p.add("services.redis.port", f"port {redis.port} is already used by services.{name}")
    providers = _validate_providers(p, _mapping(p, data, "providers"))
    models = _validate_models(p, data.get("models"), providers)

    secret_files: dict[str, Path] = {}
    for name, file in _mapping(p, data, "secret_files").items():
        if not ENV_NAME.match(str(name)):
            p.add(f"secret_files.{name}", "must be an environment variable name (letters, digits, _)")
        elif not isinstance(file, str) or not file.strip():
            p.add(f"secret_files.{name}", f"must be a file path, got {_show(file)}")
        else:
            secret_files[str(name)] = _resolve(root, file)
            unusable = _not_a_readable_file(secret_files[str(name)], MAX_SECRET_BYTES)
            if unusable:
                p.add(f"secret_files.{name}", unusable)

    if p.items:
        raise _invalid(p.items, path)
    return RouterConfig(
        path=path, root=root, config_version=CURRENT_VERSION, runtime_dir=_resolve(root, runtime_dir),
        default_profile=default_profile, bootstrap=BootstrapConfig(**boot), services=services,
        providers=providers, models=tuple(models), secret_files=secret_files,
        warnings=tuple(warnings or ()), raw=data, redis=redis)


def _not_a_readable_file(path: Path, limit: int) -> str | None:
    """Why the existing `path` cannot be a secret file (a FIFO, a device, a folder, too large), else None. A stat
    only: it never opens the file, so a FIFO cannot block it."""
    import stat

    try:
        info = path.stat()
    except (OSError, ValueError):
        return None  # missing (reported as an unset secret) or unreadable: the read treats it as unset
    if stat.S_ISREG(info.st_mode):
        return f"{path} is larger than {limit} bytes" if info.st_size > limit else None
    kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
            else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file")
    return f"{path} is {kind}; a secret file must be a regular file"


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _mapping(p: _Problems, data: dict, key: str, prefix: str = "") -> dict:
    value = data.get(key)
    path = f"{prefix}.{key}" if prefix else key
    if value is None:
        return {}
    if not isinstance(value, dict):
        p.add(path, f"must be a mapping, got {_kind(value)}")
        return {}
    return value


def _string(p: _Problems, data: dict, key: str, default: str | None, prefix: str) -> str:
    value = data.get(key, default)
    path = f"{prefix}.{key}" if prefix else key
    if value is None and default is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        p.add(path, f"must be a non-empty string, got {_show(value)}")
        return ""
    return value.strip()


def _validate_services(p: _Problems, raw: dict, root: Path) -> dict[str, ServiceConfig]:
    p.unknown_keys(raw, set(SERVICES), "services")
    result: dict[str, ServiceConfig] = {}
    for name in SERVICES:
        prefix = f"services.{name}"
        given = _mapping(p, raw, name, "services")
        p.unknown_keys(given, SERVICE_KEYS | EXTRA_SERVICE_KEYS[name], prefix)
        merged = {**SERVICE_DEFAULTS[name], **given}
        host = _string(p, merged, "host", None, prefix)
        port = merged.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            p.add(f"{prefix}.port", f"must be an integer between 1 and 65535, got {_show(port)}")
            port = 0
        paths = {  # health_path is the readiness fallback
            "readiness_path": given.get("readiness_path", given.get("health_path", merged["readiness_path"])),
            "health_path": merged.get("health_path", DEFAULT_HEALTH_PATH),
        }
        for key, value in paths.items():
            if not isinstance(value, str) or not value.startswith("/"):
                p.add(f"{prefix}.{key}", f"must be a URL path starting with '/', got {_show(value)}")
                paths[key] = "/"
        timeout = merged.get("startup_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            p.add(f"{prefix}.startup_timeout", f"must be a number of seconds between 1 and 3600, got {_show(timeout)}")
            timeout = 1
        config_file = None
        if name == "cliproxyapi_plus":
            value = merged.get("config_file")
            if value is not None and (not isinstance(value, str) or not value.strip()):
                p.add(f"{prefix}.config_file", f"must be a file path, got {_show(value)}")
            elif value:
                config_file = _resolve(root, value)
        extra: dict[str, Any] = {}
        if name == "litellm":
            extra = _validate_litellm_extras(p, merged, prefix)
        result[name] = ServiceConfig(name=name, host=host, port=port, startup_timeout=float(timeout),
                                     config_file=config_file, **paths, **extra)
    ports: dict[int, str] = {}
    for name, svc in result.items():
        if svc.port and svc.port in ports:
            p.add(f"services.{name}.port", f"port {svc.port} is already used by services.{ports[svc.port]}")
        ports.setdefault(svc.port, name)
    return result


def _validate_litellm_extras(p: _Problems, merged: dict, prefix: str) -> dict[str, Any]:
    mode = merged.get("mode")
    if mode not in LITELLM_MODES:
        p.add(f"{prefix}.mode", f"must be one of {', '.join(LITELLM_MODES)}, got {_show(mode)}")
    boot = merged.get("worker_boot_timeout")
    if isinstance(boot, bool) or not isinstance(boot, (int, float)) or not 1 <= boot <= 600:
        p.add(f"{prefix}.worker_boot_timeout", f"must be a number of seconds between 1 and 600, got {_show(boot)}")
        boot = 10
    rss = merged.get("max_rss_mb")
    if rss is not None and (isinstance(rss, bool) or not isinstance(rss, int) or rss < 64):
        p.add(f"{prefix}.max_rss_mb", f"must be a whole number of megabytes, at least 64, got {_show(rss)}")
        rss = None
    from .usage import check_settings  # the usage store's retention (docs/usage.md); read from raw by usage.py
    for key, problem in check_settings(merged.get("usage_max_days", 30), merged.get("usage_max_mb", 64)):
        p.add(f"{prefix}.{key}", f"{problem}, got {_show(merged.get(key))}")
    workers = merged.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_LITELLM_WORKERS:
        p.add(f"{prefix}.workers", f"must be a whole number of workers between 1 and {MAX_LITELLM_WORKERS}, "
                                   f"got {_show(workers)}")
        workers = 1
    elif workers > 1 and mode == "uvicorn":
        p.add(f"{prefix}.workers", f"needs mode: gunicorn (uvicorn runs one process), got {workers} workers")
    return {"mode": mode, "worker_boot_timeout": float(boot), "max_rss_mb": rss, "workers": workers}


REDIS_URL = re.compile(r"^(?P<scheme>rediss?)://(?P<auth>[^@/]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
                       r"(?::(?P<port>\d{1,5}))?(?:/(?P<db>\d{1,2}))?/?\Z")


def _validate_redis(p: _Problems, services_raw: dict, warnings: list[str] | None) -> RedisConfig | None:
    """services.redis: None when absent or `enabled: false`; an external one when `url` is given."""
    prefix = "services.redis"
    given = _mapping(p, services_raw, "redis", "services")
    p.unknown_keys(given, REDIS_KEYS, prefix)
    merged = {**REDIS_DEFAULTS, **given}
    enabled = merged.get("enabled")
    if not isinstance(enabled, bool):
        p.add(f"{prefix}.enabled", f"must be true or false, got {_show(enabled)}")
        return None
    url = given.get("url")
    if url is None and not enabled:
        return None
    host = _string(p, merged, "host", None, prefix)
    port = merged.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        p.add(f"{prefix}.port", f"must be an integer between 1 and 65535, got {_show(port)}")
        port = 0
    timeout = merged.get("startup_timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        p.add(f"{prefix}.startup_timeout", f"must be a number of seconds between 1 and 3600, got {_show(timeout)}")
    persistence = merged.get("persistence")
    if persistence not in REDIS_PERSISTENCE:
        p.add(f"{prefix}.persistence", f"must be one of {', '.join(REDIS_PERSISTENCE)}, got {_show(persistence)}")
    binary = _string(p, merged, "binary", None, prefix)
    if url is not None:
        for key in ("host", "port", "persistence", "binary", "startup_timeout"):
            if key in given:
                p.add(f"{prefix}.{key}", "applies to the Redis llm-router runs; with `url` it uses yours: remove it")
        match = REDIS_URL.match(url) if isinstance(url, str) else None
        if match is None:
            p.add(f"{prefix}.url", f"must look like redis://HOST:PORT/DB or rediss://HOST:PORT/DB (TLS), got "
                                   f"{_show(url) if not isinstance(url, str) or '@' not in url else 'a URL with @'}")
            return None
        if match.group("auth"):
            p.add(f"{prefix}.url", f"must not hold a user or password (routertool.yaml is not a secret): give the "
                                   f"password as {REDIS_PASSWORD_ENV} (environment or secret_files)")
            return None
        rhost = match.group("host").strip("[]")
        rport = int(match.group("port") or 6379)
        if not 1 <= rport <= 65535:
            p.add(f"{prefix}.url", f"port must be between 1 and 65535, got {rport}")
        if warnings is not None and not is_loopback_host(rhost) and match.group("scheme") == "redis":
            warnings.append(f"services.redis.url {url} is plain redis:// to another machine: the password and the "
                            "router state cross the network unencrypted; use rediss:// (TLS) or an SSH tunnel "
                            "(docs/scale-out.md)")
        return RedisConfig(managed=False, host=rhost, port=rport, url=url.rstrip("/"), db=int(match.group("db") or 0))
    if warnings is not None and host and not is_loopback_host(host):
        warnings.append(f"services.redis.host is {host}: Redis will be reachable from other machines (password "
                        "only, no TLS); keep 127.0.0.1 and use an SSH tunnel unless you mean it (docs/scale-out.md)")
    return RedisConfig(managed=True, host=host, port=port, persistence=str(persistence), binary=binary)


def _validate_providers(p: _Problems, raw: dict) -> dict[str, ProviderConfig]:
    result: dict[str, ProviderConfig] = {}
    for name, spec in raw.items():
        prefix = f"providers.{name}"
        if not NAME.match(str(name)):
            p.add(prefix, "provider names use letters, digits, . _ -")
            continue
        if not isinstance(spec, dict):
            p.add(prefix, f"must be a mapping, got {_kind(spec)}")
            continue
        p.unknown_keys(spec, PROVIDER_KEYS, prefix)
        ptype = spec.get("type")
        if ptype not in PROVIDER_TYPES:
            close = difflib.get_close_matches(str(ptype), PROVIDER_TYPES, n=1)
            extra = f"; did you mean '{close[0]}'?" if close else ""
            p.add(f"{prefix}.type", f"must be one of {', '.join(PROVIDER_TYPES)}, got {_show(ptype)}{extra}")
            continue
        tier = spec.get("tier", DEFAULT_TIER[ptype])
        if tier not in TIERS:
            p.add(f"{prefix}.tier", f"must be one of {', '.join(TIERS)}, got {_show(tier)}")
        api_base = spec.get("api_base")
        key_env = spec.get("api_key_env")
        if ptype == "cliproxyapi_plus":
            for key in ("api_base", "api_key_env"):
                if key in spec:
                    p.add(f"{prefix}.{key}", "is set by llm-router for cliproxyapi_plus providers "
                                             f"(services.cliproxyapi_plus and {UPSTREAM_KEY_ENV}); remove it")
        else:
            if not isinstance(api_base, str) or not re.match(r"^https?://[^/\s]+", api_base):
                p.add(f"{prefix}.api_base", f"must be an http(s) URL, got {_show(api_base)}")
            if not isinstance(key_env, str) or not ENV_NAME.match(key_env):
                p.add(f"{prefix}.api_key_env",
                      f"must name an environment variable (letters, digits, _), got {_show(key_env)}")
        result[str(name)] = ProviderConfig(name=str(name), type=ptype, tier=str(tier),
                                           api_base=api_base.rstrip("/") if isinstance(api_base, str) else None,
                                           api_key_env=key_env if isinstance(key_env, str) else None)
    return result


def _validate_models(p: _Problems, raw: Any, providers: dict[str, ProviderConfig]) -> list[ModelGroup]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add("models", f"must be a list of model groups, got {_kind(raw)}")
        return []
    groups: list[ModelGroup] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        prefix = f"models[{i}]"
        if not isinstance(entry, dict):
            p.add(prefix, f"must be a mapping with name and deployments, got {_kind(entry)}")
            continue
        p.unknown_keys(entry, {"name", "deployments"}, prefix)
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            p.add(f"{prefix}.name", f"must be a model name (letters, digits, . _ -), got {_show(name)}")
            name = None
        elif name in seen:
            p.add(f"{prefix}.name", f"duplicate model name '{name}' (also models[{seen[name]}])")
        else:
            seen[name] = i
        deployments_raw = entry.get("deployments")
        if not isinstance(deployments_raw, list) or not deployments_raw:
            p.add(f"{prefix}.deployments", "must be a non-empty list of {provider, model}"
                  + ("" if deployments_raw is None or isinstance(deployments_raw, list)
                     else f", got {_kind(deployments_raw)}"))
            continue
        deployments = []
        for j, dep in enumerate(deployments_raw):
            dpath = f"{prefix}.deployments[{j}]"
            if not isinstance(dep, dict):
                p.add(dpath, f"must be a mapping with provider and model, got {_kind(dep)}")
                continue
            p.unknown_keys(dep, {"provider", "model", "rpm", "tpm"}, dpath)
            provider, model = dep.get("provider"), dep.get("model")
            limits = {}
            for key in ("rpm", "tpm"):
                value = dep.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    p.add(f"{dpath}.{key}", f"must be a whole number of {'requests' if key == 'rpm' else 'tokens'} "
                                            f"per minute, at least 1, got {_show(value)}")
                elif value is not None:
                    limits[key] = value
            if not isinstance(provider, str) or provider not in providers:
                known = ", ".join(sorted(providers)) or "none defined"
                close = difflib.get_close_matches(str(provider), sorted(providers), n=1)
                extra = f"; did you mean '{close[0]}'?" if close else ""
                p.add(f"{dpath}.provider", f"unknown provider {_show(provider)} (known: {known}){extra}")
            if not isinstance(model, str) or not model.strip():
                p.add(f"{dpath}.model", f"must be the upstream model id, got {_show(model)}")
            if isinstance(provider, str) and isinstance(model, str):
                deployments.append(Deployment(provider=provider, model=model.strip(), **limits))
        if name and deployments:
            keys = [(d.provider, d.model) for d in deployments]
            duplicates = {d for d in deployments if keys.count((d.provider, d.model)) > 1}
            for dup in duplicates:
                p.add(f"{prefix}.deployments", f"deployment {dup.provider}/{dup.model} is listed twice")
            groups.append(ModelGroup(name=name, deployments=tuple(deployments)))
    return groups


# --------------------------------------------------------------------------- presentation data

def services_view(config: RouterConfig) -> dict:
    """The services as plain data (no secret among them)."""
    return {name: {"host": s.host, "port": s.port, "readiness_path": s.readiness_path,
                   "health_path": s.health_path, "startup_timeout": s.startup_timeout,
                   **({"config_file": str(s.config_file)} if s.config_file else {}),
                   **({"mode": s.mode, "worker_boot_timeout": s.worker_boot_timeout,
                       "max_rss_mb": s.max_rss_mb, "workers": s.workers} if s.mode else {})}
            for name, s in config.services.items() if name != "redis"} | redis_view(config)


def redis_view(config: RouterConfig) -> dict:
    """`{"redis": {...}}` when Redis is on (templates render LiteLLM's Redis settings from it), else {}: host and
    port (or the external URL, which never holds a password) and the *name* of the password variable."""
    r = config.redis
    if r is None:
        return {}
    # LiteLLM gets host, port and password (redis-py drops a password given beside a URL), plus TLS and the
    # database as RedisCache arguments
    view = {"managed": r.managed, "host": r.host, "port": r.port, "password_env": REDIS_PASSWORD_ENV,
            "url": r.url, "tls": r.tls, "db": r.db,
            "cache_kwargs": {**({"ssl": True} if r.tls else {}), **({"db": r.db} if r.db else {})}}
    if r.managed:
        view.update(persistence=r.persistence, binary=r.binary)
    return {"redis": view}


def providers_view(config: RouterConfig) -> dict:
    """The providers as plain data: api_base resolved, the *name* of the key variable, never its value."""
    return {name: {"type": pr.type, "tier": pr.tier,
                   "api_base": pr.api_base or f"{config.services['cliproxyapi_plus'].base_url}/v1",
                   "api_key_env": pr.key_env}
            for name, pr in config.providers.items()}


def models_view(config: RouterConfig) -> list:
    return [{"name": g.name, "deployments": [{"provider": d.provider, "model": d.model,
                                              **{k: v for k, v in (("rpm", d.rpm), ("tpm", d.tpm)) if v}}
                                             for d in g.deployments]}
            for g in config.models]


def effective(config: RouterConfig) -> dict:
    """The config after defaults and migration, as plain data; secrets appear only as <set>/<missing>."""
    return {
        "config_version": config.config_version,
        "path": str(config.path),
        "root": str(config.root),
        "runtime_dir": str(config.runtime_dir),
        "default_profile": config.default_profile,
        "bootstrap": vars(config.bootstrap).copy(),
        "services": services_view(config),
        "providers": providers_view(config),
        "models": models_view(config),
        "secret_files": {name: str(path) for name, path in config.secret_files.items()},
        "secrets": {name: "<set>" if config.secret_source(name) != "missing" else "<missing>"
                    for name in config.secret_names()},
    }
