"""Client configurations for the running stack: what `llm-router connect CLIENT` prints or writes, and what
`llm-router run CLIENT -- ARGS` sets for one command.

`setup(cfg, client, model)` returns a `ClientSetup`: the shell environment (each value a literal or a shell
expression that reads the key, never the key itself), the config-file snippets, an example command and notes.
`write(setup)` edits the client's own config file (a backup first, atomically, the rest of the file kept).
`run(cfg, client, args)` runs the client with the configuration set for that one process, forwards Ctrl-C and
SIGTERM to it and returns its exit code.

Facts about each client (measured on Codex CLI 0.171.0 and Claude Code 2.1.197) are in docs/clients.md.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import MASTER_KEY_ENV, RouterConfig
from .errors import NOT_FOUND, USAGE, RouterError

CLIENTS = ("codex", "claude", "openai", "llm", "aider")
CLIENT_TITLES = {"codex": "Codex CLI", "claude": "Claude Code", "openai": "OpenAI SDKs and tools (environment)",
                 "llm": "simonw's llm", "aider": "aider"}
WRITABLE = ("codex", "claude", "llm")  # clients whose config file `--write` edits
PROVIDER_ID = "llm-router"  # Codex's model_providers entry and llm's key alias
# Claude Code's model variables: every model it may ask for is the router's model, so it never asks for a name
# the router does not serve (its background "haiku" calls included).
CLAUDE_MODEL_VARS = ("ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
                     "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")
# Claude Code's switches for a gateway with no internet: no telemetry, error reports, update checks or other
# non-essential traffic, and no experimental beta headers (gateways reject unknown ones; claude-code#46105).
CLAUDE_OFFLINE = (("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), ("DISABLE_AUTOUPDATER", "1"),
                  ("DISABLE_TELEMETRY", "1"), ("DISABLE_ERROR_REPORTING", "1"),
                  ("CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS", "1"))
# Codex's settings for no traffic beyond the router: without them Codex 0.171.0 looks up github.com and
# api.github.com (plugin sync) and chatgpt.com / ab.chatgpt.com (analytics) at every start (measured with strace).
CODEX_OFFLINE = (("analytics", "enabled", False), ("features", "plugins", False))
STOP_WAIT = 10.0  # seconds `run` waits for the client after a forwarded SIGTERM/SIGHUP before it kills it


# --------------------------------------------------------------------------- typed results

@dataclass(frozen=True)
class KeyRef:
    """How a client gets the master key, without the key itself."""

    env: str  # the variable llm-router reads it from (LITELLM_MASTER_KEY)
    source: str  # env | file | generated | missing (config.secret_source)
    file: Path | None  # the file it is read from (file / generated; missing: where it will be generated)

    @property
    def shell(self) -> str:
        """A shell expression that expands to the key."""
        if self.source == "env":
            return f'"${self.env}"'
        return f'"$(cat {shlex.quote(str(self.file))})"'

    @property
    def command(self) -> str:
        """A shell command that prints the key (Claude Code's apiKeyHelper)."""
        if self.source == "env":
            return f'printf %s "${self.env}"'
        return f"cat {shlex.quote(str(self.file))}"

    def to_dict(self) -> dict:
        return {"env": self.env, "source": self.source, "file": str(self.file) if self.file else None,
                "shell": self.shell, "command": self.command}


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # http://127.0.0.1:4000 (Anthropic clients)
    openai_base_url: str  # http://127.0.0.1:4000/v1 (OpenAI clients)
    state: str  # LiteLLM's supervisor state (RUNNING, STOPPED, ...)
    key: KeyRef
    models: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    def to_dict(self) -> dict:
        return {"base_url": self.base_url, "openai_base_url": self.openai_base_url, "state": self.state,
                "running": self.running, "key": self.key.to_dict(), "models": list(self.models)}


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str  # a literal, or (key=True) a shell expression that expands to the key
    key: bool = False

    @property
    def export(self) -> str:
        return f"export {self.name}={self.value if self.key else shlex.quote(self.value)}"

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "shell_expression": self.key, "export": self.export}


