"""Secrets hygiene of a checkout: sensitive files tracked by git, secrets in tracked files, private modes of
secret and auth files, and the .gitignore rules that keep local state out of commits.

`fix=True` repairs modes and appends missing ignore rules; it never deletes or untracks a file.
A line may opt out of the content scan with the marker `pragma: allowlist secret` (the detect-secrets convention).
"""
from __future__ import annotations

import fnmatch
import os
import re
import stat
import subprocess
from pathlib import Path

from ..config import RouterConfig
from ..layout import DEFAULT_RUNTIME_DIR, Layout
from . import FAIL, FIXED, OK, Finding

# (probe path, rule appended by --fix): each probe must be ignored by git
REQUIRED_IGNORES = (
    ("config/routertool.yaml", "/config/routertool.yaml"),
    ("config/cliproxyapi.yaml", "/config/cliproxyapi.yaml"),
    (".router/runtime/events.log", "/.router/"),
    ("secret.key", "*.key"),
    (".env", ".env"),
    (".env.local", ".env.*"),
)
SENSITIVE_NAMES = ("config/routertool.yaml", "config/cliproxyapi.yaml", ".router/*", "*.key", ".env", ".env.*",
                   "*/.env", "*/.env.*", "*auths/*.json", "codex-*.json", "github-copilot-*.json", "*.pem")
NOT_SENSITIVE = ("config/examples/*", ".env.example", "*.env.example")
CONTENT_PATTERNS = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("an sk- API key", re.compile(r"\bsk-(?:proj-|ant-|or-v1-)?[A-Za-z0-9_-]{32,}")),
    ("a GitHub token", re.compile(r"\bgh[opsu]_[A-Za-z0-9]{30,}")),
    ("an OAuth refresh token", re.compile(r"\"refresh_token\"\s*:\s*\"[^\"]{20,}\"")),
)
ALLOW_MARKER = "pragma: allowlist secret"
MAX_SCAN_BYTES = 2 * 1024 * 1024


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)


def _is_git_repo(root: Path) -> bool:
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"
    except OSError:
        return False


def tracked_findings(root: Path) -> list[Finding]:
    listing = _git(root, "ls-files", "-z")
    findings = []
    for name in filter(None, listing.stdout.split("\0")):
        if any(fnmatch.fnmatch(name, pattern) for pattern in NOT_SENSITIVE):
            continue
        if any(fnmatch.fnmatch(name, pattern) for pattern in SENSITIVE_NAMES):
            findings.append(Finding("tracked-sensitive-file", FAIL, f"{name} is tracked by git: it holds local "
                                    "configuration or secrets", fix=f"git rm --cached {name}  (then rotate any "
                                    "secret it held)", path=name))
            continue
        finding = _scan_content(root / name, name)
        if finding:
            findings.append(finding)
    return findings


def _scan_content(path: Path, name: str) -> Finding | None:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_SCAN_BYTES:
            return None
        text = path.read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return None
    for lineno, line in enumerate(text.splitlines(), 1):
        if ALLOW_MARKER in line:
            continue
        for what, pattern in CONTENT_PATTERNS:
            if pattern.search(line):
                return Finding("secret-in-tracked-file", FAIL, f"{name}:{lineno} contains {what}",
                               fix=f"remove it from {name} (and from git history), rotate it, and load it from "
                                   "the environment or secret_files", path=name)
    return None


def ignore_findings(root: Path, fix: bool) -> list[Finding]:
    missing = []
    if _is_git_repo(root):
        for probe, rule in REQUIRED_IGNORES:
            if _git(root, "check-ignore", "-q", "--no-index", probe).returncode != 0:
                missing.append(rule)
    else:
        present = set(_read_lines(root / ".gitignore"))
        missing = [rule for _, rule in REQUIRED_IGNORES if rule not in present]
    if not missing:
        return [Finding("gitignore", OK, "local configs, .router/, keys and .env files are ignored")]
    if fix:
        gitignore = root / ".gitignore"
        existing = gitignore.read_text() if gitignore.exists() else ""
        addition = ("" if existing.endswith("\n") or not existing else "\n") + \
            "# added by `llm-router check security --fix`\n" + "".join(f"{rule}\n" for rule in missing)
        with open(gitignore, "a", encoding="utf-8") as handle:
            handle.write(addition)
        return [Finding("gitignore", FIXED, f"appended to .gitignore: {', '.join(missing)}", path=".gitignore")]
    return [Finding("gitignore", FAIL, f".gitignore lacks rules for: {', '.join(missing)}",
                    fix="llm-router check security --fix  (appends them)", path=".gitignore")]


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines()]
    except OSError:
        return []


