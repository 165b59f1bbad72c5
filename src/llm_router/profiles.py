"""Policy profiles: discover, render, validate and write the LiteLLM proxy config (switch.py makes one live).

A profile is a Jinja2 template `<name>.yaml.j2`, looked up in the user's `config/profiles/` before the shipped
`templates/litellm/profiles/`; both extend `templates/litellm/base.yaml.j2`. Its first comment line is its
description. The template context is the validated routertool.yaml (providers, models, services) plus the
profile name; secrets appear only as `os.environ/NAME` references.

A rendered config is checked before anything is written (see `problems`), and every problem names the template
file and line that produced it. Activation writes `runtime/litellm/<name>.yaml`, `runtime/litellm/active.yaml`
and `runtime/active_profile.json` (`write_active`, all three or none); serving it on a running LiteLLM, and putting
the previous profile back when that fails, is switch.py's job.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jinja2
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from . import config as config_mod
from . import events, journal, yamlsafe
from .errors import NOT_FOUND, USAGE, RouterError
from .fsutil import atomic_write
from .layout import Layout

SUFFIX = ".yaml.j2"
BASE = "base"
SWITCH_EVENT = "profile_switch"
SECRET_KEYS = ("api_key", "master_key")
FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
REQUIRED = {  # dotted path -> value every profile must render
    "general_settings.master_key": f"os.environ/{config_mod.MASTER_KEY_ENV}",
    "general_settings.disable_spend_logs": True,
    "general_settings.disable_model_info_refresh": True,
    "litellm_settings.drop_params": True,
}
_DESCRIPTION = re.compile(r"^\s*(?:\{#-?|#)\s*(.*?)\s*(?:-?#\})?\s*$")


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    source: str  # "user" (config/profiles) or "shipped" (templates/litellm/profiles)
    description: str


@dataclass(frozen=True)
class Rendered:
    profile: Profile
    text: str
    origins: list[tuple[str, int] | None]  # per rendered line: (template file, line) that wrote it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def where(self, line: int | None) -> str:
        """`file:line` of the template that produced rendered line `line` (1-based)."""
        if line:
            for origin in self.origins[line - 1:]:  # a line without a mark came from an expression: use the next
                if origin:
                    return f"{origin[0]}:{origin[1]}"
        return str(self.profile.path)


# --------------------------------------------------------------------------- discovery

def available(cfg: config_mod.RouterConfig) -> list[Profile]:
    """Every profile by name, the user's shadowing a shipped one of the same name."""
    found: dict[str, Profile] = {}
    for source, folder in (("user", cfg.layout.user_profiles_dir), ("shipped", cfg.layout.shipped_profiles_dir)):
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            name = path.name[:-len(SUFFIX)]
            if name != BASE and config_mod.NAME.match(name) and name not in found:
                found[name] = Profile(name, path, source, _description(path))
    return sorted(found.values(), key=lambda p: p.name)


def find(cfg: config_mod.RouterConfig, name: str) -> Profile:
    """The profile called `name`; RouterError (not found) listing the available ones otherwise."""
    names = {p.name: p for p in available(cfg)}
    if name in names:
        return names[name]
    close = difflib.get_close_matches(name, list(names), n=1)
    raise RouterError(f"unknown profile '{name}' (available: {', '.join(names) or 'none'})"
                      + (f"; did you mean '{close[0]}'?" if close else ""),
                      hint=f"`llm-router profile list` shows them; add your own to {cfg.layout.user_profiles_dir} "
                           f"as {name}{SUFFIX}", exit_code=NOT_FOUND)


