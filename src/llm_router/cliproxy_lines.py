"""The CLIProxyAPI lines a user can have, what each serves, and a probe of what a binary actually offers.

Upstream facts (docs/cliproxy-lines.md has the sources):

- **Plus 6.x** (`router-for-me/CLIProxyAPIPlus`, tags `v6.X.Y-N`, banner `<tag>-plus`): Codex and Copilot. The
  repository answers 404 since April 2026; 6.9.28-0 was about the last build.
- **Mainline 7.x** (`router-for-me/CLIProxyAPI`, tags `v7.X.Y`, banner `<tag>`, assets `CLIProxyAPI_...` holding
  `cli-proxy-api`): Codex, no GitHub Copilot (issue #854, PR #5661 still open).
- **Plus forks on 7.x** (e.g. `kaitranntt/CLIProxyAPIPlus`, tags `v7.X.Y-N`, assets `CLIProxyAPIPlus_...` holding
  `cli-proxy-api-plus`): mainline plus Copilot (`-github-copilot-login`, `/github-auth-url`, `/copilot-quota`)
  and the in-memory `/usage`.

Versions only give a first guess (`expected_features`); `probe_help` (the `-h` flag list) and `probe_server` (a
running server's routes, asked without side effects) say what is really there. Standard library only: the
stand-in imports the model catalogue from here.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

# --------------------------------------------------------------------------- model catalogue

# Reference §4: the [P] v6.6.9-0 list plus the [U] v6.9.28 catalogue; spark needs a plus or pro plan.
CODEX_MODELS = (
    "gpt-5", "gpt-5-codex", "gpt-5-codex-mini", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-mini",
    "gpt-5.1-codex-max", "gpt-5.2", "gpt-5.3-codex", "gpt-5.4", "gpt-5.4-mini",
)
CODEX_PAID_MODELS = ("gpt-5.3-codex-spark",)
COPILOT_MODELS = (
    "gpt-4.1", "gpt-5", "gpt-5-mini", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-mini",
    "claude-haiku-4.5", "claude-opus-4.1", "claude-opus-4.5", "claude-sonnet-4", "claude-sonnet-4.5",
    "gemini-2.5-pro", "gemini-3-pro", "grok-code-fast-1", "raptor-mini",
)
PROVIDER_OWNERS = {"codex": "openai", "github-copilot": "github-copilot"}
CODEX = "codex"
COPILOT = "github-copilot"


def oauth_providers_for(model: str, copilot: bool = True) -> set[str]:
    """Which OAuth account types can serve `model` (a `model(high)` thinking suffix is ignored); `copilot=False`
    for a line without Copilot."""
    base = re.sub(r"\([^()]*\)$", "", model)
    found = set()
    if base in CODEX_MODELS or base in CODEX_PAID_MODELS:
        found.add(CODEX)
    if copilot and base in COPILOT_MODELS:
        found.add(COPILOT)
    return found


# --------------------------------------------------------------------------- lines

PLUS_6 = "plus-6"
MAINLINE_7 = "mainline-7"
PLUS_FORK_7 = "plus-fork-7"


@dataclass(frozen=True)
class Line:
    key: str
    title: str
    project: str  # the release assets' prefix, GoReleaser's ProjectName
    binary: str  # the executable inside the archive (`.exe` on Windows)
    copilot: bool
    summary: str


LINES = {
    PLUS_6: Line(PLUS_6, "CLIProxyAPIPlus 6.x", "CLIProxyAPIPlus", "cli-proxy-api-plus", True,
                 "Codex and GitHub Copilot; the official repository is gone (404 since April 2026)"),
    MAINLINE_7: Line(MAINLINE_7, "CLIProxyAPI mainline 7.x", "CLIProxyAPI", "cli-proxy-api", False,
                     "Codex, no GitHub Copilot (upstream issue #854, PR #5661 still open)"),
    PLUS_FORK_7: Line(PLUS_FORK_7, "CLIProxyAPIPlus fork on 7.x", "CLIProxyAPIPlus", "cli-proxy-api-plus", True,
                      "mainline 7.x plus GitHub Copilot (-github-copilot-login, /github-auth-url, /copilot-quota)"),
}

# Repositories llm-router knows, for the "repository is gone" error and `doctor`.
GONE_REPOSITORY = "router-for-me/CLIProxyAPIPlus"
KNOWN_REPOSITORIES = {
    "kaitranntt/CLIProxyAPIPlus": (PLUS_FORK_7, "community Plus fork on 7.x: Codex and GitHub Copilot"),
    "router-for-me/CLIProxyAPI": (MAINLINE_7, "the official mainline: Codex, no GitHub Copilot"),
}
DEFAULT_REPOSITORY = "kaitranntt/CLIProxyAPIPlus"  # Copilot needs a Plus line; this one is alive and synced daily

SAMPLE_API_KEYS = frozenset({"your-api-key-1", "your-api-key-2", "your-api-key-3"})  # v7.1.46 safe mode


def is_sample_key(key: str) -> bool:
    """A template key from config.example.yaml: v7.1.46+ disables every proxy route (403) while one is set."""
    return str(key).strip() in SAMPLE_API_KEYS


def continuations_text(repository: str | None = None) -> str:
    """One sentence naming the known live repositories, what each supports and the command that picks one."""
    parts = [f"{name} ({what}): llm-router bootstrap download --repository {name}"
             for name, (_, what) in KNOWN_REPOSITORIES.items() if name != repository]
    return "known continuations: " + "; ".join(parts)


def version_tuple(version: str) -> tuple[int, int, int]:
    numbers = [int(part) for part in re.findall(r"\d+", version or "")[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def plain_version(version: str | None) -> str:
    return (version or "").strip().removeprefix("v").removesuffix("-plus")


def classify(version: str, asset_or_binary: str | None = None) -> Line:
    """The line of a build, from its version (banner or tag) and, when known, its asset or binary name.
    Plus builds carry a `-N` build number (`6.9.28-0`, `7.1.68-6`) or a `-plus` suffix; mainline tags do not."""
    name = (asset_or_binary or "").rsplit("/", 1)[-1]
    plus = None
    if name:
        plus = name.startswith(("CLIProxyAPIPlus_", "cli-proxy-api-plus"))
    if plus is None:
        plus = bool(re.search(r"\d+\.\d+\.\d+-\d+", version or "")) or (version or "").endswith("-plus")
    if not plus:
        return LINES[MAINLINE_7]
    return LINES[PLUS_FORK_7] if version_tuple(version)[0] >= 7 else LINES[PLUS_6]


# --------------------------------------------------------------------------- features

# Where each feature appeared (mainline source, router-for-me/CLIProxyAPI; see docs/cliproxy-lines.md).
HEALTHZ = (6, 9, 10)
HEALTHZ_HEAD = (6, 9, 31)
CODEX_DEVICE_LOGIN = (6, 8, 27)
USAGE_REMOVED = (6, 10, 0)  # mainline only; the Plus forks keep /usage
SESSION_AFFINITY = (6, 9, 27)
ROUTING_STRATEGY = (6, 9, 0)
RESET_QUOTA = (7, 2, 22)
SAFE_MODE = (7, 1, 46)
GITHUB_AUTH_URL = (6, 9, 0)  # Plus; the first build with it is UNCONFIRMED (reference §5), so it is probed
LOCALHOST_BAN = (7, 0, 0)  # v7's AuthenticateManagementKey counts local failures too


@dataclass
class Features:
    """What a CLIProxyAPI build offers. `source` says how each field was learnt: expected (from the version),
    help (the `-h` flag list) or server (asked over HTTP)."""

    version: str
    line: str
    copilot_login: bool = False  # -github-copilot-login
    codex_device_login: bool = False
    healthz: bool = False
    healthz_head: bool = False
    management: str = "unknown"  # ok | off (404: no key, or v7's Home control plane) | rejected | unknown
    github_auth_url: bool = False
    copilot_quota: bool = False
    reset_quota: bool = False
    usage: bool = False
    routing_strategy: bool = False
    session_affinity: bool = False
    safe_mode: bool = False  # sample api-keys disable the proxy routes
    localhost_ban: bool = False
    source: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_features(version: str, asset_or_binary: str | None = None) -> Features:
    """The features a build of `version` should have, before anything is probed."""
    line = classify(version, asset_or_binary)
    v = version_tuple(plain_version(version))
    plus = line.copilot
    features = Features(
        version=plain_version(version), line=line.key,
        copilot_login=plus,
        codex_device_login=v >= CODEX_DEVICE_LOGIN,
        healthz=v >= HEALTHZ, healthz_head=v >= HEALTHZ_HEAD,
        github_auth_url=plus and v >= GITHUB_AUTH_URL,
        copilot_quota=line.key == PLUS_FORK_7,
        reset_quota=v >= RESET_QUOTA,
        usage=plus or v < USAGE_REMOVED,
        routing_strategy=v >= ROUTING_STRATEGY,
        session_affinity=v >= SESSION_AFFINITY,
        safe_mode=v >= SAFE_MODE,
        localhost_ban=v >= LOCALHOST_BAN,
    )
    features.source = {name: "expected" for name in _FEATURE_FIELDS}
    return features


_FEATURE_FIELDS = ("copilot_login", "codex_device_login", "healthz", "healthz_head", "management", "github_auth_url",
                   "copilot_quota", "reset_quota", "usage", "routing_strategy", "session_affinity", "safe_mode",
                   "localhost_ban")
_FLAG = re.compile(r"^\s+-([A-Za-z0-9][\w-]*)", re.MULTILINE)


def help_flags(help_text: str) -> set[str]:
    """Flag names in Go `flag` usage output (`  -config string`)."""
    return set(_FLAG.findall(help_text or ""))


def probe_help(features: Features, help_text: str) -> Features:
    """Correct the login features from the binary's own `-h` flag list (when it printed one)."""
    flags = help_flags(help_text)
    if "config" not in flags:
        return features  # not a usage listing: keep the expectation
    features.copilot_login = "github-copilot-login" in flags
    features.codex_device_login = "codex-device-login" in flags
    features.source.update(copilot_login="help", codex_device_login="help")
    return features