@dataclass(frozen=True)
class Snippet:
    """Text for one of the client's config files (`path`: the file `--write` edits, else None)."""

    format: str  # toml | json | yaml
    target: str  # the file, as a person would name it
    text: str
    path: Path | None = None

    def to_dict(self) -> dict:
        return {"format": self.format, "target": self.target, "path": str(self.path) if self.path else None,
                "text": self.text}


@dataclass(frozen=True)
class ClientSetup:
    client: str
    title: str
    model: str
    endpoint: Endpoint
    env: tuple[EnvVar, ...]
    files: tuple[Snippet, ...] = ()
    command: str = ""  # an example invocation
    notes: tuple[str, ...] = ()
    writable: bool = False
    write_path: Path | None = None  # the file `--write` edits

    @property
    def exports(self) -> str:
        """The environment as `export` lines, for `eval "$(llm-router connect CLIENT --env)"`."""
        return "\n".join(v.export for v in self.env)

    def to_dict(self) -> dict:
        return {"client": self.client, "title": self.title, "model": self.model, "endpoint": self.endpoint.to_dict(),
                "env": [v.to_dict() for v in self.env], "exports": self.exports,
                "files": [f.to_dict() for f in self.files], "command": self.command, "notes": list(self.notes),
                "writable": self.writable, "write_path": str(self.write_path) if self.write_path else None}


@dataclass(frozen=True)
class WriteResult:
    client: str
    path: Path
    changed: bool
    created: bool
    backup: Path | None
    keys: tuple[str, ...]  # what was set, dotted

    def to_dict(self) -> dict:
        return {"client": self.client, "path": str(self.path), "changed": self.changed, "created": self.created,
                "backup": str(self.backup) if self.backup else None, "keys": list(self.keys)}


@dataclass(frozen=True)
class RunResult:
    client: str
    argv: tuple[str, ...]
    returncode: int  # the client's exit code; 128+N when it died of signal N
    signal: int | None = None  # the signal forwarded to it, if any

    def to_dict(self) -> dict:
        return {"client": self.client, "argv": list(self.argv), "returncode": self.returncode, "signal": self.signal}


# --------------------------------------------------------------------------- building the configuration

def check_client(client: str) -> str:
    name = (client or "").strip().lower()
    aliases = {"claude-code": "claude", "codex-cli": "codex", "env": "openai"}
    name = aliases.get(name, name)
    if name not in CLIENTS:
        raise RouterError(f"unknown client {client!r}; known clients: {', '.join(CLIENTS)}",
                          hint="e.g. `llm-router connect codex`", exit_code=USAGE)
    return name


def endpoint(cfg: RouterConfig, environ: dict | None = None) -> Endpoint:
    from . import services

    svc = cfg.services["litellm"]
    source = cfg.secret_source(MASTER_KEY_ENV, environ)
    if source == "file":
        key_file = cfg.secret_files[MASTER_KEY_ENV]
    elif source == "env":
        key_file = None
    else:  # generated, or not yet generated: `service start` writes it there
        key_file = cfg.layout.secret_file(MASTER_KEY_ENV)
    try:
        state = services.status(cfg, ["litellm"])[0].state
    except RouterError:
        state = "UNKNOWN"
    return Endpoint(base_url=svc.base_url, openai_base_url=f"{svc.base_url}/v1", state=state,
                    key=KeyRef(MASTER_KEY_ENV, source, key_file), models=tuple(g.name for g in cfg.models))


def pick_model(cfg: RouterConfig, model: str | None) -> str:
    names = [g.name for g in cfg.models]
    if not names:
        raise RouterError(f"{cfg.path} has no models[]", hint="add a model group to models[]", exit_code=USAGE)
    if model is None:
        return names[0]
    if model not in names:
        raise RouterError(f"unknown model {model!r}; the router serves: {', '.join(names)}",
                          hint="pass one of the names of models[] in routertool.yaml", exit_code=USAGE)
    return model