def _description(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return ""
    match = _DESCRIPTION.match(first)
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- rendering

class _LineOrigins(Extension):
    """Marks the end of every line of template text with its file and line, so that a problem found in the
    rendered YAML can be reported where the template wrote it. `_split_origins` removes the marks."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type == "data" and "\n" in token.value:
                lines = token.value.split("\n")
                marked = [f"{text}\ue000{stream.filename}\ue001{token.lineno + i}\ue002"
                          for i, text in enumerate(lines[:-1])]
                token = Token(token.lineno, "data", "\n".join(marked + lines[-1:]))
            yield token


_MARK = re.compile("\ue000([^\ue001]*)\ue001(\\d+)\ue002")


def _split_origins(marked: str) -> tuple[str, list[tuple[str, int] | None]]:
    text_lines, origins = [], []
    for line in marked.split("\n"):
        marks = _MARK.findall(line)
        origins.append((marks[-1][0], int(marks[-1][1])) if marks else None)
        text_lines.append(_MARK.sub("", line))
    return "\n".join(text_lines), origins


class _UnsafeOutput(ValueError):
    """A `{{ ... }}` produced a line break or control character that the template text did not write."""


_MARKED_LINE_END = "\ue002\n"  # how a line break of template text looks before `_split_origins` (see _LineOrigins)


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` output passes here: a value must not be able to end its YAML scalar (or the comment it is
    written into) and start a line of its own. Line breaks that the template text wrote (for example through
    `{{ super() }}`) carry their origin mark; any other line break or control character is refused."""
    if isinstance(value, str):
        for found in config_mod.CONTROL.finditer(value):
            char, at = found.group(), found.start()
            if char == "\t" or (char == "\n" and at > 0 and value.startswith(_MARKED_LINE_END, at - 1)):
                continue
            raise _UnsafeOutput(f"a value written here contains a control character ({yamlsafe.escape_char(char)}), "
                                "which could end its YAML scalar and add lines of its own; values must be one line "
                                "(write strings with |tojson)")
    return value


def _environment(cfg: config_mod.RouterConfig) -> jinja2.Environment:
    # Sandboxed: a template reaches only its context and the three template folders, never Python internals
    # (`cycler.__init__.__globals__`), the environment, commands or other files; the context is immutable.
    # The shipped base first, so that `base.yaml.j2` is always the skeleton; then the user's profiles, which
    # shadow the shipped ones.
    layout = cfg.layout
    loader = jinja2.FileSystemLoader([str(layout.litellm_templates_dir), str(layout.user_profiles_dir),
                                      str(layout.shipped_profiles_dir)])
    return ImmutableSandboxedEnvironment(loader=loader, undefined=jinja2.StrictUndefined, extensions=[_LineOrigins],
                                         trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                         autoescape=False, finalize=_finalize)


def context(cfg: config_mod.RouterConfig, name: str) -> dict:
    """What a template sees: the validated config (api_base and key variable resolved per provider) with every
    deployment's provider details and stable id, plus the profile name. Built from the typed config, never from
    a secret: the only secret-related strings are variable *names* (`api_key_env`), so no filter (`|reverse`,
    slicing...) can write a transformed secret."""
    providers = config_mod.providers_view(cfg)
    models = [{"name": group["name"],
               "deployments": [{**providers[d["provider"]], **d, "id": f"{group['name']}/{d['provider']}/{d['model']}"}
                               for d in group["deployments"]]}
              for group in config_mod.models_view(cfg)]
    limited = any(d.get("rpm") is not None or d.get("tpm") is not None for g in models for d in g["deployments"])
    # LiteLLM's pre-call checks every shipped profile lists: previous_response_id -> the deployment that answered it,
    # and deployment rpm/tpm limits enforced (shared through Redis) only when routertool.yaml sets one
    checks = ["responses_api_deployment_check", *(["enforce_model_rate_limits"] if limited else [])]
    result = {"profile": name, "providers": providers, "models": models, "services": config_mod.services_view(cfg),
              "pre_call_checks": checks}
    _refuse_unsafe_strings(result, "")
    return result


def _refuse_unsafe_strings(value: Any, path: str) -> None:
    """The context is validated config, whose strings never hold control characters (`config check` refuses them)
    or the private-use characters that mark template lines; a config that bypassed validation stops here."""
    if isinstance(value, str):
        if config_mod.CONTROL.search(value) or _MARK_CHARS.search(value):
            raise RouterError(f"the template context value {yamlsafe.one_line(path) or 'profile'} contains a "
                              "control character",
                              hint="run `llm-router config check`", exit_code=USAGE)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unsafe_strings(str(key), f"{path}.{key}" if path else str(key))
            _refuse_unsafe_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_unsafe_strings(item, f"{path}[{i}]")


_MARK_CHARS = re.compile("[\ue000-\ue002]")


def _render(cfg: config_mod.RouterConfig, profile: Profile) -> Rendered:
    env, values = _environment(cfg), context(cfg, profile.name)
    try:
        template = env.get_template(profile.path.name)
        marked = template.render(values)
    except jinja2.TemplateSyntaxError as exc:
        raise RouterError(f"{exc.filename or profile.path}:{exc.lineno}: template syntax error: {exc.message}",
                          hint="fix the template, then run `llm-router profile show " + profile.name + "`",
                          exit_code=USAGE) from None
    except jinja2.TemplateNotFound as exc:
        raise RouterError(f"{profile.path}: template '{exc.name}' not found",
                          hint=f"templates are looked up in {cfg.layout.litellm_templates_dir}, "
                               f"{cfg.layout.user_profiles_dir} and {cfg.layout.shipped_profiles_dir}",
                          exit_code=USAGE) from None
    except Exception as exc:
        where = _template_frame(exc.__traceback__)
        if where is None and not isinstance(exc, SecurityError):  # not raised by template code: a bug of ours
            raise
        if isinstance(exc, SecurityError):
            raise RouterError(f"{where or profile.path}: forbidden by the template sandbox: "
                              f"{yamlsafe.one_line(str(exc))}", exit_code=USAGE,
                              hint="templates see only their context (profile, models, providers, services); "
                                   "see docs/profiles.md") from None
        if isinstance(exc, _UnsafeOutput):
            raise RouterError(f"{where or profile.path}: unsafe value: {exc}", exit_code=USAGE,
                              hint="`llm-router config check` refuses control characters in the config; in a "
                                   "template, write computed strings with |tojson") from None
        what = "undefined variable" if isinstance(exc, jinja2.UndefinedError) else type(exc).__name__
        raise RouterError(f"{where}: {what}: {yamlsafe.one_line(str(exc))}", exit_code=USAGE,
                          hint="the context holds profile, models, providers and services; "
                               "see templates/litellm/base.yaml.j2") from None
    text, origins = _split_origins(marked)
    return Rendered(profile, text, origins)


def _template_frame(tb: types.TracebackType | None) -> str | None:
    """`file:line` of the innermost template frame of a Jinja2 traceback (Jinja2 rewrites them to point there)."""
    where = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(SUFFIX):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def render(cfg: config_mod.RouterConfig, name: str) -> str:
    """The profile's LiteLLM config, rendered and checked (RouterError naming file:line when invalid)."""
    return checked(cfg, find(cfg, name)).text


def checked(cfg: config_mod.RouterConfig, profile: Profile) -> Rendered:
    """The profile rendered, or RouterError (exit 2) listing every problem with its template file:line."""
    rendered = _render(cfg, profile)
    found = problems(cfg, rendered)
    if found:
        count = f"{len(found)} problems" if len(found) > 1 else "1 problem"
        raise RouterError(f"profile '{profile.name}' renders an invalid LiteLLM config ({count})"
                          + (f": {found[0]}" if len(found) == 1 else ":"),
                          hint=f"fix the template lines listed, then run `llm-router profile show {profile.name}`",
                          exit_code=USAGE, details=found)
    return rendered


# --------------------------------------------------------------------------- validation

def problems(cfg: config_mod.RouterConfig, rendered: Rendered) -> list[str]:
    """Everything wrong with a rendered config, each as `template-file:line: message`."""
    try:  # the one YAML reader: duplicate keys and alias bombs are refused here too
        node, data = config_mod.load_yaml(rendered.text)
    except config_mod.YAMLProblem as exc:
        return [f"{rendered.where(exc.line)}: {exc.message}"]
    if not isinstance(data, dict):
        return [f"{rendered.where(1)}: the config must be a mapping of keys"]
    lines: dict[str, int] = {}
    yamlsafe.index_lines(node, "", lines)
    found: list[str] = []

    def add(path: str, message: str) -> None:
        while path not in lines and re.search(r"[.\[]", path):
            path = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path)
        found.append(f"{rendered.where(lines.get(path))}: {message}")

    groups = _check_model_list(cfg, data, add)
    for section in ("router_settings", "litellm_settings"):
        settings = _mapping(data, section)
        for key in FALLBACK_KEYS:
            _check_fallbacks(settings.get(key), f"{section}.{key}", groups, add)
        defaults = settings.get("default_fallbacks")
        for i, target in enumerate(defaults if isinstance(defaults, list) else []):
            if target not in groups:
                add(f"{section}.default_fallbacks[{i}]", f"fallback target '{target}' is not a model group")
    for dotted, value in REQUIRED.items():
        section, key = dotted.split(".")
        if _mapping(data, section).get(key) != value:
            add(dotted, f"{dotted} must be {json.dumps(value)} in every profile")
    allowed = set(cfg.secret_names())
    for path, key, value in _strings(data, ""):
        if value.startswith("os.environ/") and value[len("os.environ/"):] not in allowed:
            add(path, f"os.environ/{value[len('os.environ/'):]} is not a variable llm-router knows "
                      f"(known: {', '.join(sorted(allowed))})")
        elif key in SECRET_KEYS and not value.startswith("os.environ/"):
            add(path, f"{key} must be an os.environ/NAME reference, not a literal value")
    secrets = [s for s in cfg.known_secrets() if len(s) >= events.MIN_SECRET_LEN]
    for number, line in enumerate(rendered.text.splitlines(), 1):
        if any(s in line for s in secrets):
            found.append(f"{rendered.where(number)}: the rendered config contains the value of a secret; "
                         "reference it as os.environ/NAME")
    return list(dict.fromkeys(found))  # a template line inside a loop reports its problem once


