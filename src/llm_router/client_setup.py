"""What each client needs to use the stack: the clients llm-router knows, the typed configuration
(`ClientSetup`: environment, config-file snippets, example command, notes) and one builder per client.

The builders take the stack's `Endpoint` and decide nothing about the stack itself (`connect.setup` does); the
settings they list (`codex_settings`, `claude_env`, `llm_entry`) are the same ones `client_files` writes and
`client_run` sets for one command. Facts about each client are in docs/clients.md.
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


# --------------------------------------------------------------------------- each client's configuration

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


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _toml_str(str(value))


def _codex(ep: Endpoint, model: str, env: dict, home: Path) -> ClientSetup:
    path = codex_home(env, home) / "config.toml"
    tables: dict[str, list[str]] = {}
    for table, key, value in codex_settings(ep, model):
        tables.setdefault(table, []).append(f"{key} = {toml_value(value)}")
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


BUILDERS: dict[str, Callable[[Endpoint, str, dict, Path], ClientSetup]] = {
    "codex": _codex, "claude": _claude, "openai": _openai, "llm": _llm, "aider": _aider}


def _tilde(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)