def _request(method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float) -> tuple[int, dict]:
    import urllib.error  # here: `status` reads the line from this module and never makes a request
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never a proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items())


def probe_server(features: Features, base_url: str, management_key: str | None, timeout: float = 3.0) -> Features:
    """Ask a running server what it serves, without side effects: `/healthz` (GET, HEAD), the management API
    (`GET /config`), `POST /reset-quota` with an empty body (400 when present), `GET /usage`, `GET
    /routing/strategy`. `/github-auth-url` and `/copilot-quota` are never called (they start a device flow or ask
    GitHub): a Plus build that lists `-github-copilot-login` is taken to have them. At most one key is sent per
    route, and only a key we own: v7 bans even localhost after five bad keys. Unreachable: OSError."""
    base = base_url.rstrip("/")
    for method, name in (("GET", "healthz"), ("HEAD", "healthz_head")):
        status, _ = _request(method, base + "/healthz", {}, None, timeout)
        setattr(features, name, status == 200)
        features.source[name] = "server"
    if not management_key:
        return features
    auth = {"Authorization": f"Bearer {management_key}"}
    status, headers = _request("GET", base + "/v0/management/config", auth, None, timeout)
    features.management = {200: "ok", 404: "off", 401: "rejected", 403: "rejected"}.get(status, "unknown")
    features.source["management"] = "server"
    reported = {k.lower(): v for k, v in headers.items()}.get("x-cpa-version")
    if reported:
        features.version = plain_version(reported)
    if features.management != "ok":
        return features
    json_auth = {**auth, "Content-Type": "application/json"}
    checks = (("reset_quota", "POST", "/reset-quota", b"{}", (400, 200)),
              ("usage", "GET", "/usage", None, (200,)),
              ("routing_strategy", "GET", "/routing/strategy", None, (200,)))
    for name, method, path, body, present in checks:
        status, _ = _request(method, base + "/v0/management" + path, json_auth if body else auth, body, timeout)
        setattr(features, name, status in present)
        features.source[name] = "server"
    if features.source.get("copilot_login") == "help":
        features.github_auth_url = features.github_auth_url and features.copilot_login
        features.copilot_quota = features.copilot_quota and features.copilot_login
    return features