def _check_model_list(cfg: config_mod.RouterConfig, data: dict, add) -> set[str]:
    """The deployments: configured group names, existing providers, unique ids, explicit order and cooldown."""
    entries = data.get("model_list")
    if not isinstance(entries, list) or not entries:
        add("model_list", "model_list must be a non-empty list of deployments")
        return set()
    names = {g.name for g in cfg.models}
    groups: set[str] = set()
    ids: set[str] = set()
    for i, entry in enumerate(entries):
        path = f"model_list[{i}]"
        entry = entry if isinstance(entry, dict) else {}
        group, params, info = entry.get("model_name"), _mapping(entry, "litellm_params"), _mapping(entry, "model_info")
        if group not in names:
            add(f"{path}.model_name", f"model group '{group}' is not a models[].name of {cfg.path.name} "
                                      f"(clients only send those: {', '.join(sorted(names))})")
        groups.add(group)
        dep_id = str(info.get("id", ""))
        parts = dep_id.split("/", 2)
        if len(parts) != 3 or parts[0] != group:
            add(f"{path}.model_info", f"model_info.id must be '<group>/<provider>/<model>', got '{dep_id}'")
        elif parts[1] not in cfg.providers:
            add(f"{path}.model_info.id", f"deployment '{dep_id}' names unknown provider '{parts[1]}' "
                                         f"(known: {', '.join(sorted(cfg.providers))})")
        if dep_id in ids:
            add(f"{path}.model_info.id", f"deployment id '{dep_id}' is used twice")
        ids.add(dep_id)
        for key in ("order", "cooldown_time"):
            value = params.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                add(f"{path}.litellm_params.{key}", f"litellm_params.{key} must be a positive number on every "
                                                    f"deployment, got {json.dumps(value)}")
    for name in sorted(names - groups):
        add("model_list", f"model group '{name}' (models[].name) has no deployment")
    return groups


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _check_fallbacks(value: Any, path: str, groups: set[str], add) -> None:
    """`[{group: [target, ...]}, ...]`: known groups, never a group falling back to itself."""
    if value is None:
        return
    if not isinstance(value, list):
        add(path, f"{path} must be a list of {{group: [targets]}}")
        return
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            add(f"{path}[{i}]", f"{path}[{i}] must be a mapping {{group: [targets]}}")
            continue
        for source, targets in entry.items():
            if source != "*" and source not in groups:
                add(f"{path}[{i}].{source}", f"fallbacks for '{source}', which is not a model group")
            for j, target in enumerate(targets if isinstance(targets, list) else [targets]):
                if target == source:
                    add(f"{path}[{i}].{source}[{j}]", f"model group '{source}' falls back to itself")
                elif target not in groups:
                    add(f"{path}[{i}].{source}[{j}]", f"fallback target '{target}' is not a model group")