def permission_findings(cfg: RouterConfig | None, fix: bool, root: Path | None = None) -> list[Finding]:
    """Modes of the auth and secret folders and files. Without a usable config, the default layout under `root`
    (`.router/`) is checked: that is where a config-less checkout keeps them."""
    if cfg is not None:
        layout, secret_files = cfg.layout, list(cfg.secret_files.values())
    elif root is not None:
        layout, secret_files = Layout(root, Path(root) / DEFAULT_RUNTIME_DIR), []
    else:
        return []
    targets: list[tuple[Path, int]] = []
    for folder in (layout.auths_dir, layout.secrets_dir):
        if folder.is_dir() and not folder.is_symlink():
            targets.append((folder, 0o700))
            targets += [(p, 0o600) for p in sorted(folder.iterdir()) if p.is_file()]
    targets += [(p, 0o600) for p in secret_files if p.is_file()]
    if layout.cliproxy_runtime_config.is_file():
        targets.append((layout.cliproxy_runtime_config, 0o600))
    if layout.redis_config.is_file():  # holds the Redis password
        targets.append((layout.redis_config, 0o600))
    findings = []
    for path, wanted in targets:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & ~wanted & 0o077 == 0:
            continue
        kind = "folder" if path.is_dir() else "file"
        if fix:
            os.chmod(path, wanted)
            findings.append(Finding("permissions", FIXED, f"{path} was {mode:04o}, now {wanted:04o}", path=str(path)))
        else:
            findings.append(Finding("permissions", FAIL, f"{kind} {path} is {mode:04o}: readable by other users",
                                    fix=f"chmod {wanted:o} {path}  (or: llm-router check security --fix)",
                                    path=str(path)))
    if not findings:
        findings.append(Finding("permissions", OK, "secret and auth files are private (0600 in 0700 folders)"))
    return findings


def run(root: Path, cfg: RouterConfig | None, fix: bool = False) -> list[Finding]:
    """Every finding for the checkout at `root` (and the runtime state of `cfg`, when given)."""
    findings: list[Finding] = []
    if _is_git_repo(root):
        tracked = tracked_findings(root)
        findings += tracked or [Finding("tracked-files", OK, "no sensitive file or secret is tracked by git")]
    else:
        findings.append(Finding("tracked-files", OK, f"{root} is not a git checkout; nothing is tracked"))
    findings += ignore_findings(root, fix)
    findings += permission_findings(cfg, fix, root)
    findings += redis_findings(cfg)
    return findings


_REDIS_LITERAL_PASSWORD = re.compile(r"^\s*redis_password:\s*(?![\"']?os\.environ/)\S", re.MULTILINE)
_REDIS_URL_WITH_PASSWORD = re.compile(r"rediss?://[^/@\s:]*:[^/@\s]+@")


def redis_findings(cfg: RouterConfig | None) -> list[Finding]:
    """A Redis that others could reach or read: services.redis on a non-loopback host, a plain redis:// URL to
    another machine, the rendered redis.conf without loopback bind / protected-mode / requirepass (or not 0600),
    and a rendered LiteLLM config holding a Redis password instead of an os.environ/ reference."""
    from ..config import is_loopback_host

    if cfg is None:
        return []
    findings = []
    redis = cfg.redis
    if redis is not None and redis.managed and not redis.is_loopback:
        findings.append(Finding("redis-exposed", FAIL, f"services.redis.host is {redis.host}: the Redis holding "
                                "LiteLLM's router state listens beyond this machine (password only, no TLS)",
                                fix="set services.redis.host: 127.0.0.1; reach it from other hosts through an SSH "
                                    "tunnel (docs/scale-out.md)", path=str(cfg.path)))
    if redis is not None and not redis.managed and not redis.tls and not is_loopback_host(redis.host):
        findings.append(Finding("redis-exposed", FAIL, f"services.redis.url {redis.url} sends the Redis password "
                                "and router state unencrypted across the network",
                                fix="use rediss:// (TLS) or an SSH tunnel to 127.0.0.1 (docs/scale-out.md)",
                                path=str(cfg.path)))
    conf = cfg.layout.redis_config
    text = "\n".join(_read_lines(conf)) if conf.is_file() else ""
    if text:
        settings = {}
        for line in text.splitlines():
            parts = line.split(None, 1)
            if parts and not parts[0].startswith("#"):
                settings[parts[0].lower()] = parts[1].strip() if len(parts) > 1 else ""
        binds = settings.get("bind", "").split()
        problems = []
        if not binds or not all(is_loopback_host(b.lstrip("-")) for b in binds):
            problems.append(f"bind {' '.join(binds) or '(all interfaces)'}")
        if settings.get("protected-mode", "yes").lower() != "yes":
            problems.append("protected-mode no")
        if not settings.get("requirepass", "").strip('"'):
            problems.append("no requirepass")
        if problems:
            findings.append(Finding("redis-exposed", FAIL, f"{conf}: {', '.join(problems)}",
                                    fix="`llm-router service restart redis` renders it again from routertool.yaml",
                                    path=str(conf)))
    for rendered in sorted(cfg.layout.litellm_dir.glob("*.yaml")) if cfg.layout.litellm_dir.is_dir() else []:
        body = "\n".join(_read_lines(rendered))
        if _REDIS_LITERAL_PASSWORD.search(body) or _REDIS_URL_WITH_PASSWORD.search(body):
            findings.append(Finding("redis-password-in-config", FAIL, f"{rendered} holds a Redis password; rendered "
                                    "configs must reference it as os.environ/REDIS_PASSWORD",
                                    fix="render it again: `llm-router profile set <profile>`", path=str(rendered)))
    if redis is not None and not findings:
        findings.append(Finding("redis-exposed", OK, "Redis is loopback-only (or TLS), password-protected, and its "
                                "password is referenced, never written, in rendered configs"))
    return findings