def missing(features: Features) -> list[str]:
    """What this build lacks that llm-router can use, one short phrase each (for `doctor` and `status`)."""
    gaps = []
    if not features.copilot_login:
        gaps.append("no GitHub Copilot (use a Plus line for Copilot accounts)")
    elif not features.github_auth_url:
        gaps.append("no /github-auth-url (Copilot login runs the binary's -github-copilot-login instead)")
    if not features.codex_device_login:
        gaps.append("no -codex-device-login")
    if not features.healthz:
        gaps.append("no /healthz (readiness uses /v1/models)")
    if not features.reset_quota:
        gaps.append("no reset-quota (a cooled-down account waits, or restart the service)")
    if not features.session_affinity:
        gaps.append("no routing.session-affinity")
    if features.management == "off":
        gaps.append("management API answers 404 (no key, or the Home control plane is on)")
    elif features.management == "rejected":
        gaps.append("management key rejected (restart the service so it reads llm-router's key)")
    return gaps


def describe(features: Features) -> str:
    line = LINES[features.line]
    return f"{line.title} {features.version}: {line.summary}"




# --------------------------------------------------------------------------- release assets

ASSET = re.compile(r"^(?P<project>CLIProxyAPI(?:Plus)?)_(?P<version>[^_/]+)_(?P<os>[a-z0-9]+)_(?P<arch>[a-z0-9]+)"
                   r"(?P<variant>_no-plugin)?\.(?P<ext>tar\.gz|zip)$")
# GoReleaser named arm64 `arm64`; mainline's own release workflow (from 2026-06-07) names it `aarch64`.
ARCH_NAMES = {"amd64": ("amd64", "x86_64"), "arm64": ("arm64", "aarch64")}


@dataclass(frozen=True)
class Asset:
    name: str
    project: str
    version: str
    os: str
    arch: str
    no_plugin: bool

    @property
    def line(self) -> Line:
        return classify(self.version, self.name)

    @property
    def binary(self) -> str:
        return self.line.binary


def parse_asset(name: str) -> Asset | None:
    match = ASSET.match(name or "")
    if not match:
        return None
    return Asset(name, match["project"], match["version"], match["os"], match["arch"], bool(match["variant"]))


def pick_asset(names: Iterable[str], os_name: str, arch: str) -> Asset | None:
    """The archive for this platform among a release's asset names, whatever the line. Preference: a Plus asset
    over a mainline one when a release has both (Plus is mainline plus Copilot), then the default build over
    `_no-plugin`, then the arch spelling GoReleaser used."""
    aliases = ARCH_NAMES.get(arch, (arch,))
    found = [asset for asset in map(parse_asset, names)
             if asset and asset.os == os_name and asset.arch in aliases]
    if not found:
        return None
    return min(found, key=lambda a: (a.project != "CLIProxyAPIPlus", a.no_plugin, aliases.index(a.arch), a.name))