def _strings(value: Any, path: str, key: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted path, key, value) of every string in the document."""
    if isinstance(value, str):
        yield path, key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k), str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]", key)


# --------------------------------------------------------------------------- activation

def active(cfg: config_mod.RouterConfig) -> dict | None:
    """The active profile (`name, sha256, time, template`), or None when none was activated."""
    return journal.read_active(cfg.layout)


def ensure_active(cfg: config_mod.RouterConfig) -> dict:
    """The active profile; when none is (or its config file is gone), activate `default_profile` (or the one
    named in active_profile.json). Services are not touched. The caller holds the runtime lock (LiteLLM's start;
    `up` through switch.ensure_active)."""
    info = active(cfg)
    if info and cfg.layout.active_config.is_file():
        return info
    rendered = checked(cfg, find(cfg, info["name"] if info else cfg.default_profile))
    info, _ = write_active(cfg, rendered)
    _event(cfg, rendered.profile.name, "ok", {"reason": "nothing was active", "sha256": info["sha256"]})
    return info


def write_active(cfg: config_mod.RouterConfig, rendered: Rendered,
              journal_from: str | None = None) -> tuple[dict, dict[Path, bytes | None]]:
    """Write the profile's file, the active config and its info; on failure all three are put back as they were.
    With `journal_from` (the previous profile's name, "" for none) the previous content is first written to the
    switch journal, so that a switch killed half-way is rolled back by the next command (switch.reconcile).
    Returns the new info and the previous content of the files (None: the file did not exist)."""
    layout = cfg.layout
    own = layout.profile_config(rendered.profile.name)
    info = {"name": rendered.profile.name, "sha256": rendered.sha256, "time": events.now_iso(),
            "template": str(rendered.profile.path), "config": str(own)}
    writes = {own: rendered.text, layout.active_config: rendered.text,
              layout.active_profile_file: json.dumps(info, indent=2) + "\n"}
    saved = {path: _read_bytes(path) for path in writes}
    if journal_from is not None:
        journal.begin(layout, rendered.profile.name, journal_from or None, saved)
    written: list[Path] = []
    try:
        for path, text in writes.items():
            atomic_write(path, text)
            written.append(path)
    except BaseException:
        restore_files({path: saved[path] for path in written}, layout)  # a write that failed changed nothing
        raise
    return info, saved


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def restore_files(saved: dict[Path, bytes | None], layout: Layout) -> None:
    """Put the files back; once they all are, the switch journal has nothing left to do and is removed."""
    failed = False
    for path, data in saved.items():
        try:
            if data is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, data)
        except (RouterError, OSError):
            failed = True
    if not failed:
        with contextlib.suppress(OSError):
            journal.clear(layout)


def _event(cfg: config_mod.RouterConfig, profile: str, result: str, detail: dict) -> None:
    events.for_config(cfg).append(SWITCH_EVENT, service="litellm", profile=profile, result=result, detail=detail)


# --------------------------------------------------------------------------- comparison

def diff(cfg: config_mod.RouterConfig, a: str, b: str) -> str:
    """A unified diff of two rendered profiles ("" when they render the same)."""
    text_a, text_b = render(cfg, a), render(cfg, b)
    return "".join(difflib.unified_diff(text_a.splitlines(keepends=True), text_b.splitlines(keepends=True),
                                        fromfile=f"{a}.yaml", tofile=f"{b}.yaml"))
