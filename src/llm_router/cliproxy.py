"""CLIProxyAPIPlus: the runtime config derived from the user's file, and a client for its management API.

The binary bcrypt-hashes a plaintext `remote-management.secret-key` and rewrites its config file, so it is never
started on the user's file: `write_runtime_config` derives `.router/runtime/cliproxyapi.yaml` (0600) on every
start, with the keys llm-router must control enforced, and `routing.session-affinity: true` added where the installed
line has it and the user's file does not set it (`session_affinity_rule`).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import yaml

from . import keys
from .config import UPSTREAM_KEY_ENV, RouterConfig
from .errors import AUTH, NOT_FOUND, UNAVAILABLE, USAGE, RouterError
from .fsutil import atomic_write, ensure_private_dir
from .supervisor.health import loopback_opener

SERVICE = "cliproxyapi_plus"
# The keys that switch CLIProxyAPI's session affinity (sdk/cliproxy/builder.go, 7c24d54ca, v6.9.27): either one on
# turns it on; `claude-code-session-affinity` is the deprecated alias. A user's file that sets either keeps its value.
AFFINITY_KEYS = ("session-affinity", "claude-code-session-affinity")


def user_config(cfg: RouterConfig) -> dict:
    """The user's CLIProxyAPIPlus config (services.cliproxyapi_plus.config_file) as a mapping; {} when unset."""
    svc = cfg.services[SERVICE]
    if svc.config_file is None or not svc.config_file.exists():
        return {}
    try:
        loaded = yaml.safe_load(svc.config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RouterError(f"cannot read services.cliproxyapi_plus.config_file {svc.config_file}: "
                          f"{str(exc).splitlines()[0]}", hint="fix the YAML, or start from "
                          "config/examples/cliproxyapi.yaml", exit_code=USAGE) from None
    if loaded is not None and not isinstance(loaded, dict):
        raise RouterError(f"{svc.config_file}: a CLIProxyAPIPlus config must be a mapping", exit_code=USAGE)
    return loaded or {}


def leaves_affinity_to_us(user: dict) -> bool:
    """Whether the user's config leaves session affinity unset: `routing` absent, or a mapping with neither key."""
    routing = user.get("routing")
    return routing is None or (isinstance(routing, dict) and not any(key in routing for key in AFFINITY_KEYS))


def session_affinity_rule(user: dict, features) -> dict | None:
    """The `routing` mapping to write: the user's with `session-affinity: true` added when the installed line has it
    (`features.session_affinity`) and the user's config leaves it unset; None to leave `routing` as the user wrote it
    (a line without the feature, an unknown binary, an explicit user value, a `routing` that is not a mapping).
    CLIProxyAPI then keeps a session (a session header, `metadata.user_id`, `prompt_cache_key` on 7.2.103+, or the
    first messages) on the account that served it; docs/clients.md says what a client sends."""
    if features is None or not getattr(features, "session_affinity", False) or not leaves_affinity_to_us(user):
        return None
    return {**(user.get("routing") or {}), "session-affinity": True}


def runtime_config(cfg: RouterConfig, features=None, user: dict | None = None) -> dict:
    """The user's CLIProxyAPIPlus config with the enforced keys applied (pure; nothing is written). `features` is
    what the installed binary offers (cliproxy_lines.Features; None: unknown, so no routing key is added)."""
    svc = cfg.services[SERVICE]
    user = user_config(cfg) if user is None else user
    upstream_key = keys.ensure_key(cfg, UPSTREAM_KEY_ENV)
    management_key = keys.ensure_key(cfg, keys.MANAGEMENT_KEY)
    from .cliproxy_lines import is_sample_key

    if is_sample_key(upstream_key):
        raise RouterError(f"{UPSTREAM_KEY_ENV} is a sample key from config.example.yaml: CLIProxyAPI 7.1.46+ "
                          "disables every proxy route while one is configured (safe mode)",
                          hint=f"unset {UPSTREAM_KEY_ENV} so llm-router generates one, or set a random value",
                          exit_code=USAGE)
    enforced = dict(user)
    enforced.update({
        "host": svc.host,
        "port": svc.port,
        "auth-dir": str(cfg.layout.auths_dir),
        "api-keys": [upstream_key],
    })
    remote = dict(user.get("remote-management") or {})
    remote.update({"allow-remote": False, "secret-key": management_key, "disable-control-panel": True})
    enforced["remote-management"] = remote
    routing = session_affinity_rule(user, features)
    if routing is not None:
        enforced["routing"] = routing
    return enforced


def write_runtime_config(cfg: RouterConfig, features=None) -> str:
    """Write the runtime config (0600) and make sure the auth folder exists (0700); returns its path. Without
    `features`, and only when the user's config leaves session affinity unset, the installed binary's `-h` banner
    says which line it is (a binary that does not answer is taken to lack it; its start reports the rest)."""
    layout = cfg.layout
    ensure_private_dir(layout.auths_dir)
    user = user_config(cfg)
    if features is None and leaves_affinity_to_us(user):
        try:
            features = installed_features(cfg)
        except (RouterError, OSError, ValueError, KeyError):
            features = None
    header = ("# Generated by llm-router from services.cliproxyapi_plus.config_file on every start: do not edit.\n"
              "# CLIProxyAPIPlus rewrites this file (it hashes the management key).\n")
    body = yaml.safe_dump(runtime_config(cfg, features, user), sort_keys=False, default_flow_style=False)
    atomic_write(layout.cliproxy_runtime_config, header + body, mode=0o600)
    return str(layout.cliproxy_runtime_config)


class Management:
    """A small client for `/v0/management/*` on the local CLIProxyAPIPlus, authenticated with our key."""

    def __init__(self, cfg: RouterConfig, timeout: float = 5.0):
        self.base_url = cfg.services[SERVICE].base_url + "/v0/management"
        self.key = keys.ensure_key(cfg, keys.MANAGEMENT_KEY)
        self.timeout = timeout

    def request(self, method: str, path: str, params: dict | None = None, body: Any = None,
                allow: tuple[int, ...] = ()) -> tuple[int, Any]:
        """Send one request; returns (status, parsed JSON or text). Auth and availability errors raise."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with loopback_opener().open(request, timeout=self.timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, _decode(exc.read())
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            raise RouterError(f"CLIProxyAPIPlus is not reachable at {self.base_url}: "
                              f"{getattr(exc, 'reason', exc)}",
                              hint="start it with `llm-router service start cliproxyapi_plus`",
                              exit_code=UNAVAILABLE) from None
        if status in allow:
            return status, payload
        if status in (401, 403):
            raise RouterError(f"CLIProxyAPIPlus rejected the management key (HTTP {status}: {_message(payload)})",
                              hint="restart it with `llm-router service restart cliproxyapi_plus` so it reads "
                                   "the key llm-router keeps in .router/secrets", exit_code=AUTH)
        if status == 404:
            raise RouterError(f"CLIProxyAPIPlus has no management route {path} (HTTP 404)",
                              hint="the management API is off or this release lacks the route; "
                                   "`llm-router service restart cliproxyapi_plus` re-enables the API",
                              exit_code=NOT_FOUND)
        raise RouterError(f"CLIProxyAPIPlus management {method} {path} failed: HTTP {status} {_message(payload)}",
                          exit_code=UNAVAILABLE)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)[1]


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error or payload.get("message") or payload)
    return str(payload)[:200]


def installed_features(cfg: RouterConfig, ask_server: bool = False):
    """What the installed CLIProxyAPI binary offers (cliproxy_lines.Features), or None when none is installed.

    The version and line come from the banner (and the manifest's asset name), the logins from `-h`, and with
    `ask_server` the routes from the running server (read-only calls with our management key, never generating
    it). Used by `doctor`; `service start`, `status` and `auth` can call it after the readiness wait."""
    from . import cliproxy_binary, cliproxy_lines

    binary = cfg.layout.cliproxy_binary
    if not binary.is_file():
        return None
    code, output = cliproxy_binary.probe(binary)
    match = cliproxy_binary.BANNER.search(output)
    if not match:
        return None
    manifest = cliproxy_binary.read_manifest(cfg.layout.bin_manifest) or {}
    features = cliproxy_lines.expected_features(match.group(1), manifest.get("asset"))
    cliproxy_lines.probe_help(features, output)
    if ask_server:
        try:
            cliproxy_lines.probe_server(features, cfg.services[SERVICE].base_url, cfg.secret(keys.MANAGEMENT_KEY))
        except OSError:
            pass  # not reachable: keep what the binary said
    return features