def setup(cfg: RouterConfig, client: str, model: str | None = None, environ: dict | None = None,
          home: Path | None = None) -> ClientSetup:
    """The configuration of `client` for this stack. `environ` and `home` (default: the process's) decide
    where each client's config file lives."""
    client = check_client(client)
    model = pick_model(cfg, model)
    ep = endpoint(cfg, environ)
    env = os.environ if environ is None else environ
    home = Path(home) if home is not None else Path.home()
    return _BUILDERS[client](ep, model, env, home)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def codex_home(env: dict, home: Path) -> Path:
    return Path(env["CODEX_HOME"]).expanduser() if env.get("CODEX_HOME") else home / ".codex"


def codex_settings(ep: Endpoint, model: str) -> list[tuple[str, str, Any]]:
    """(table, key, value) for Codex's config.toml; table "" is the top level."""
    table = f"model_providers.{PROVIDER_ID}"
    return [("", "model", model), ("", "model_provider", PROVIDER_ID),
            (table, "name", PROVIDER_ID), (table, "base_url", ep.openai_base_url),
            (table, "env_key", ep.key.env), (table, "wire_api", "responses"),
            *CODEX_OFFLINE]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _toml_str(str(value))


def _codex(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    path = codex_home(env, home) / "config.toml"
    tables: dict[str, list[str]] = {}
    for table, key, value in codex_settings(ep, model):
        tables.setdefault(table, []).append(f"{key} = {_toml_value(value)}")
    lines = tables.pop("")
    for table, body in tables.items():
        if table == "analytics":
            lines += ["", "# no traffic beyond the router: no analytics, no plugin sync from github.com"]
        else:
            lines.append("")
        lines += [f"[{table}]", *body]
    exports = () if ep.key.source == "env" else (EnvVar(ep.key.env, ep.key.shell, key=True),)
    notes = (f"Codex reads the key from ${ep.key.env} (env_key); no `codex login` is needed.",
             "Codex warns `Model metadata for `" + model + "` not found`: harmless.",
             "One command without touching config.toml: llm-router run codex -- exec \"...\"")
    return ClientSetup("codex", CLIENT_TITLES["codex"], model, ep, exports,
                       (Snippet("toml", _tilde(path, home), "\n".join(lines), path),),
                       command='codex exec --skip-git-repo-check "say hello"', notes=notes, writable=True,
                       write_path=path)


def claude_config_dir(env: dict, home: Path) -> Path:
    return Path(env["CLAUDE_CONFIG_DIR"]).expanduser() if env.get("CLAUDE_CONFIG_DIR") else home / ".claude"


def claude_env(ep: Endpoint, model: str) -> list[tuple[str, str]]:
    """Claude Code's variables apart from the key (ANTHROPIC_AUTH_TOKEN / apiKeyHelper)."""
    return [("ANTHROPIC_BASE_URL", ep.base_url), *((name, model) for name in CLAUDE_MODEL_VARS), *CLAUDE_OFFLINE]


def _claude(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    path = claude_config_dir(env, home) / "settings.json"
    variables = claude_env(ep, model)
    exports = (EnvVar("ANTHROPIC_BASE_URL", ep.base_url), EnvVar("ANTHROPIC_AUTH_TOKEN", ep.key.shell, key=True),
               *(EnvVar(n, v) for n, v in variables[1:]))
    settings = {"apiKeyHelper": ep.key.command, "env": dict(variables)}
    notes = ("ANTHROPIC_BASE_URL has no /v1: Claude Code adds /v1/messages itself.",
             "The key is sent as a Bearer token (ANTHROPIC_AUTH_TOKEN); in settings.json `apiKeyHelper` prints it, "
             "so the file holds no secret.",
             "One command without touching settings.json: llm-router run claude -- -p \"...\"")
    return ClientSetup("claude", CLIENT_TITLES["claude"], model, ep, exports,
                       (Snippet("json", _tilde(path, home), json.dumps(settings, indent=2), path),),
                       command='claude -p "say hello"', notes=notes, writable=True, write_path=path)


def _openai(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    exports = (EnvVar("OPENAI_BASE_URL", ep.openai_base_url), EnvVar("OPENAI_API_KEY", ep.key.shell, key=True))
    notes = (f"Ask for the model names of models[]: {', '.join(ep.models)}.",
             f'Python: OpenAI(base_url="{ep.openai_base_url}", api_key=...); LangChain: ChatOpenAI(model="{model}", '
             f'base_url="{ep.openai_base_url}", api_key=...).')
    return ClientSetup("openai", CLIENT_TITLES["openai"], model, ep, exports,
                       command=f"python -c \"import openai; print(openai.OpenAI().chat.completions.create("
                               f"model='{model}', messages=[{{'role': 'user', 'content': 'hi'}}])"
                               f".choices[0].message.content)\"",
                       notes=notes)


def llm_user_dir(env: dict, home: Path) -> Path:
    """llm's user folder: $LLM_USER_PATH, else click's app dir for io.datasette.llm."""
    if env.get("LLM_USER_PATH"):
        return Path(env["LLM_USER_PATH"]).expanduser()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "io.datasette.llm"
    base = Path(env["XDG_CONFIG_HOME"]).expanduser() if env.get("XDG_CONFIG_HOME") else home / ".config"
    return base / "io.datasette.llm"


def llm_entry(ep: Endpoint, model: str) -> dict:
    return {"model_id": model, "model_name": model, "api_base": ep.openai_base_url, "api_key_name": PROVIDER_ID}


def _llm(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    import yaml

    path = llm_user_dir(env, home) / "extra-openai-models.yaml"
    text = yaml.safe_dump([llm_entry(ep, model)], sort_keys=False).rstrip()
    # piped, not --value: the expanded key would be on llm's command line (visible in ps) while it runs
    notes = (f"Store the key once: printf '%s\\n' {ep.key.shell} | llm keys set {PROVIDER_ID}",
             "Without a stored key llm falls back to $OPENAI_API_KEY (what `llm-router run llm -- ...` sets).")
    return ClientSetup("llm", CLIENT_TITLES["llm"], model, ep, (), (Snippet("yaml", _tilde(path, home), text, path),),
                       command=f'llm -m {model} "say hello"', notes=notes, writable=True, write_path=path)


def _aider(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    exports = (EnvVar("OPENAI_API_BASE", ep.openai_base_url), EnvVar("OPENAI_BASE_URL", ep.openai_base_url),
               EnvVar("OPENAI_API_KEY", ep.key.shell, key=True), EnvVar("LITELLM_LOCAL_MODEL_COST_MAP", "True"))
    notes = ("The `openai/` prefix makes aider's LiteLLM treat the router as an OpenAI-compatible server.",
             "LITELLM_LOCAL_MODEL_COST_MAP=True keeps aider's LiteLLM from downloading its price list.")
    return ClientSetup("aider", CLIENT_TITLES["aider"], model, ep, exports,
                       command=f"aider --model openai/{model} --no-show-model-warnings", notes=notes)


_BUILDERS: dict[str, Callable[[Endpoint, str, dict, Path], ClientSetup]] = {
    "codex": _codex, "claude": _claude, "openai": _openai, "llm": _llm, "aider": _aider}


def _tilde(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- --write

def write(cfg: RouterConfig, client_setup: ClientSetup, now: Callable[[], float] = time.time) -> WriteResult:
    """Edit the client's config file: a backup `<name>.bak-<time>` of the old one, then an atomic replace. Only
    our own keys change; the rest of the file is kept (for TOML and YAML as text, comments included). An
    unreadable or malformed file changes nothing: RouterError naming the file and line, exit 2."""
    s = client_setup
    if not s.writable or s.write_path is None:
        raise RouterError(f"{s.client} has no config file that connect edits; use the environment it prints",
                          hint=f'eval "$(llm-router connect {s.client} --env)"', exit_code=USAGE)
    path = s.write_path
    old = _read_client_file(path)
    if s.client == "codex":
        new, keys = codex_toml(old or "", codex_settings(s.endpoint, s.model), path)
    elif s.client == "claude":
        new, keys = claude_settings(old, claude_env(s.endpoint, s.model), s.endpoint.key.command, path)
    else:
        new, keys = llm_yaml(old, llm_entry(s.endpoint, s.model), path)
    return _replace(s.client, path, old, new, keys, now)


def _read_client_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise RouterError(f"cannot read {path}: {reason}; nothing was changed",
                          hint="fix the file's permissions or encoding, or add the snippet by hand",
                          exit_code=USAGE) from exc


def _replace(client: str, path: Path, old: str | None, new: str, keys: tuple[str, ...],
             now: Callable[[], float]) -> WriteResult:
    from .fsutil import atomic_write

    changed = new != old
    backup = None
    if changed:
        mode = path.stat().st_mode & 0o777 if old is not None else 0o600
        if old is not None:
            backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d%H%M%S', time.localtime(now()))}")
            atomic_write(backup, old, mode=mode)
        atomic_write(path, new, mode=mode)
    return WriteResult(client, path, changed, old is None, backup, keys)


def _malformed(path: Path, line: int | None, reason: str) -> RouterError:
    where = f"{path}:{line}" if line else str(path)
    return RouterError(f"{where}: {reason}; nothing was changed",
                       hint="fix the file (or move it away) and run again, or add the snippet by hand",
                       exit_code=USAGE)


# ---- TOML (Codex): a line-based edit of our own keys, proven by re-parsing

_HEADER = re.compile(r"^\s*(\[\[?)\s*(.*?)\s*(\]\]?)\s*(#.*)?$")
_KEY_PART = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*')


def _toml_key_path(text: str) -> tuple[str, ...] | None:
    """`model_providers."llm-router"` -> ('model_providers', 'llm-router'); None if it is not a plain key."""
    parts, pos = [], 0
    while True:
        m = _KEY_PART.match(text, pos)
        if not m:
            return None
        token = m.group(1)
        parts.append(json.loads(token) if token.startswith('"') else token.strip("'"))
        pos = m.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1


def _toml_regions(lines: list[str]) -> list[tuple[tuple[str, ...] | None, int, int]]:
    """(table path, first line, end line) of the top level (path ()) and of every [table]/[[array]] header."""
    regions, start, current = [], 0, ()
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m and line.lstrip().startswith("[") and "=" not in line.split("#")[0]:
            regions.append((current, start, i))
            path = _toml_key_path(m.group(2))
            current = path if m.group(1) == "[" and path is not None else None  # arrays: never ours
            start = i
    regions.append((current, start, len(lines)))
    return regions


def _set_in(data: dict, path: tuple[str, ...], key: str, value: Any) -> None:
    for part in path:
        data = data.setdefault(part, {})
    data[key] = value


def codex_toml(text: str, settings: list[tuple[str, str, Any]], path: Path) -> tuple[str, tuple[str, ...]]:
    """`text` with each (table, key, value) of `settings` set: an existing `key = ...` line of that table is
    replaced, a missing one is added to its table (a missing table at the end of the file). The result must parse
    to exactly the old document with these keys set, or nothing is written."""
    import tomllib

    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _malformed(path, _toml_error_line(exc), f"not valid TOML ({exc})") from exc
    expected = _plain(before)
    lines = text.splitlines()
    for table, key, value in settings:
        tpath = tuple(table.split(".")) if table else ()
        _set_in(expected, tpath, key, value)
        lines = _toml_set(lines, tpath, key, _toml_value(value))
    new = "\n".join(lines).rstrip("\n") + "\n"
    try:
        after: Any = _plain(tomllib.loads(new))
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise RouterError(f"{path}: cannot add the llm-router settings safely (the file defines model, "
                          f"model_provider, model_providers.{PROVIDER_ID}, analytics or features in a form "
                          f"connect does not edit, such as an inline table); nothing was changed",
                          hint="add the snippet of `llm-router connect codex` by hand", exit_code=USAGE)
    keys = tuple(f"{t + '.' if t else ''}{k}" for t, k, _ in settings)
    return new, keys


def _plain(value: Any) -> Any:
    """TOML data as plain JSON data (dates as strings), for comparing two parses."""
    return json.loads(json.dumps(value, default=str))


def _toml_error_line(exc: Exception) -> int | None:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _toml_set(lines: list[str], table: tuple[str, ...], key: str, rendered: str) -> list[str]:
    key_line = re.compile(rf'^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=')
    regions = [r for r in _toml_regions(lines) if r[0] == table]
    for _, start, end in regions:
        for i in range(start + (1 if table else 0), end):
            if key_line.match(lines[i]):
                return lines[:i] + [f"{key} = {rendered}"] + lines[i + 1:]
    if regions:  # the table exists: add the key after its last key line
        _, start, end = regions[0]
        at = end
        while at > start + (1 if table else 0) and not lines[at - 1].strip():
            at -= 1
        return lines[:at] + [f"{key} = {rendered}"] + lines[at:]
    header = "[" + ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else json.dumps(p) for p in table) + "]"
    tail = lines[:]
    while tail and not tail[-1].strip():
        tail.pop()
    return tail + ([""] if tail else []) + [header, f"{key} = {rendered}"]


# ---- JSON (Claude Code settings.json)

def claude_settings(text: str | None, variables: list[tuple[str, str]], key_command: str,
                    path: Path) -> tuple[str, tuple[str, ...]]:
    data: dict = {}
    if text is not None and text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _malformed(path, exc.lineno, f"not valid JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise _malformed(path, 1, "not a JSON object")
    env = data.get("env")
    if env is None:
        env = data["env"] = {}
    if not isinstance(env, dict):
        raise _malformed(path, _json_key_line(text or "", "env"), '"env" is not an object')
    for name, value in variables:
        env[name] = value
    env.pop("ANTHROPIC_AUTH_TOKEN", None)  # the key comes from apiKeyHelper, never from the file
    env.pop("ANTHROPIC_API_KEY", None)
    data["apiKeyHelper"] = key_command
    keys = ("apiKeyHelper", *(f"env.{n}" for n, _ in variables))
    return json.dumps(data, indent=2) + "\n", keys


def _json_key_line(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if f'"{key}"' in line:
            return i
    return None


# ---- YAML (llm's extra-openai-models.yaml): our entry replaced or appended as text

def llm_yaml(text: str | None, entry: dict, path: Path) -> tuple[str, tuple[str, ...]]:
    import yaml

    current: list = []
    if text is not None and text.strip():
        try:
            current = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise _malformed(path, mark.line + 1 if mark else None, "not valid YAML") from exc
        if current is None:
            current = []
        if not isinstance(current, list):
            raise _malformed(path, 1, "not a YAML list of models")
    expected = [m for m in current if not (isinstance(m, dict) and m.get("model_id") == entry["model_id"])]
    expected.append(entry)
    if len(expected) == len(current) + 1 and text is not None:  # a new entry: append it as text, keep the rest
        new = text.rstrip("\n") + "\n" + yaml.safe_dump([entry], sort_keys=False)
        if yaml.safe_load(new) == expected:
            return new, (f"model_id={entry['model_id']}",)
    return yaml.safe_dump(expected, sort_keys=False), (f"model_id={entry['model_id']}",)


# --------------------------------------------------------------------------- run

EXECUTABLES = {"codex": "codex", "claude": "claude", "llm": "llm", "aider": "aider"}


def run_env(cfg: RouterConfig, client_setup: ClientSetup, environ: dict | None = None) -> dict[str, str]:
    """The client's environment for one command: the current environment plus the setup's variables with the
    key's real value (held only by the child process)."""
    env = dict(os.environ if environ is None else environ)
    key = cfg.secret(MASTER_KEY_ENV, env)
    if not key:
        raise RouterError(f"no {MASTER_KEY_ENV} yet: it is generated when the stack first starts",
                          hint="llm-router service start all", exit_code=NOT_FOUND)
    s = client_setup
    ep = s.endpoint
    if s.client == "codex":
        env[ep.key.env] = key
    elif s.client == "claude":
        env.update(claude_env(ep, s.model))
        env["ANTHROPIC_AUTH_TOKEN"] = key
        env.pop("ANTHROPIC_API_KEY", None)  # it would be sent instead, as x-api-key
    elif s.client == "llm":
        env["OPENAI_API_KEY"] = key
    else:
        for var in s.env:
            env[var.name] = key if var.key else var.value
    return env


def run_argv(client_setup: ClientSetup, args: list[str], executable: str | None = None) -> list[str]:
    """The command line: `openai` runs ARGS as they are; codex gets `-c` overrides for our provider (its
    config.toml is not touched); aider gets `--model openai/<model>` unless ARGS name a model."""
    s = client_setup
    if s.client == "openai":
        if not args:
            raise RouterError("`run openai` needs a command to run with OPENAI_BASE_URL/OPENAI_API_KEY set",
                              hint="llm-router run openai -- python my_script.py", exit_code=USAGE)
        return list(args)
    exe = executable or shutil.which(EXECUTABLES[s.client])
    if not exe:
        raise RouterError(f"{EXECUTABLES[s.client]} is not on PATH",
                          hint=f"install {s.title} (see docs/clients.md)", exit_code=NOT_FOUND)
    if s.client == "codex":
        overrides = []
        for table, key, value in codex_settings(s.endpoint, s.model):
            overrides += ["-c", f"{table + '.' if table else ''}{key}={_toml_value(value)}"]
        return [exe, *overrides, *args]
    if s.client == "aider" and not any(a == "--model" or a.startswith("--model=") for a in args):
        return [exe, "--model", f"openai/{s.model}", *args]
    return [exe, *args]


def _in_terminal_foreground() -> bool:
    """Whether a Ctrl-C typed in our terminal reaches the child by itself (we share its foreground group)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _die_with_parent() -> None:  # in the child, before exec: Linux ends it if llm-router is killed outright
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(cfg: RouterConfig, client_setup: ClientSetup, args: list[str], executable: str | None = None,
        environ: dict | None = None, cwd: Path | None = None) -> RunResult:
    """Run the client in the foreground (same terminal and process group, its own output) and return its exit
    code. SIGTERM and SIGHUP are forwarded to it, and SIGINT too unless it came from our terminal (which delivers
    it to the client itself: a TUI's Ctrl-C must arrive once). When the client has not exited STOP_WAIT seconds
    after a forwarded SIGTERM/SIGHUP it is killed; on Linux it also gets SIGTERM if llm-router itself is killed.
    So it is never left running."""
    argv = run_argv(client_setup, args, executable)
    env = run_env(cfg, client_setup, environ)
    try:
        child = subprocess.Popen(argv, env=env, cwd=cwd,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except OSError as exc:
        raise RouterError(f"cannot run {argv[0]}: {exc.strerror or exc}", hint="check the client's installation",
                          exit_code=NOT_FOUND) from exc
    forwarded: list[int] = []
    deadline: list[float] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        if signum != signal.SIGINT and not deadline:
            deadline.append(time.monotonic() + STOP_WAIT)
        if signum == signal.SIGINT and _in_terminal_foreground():
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, forward)
    except ValueError:  # not the main thread: no handlers (a terminal's Ctrl-C still reaches the child)
        pass
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)  # a timeout, so that a forwarded signal's deadline is seen
                break
            except subprocess.TimeoutExpired:
                if deadline and time.monotonic() > deadline[0]:
                    child.kill()
    finally:
        if child.poll() is None:  # an exception of our own: never leave the client running
            child.kill()
            child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    returncode = 128 - code if code < 0 else code
    return RunResult(client_setup.client, tuple(argv), returncode, forwarded[0] if forwarded else None)
