"""`llm-router connect CLIENT --write`: edit the client's own config file (Codex's config.toml, Claude Code's
settings.json, llm's extra-openai-models.yaml).

A backup of the old file first, then an atomic replace; only our own keys change, the rest of the file is kept
(for TOML and YAML as text, comments included). An unreadable or malformed file changes nothing: RouterError
naming the file and line, exit 2.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .client_setup import PROVIDER_ID, ClientSetup, claude_env, codex_settings, llm_entry, toml_value
from .config import RouterConfig
from .errors import USAGE, RouterError


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
        lines = _toml_set(lines, tpath, key, toml_value(value))
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
