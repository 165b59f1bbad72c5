"""Every path under the runtime state folder (`.router/`), in one place. Nobody else joins these paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .fsutil import FileLock

SERVICES = ("cliproxyapi_plus", "litellm")  # always configured, in start order
OPTIONAL_SERVICES = ("redis",)  # configured only when routertool.yaml turns them on; started before SERVICES
ALL_SERVICES = (*OPTIONAL_SERVICES, *SERVICES)
DEFAULT_RUNTIME_DIR = Path(".router") / "runtime"  # relative to the repo root
_LOCKS: dict[Path, FileLock] = {}


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Shipped templates: inside the package when installed from a wheel, else the checkout's `templates/`."""
    installed = package_dir() / "templates"
    if installed.is_dir():
        return installed
    return package_dir().parents[1] / "templates"


def source_root() -> Path | None:
    """The checkout holding this package (with pyproject.toml), or None when installed from a wheel."""
    root = package_dir().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


@dataclass(frozen=True)
class Layout:
    """Paths derived from `runtime_dir` (default `<root>/.router/runtime`).

    The state folder is the runtime folder's parent: `auths/` and `secrets/` live beside `runtime/`.
    """

    root: Path
    runtime_dir: Path

    @classmethod
    def of_runtime_dir(cls, runtime_dir: Path) -> "Layout":
        """The layout of a runtime folder, for code that knows only that folder (inside LiteLLM): the runtime and
        state paths are right; `root` is a guess (the default `<root>/.router/runtime`)."""
        return cls(root=runtime_dir.parent.parent, runtime_dir=runtime_dir)

    @classmethod
    def of_litellm_config(cls, config_path: Path) -> "Layout | None":
        """The layout a running LiteLLM belongs to, from the config file it was started on
        (`<runtime>/litellm/active.yaml`); None for a file elsewhere."""
        if config_path.parent.name != "litellm":
            return None
        return cls.of_runtime_dir(config_path.parent.parent)

    @property
    def state_dir(self) -> Path:
        return self.runtime_dir.parent

    # binaries
    @property
    def bin_dir(self) -> Path:
        return self.runtime_dir / "bin"

    @property
    def cliproxy_binary(self) -> Path:
        return self.bin_dir / "CLIProxyAPIPlus"

    @property
    def cliproxy_previous_binary(self) -> Path:
        return self.bin_dir / "CLIProxyAPIPlus.previous"

    @property
    def bin_manifest(self) -> Path:
        return self.bin_dir / "manifest.json"

    @property
    def bin_previous_manifest(self) -> Path:
        return self.bin_dir / "manifest.previous.json"

    @property
    def litellm_runner(self) -> Path:
        return self.bin_dir / "litellm"

    # profiles
    @property
    def litellm_dir(self) -> Path:
        return self.runtime_dir / "litellm"

    def profile_config(self, profile: str) -> Path:
        return self.litellm_dir / f"{profile}.yaml"

    @property
    def active_config(self) -> Path:
        return self.litellm_dir / "active.yaml"

    @property
    def active_profile_file(self) -> Path:
        return self.runtime_dir / "active_profile.json"

    @property
    def switch_journal(self) -> Path:
        """A profile switch in progress: the files to put back if it never finishes (journal.py)."""
        return self.runtime_dir / "switch.json"

    @property
    def proven_cache(self) -> Path:
        """Verdicts of configs LiteLLM was proven to load, by sha256 (litellm/prove.py)."""
        return self.litellm_dir / "proven.json"

    @property
    def watch_lock(self) -> Path:
        """Held by the one `service watch` of this runtime folder."""
        return self.runtime_dir / "watch.lock"

    @property
    def user_profiles_dir(self) -> Path:
        return self.root / "config" / "profiles"

    @property
    def litellm_templates_dir(self) -> Path:
        """The shipped LiteLLM templates: `base.yaml.j2` and `profiles/`."""
        return templates_dir() / "litellm"

    @property
    def shipped_profiles_dir(self) -> Path:
        return self.litellm_templates_dir / "profiles"

    # CLIProxyAPIPlus
    @property
    def cliproxy_runtime_config(self) -> Path:
        return self.runtime_dir / "cliproxyapi.yaml"

    # Redis (services.redis, when llm-router runs it)
    @property
    def redis_dir(self) -> Path:
        return self.runtime_dir / "redis"

    @property
    def redis_config(self) -> Path:
        """The redis.conf llm-router renders (0600: it holds the password, never passed on the command line)."""
        return self.redis_dir / "redis.conf"

    @property
    def redis_data_dir(self) -> Path:
        """Redis's working folder: the append-only file when persistence is aof (nothing is written when off)."""
        return self.redis_dir / "data"

    # processes
    @property
    def pids_dir(self) -> Path:
        return self.runtime_dir / "pids"

    def pid_file(self, service: str) -> Path:
        return self.pids_dir / f"{service}.json"

    @property
    def logs_dir(self) -> Path:
        return self.runtime_dir / "logs"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    @property
    def events_log(self) -> Path:
        return self.runtime_dir / "events.log"

    @property
    def usage_dir(self) -> Path:
        """The usage store (usage.db, control.json; 0700), written from inside LiteLLM (usage_writer.py,
        litellm/usage_hook.py)."""
        return self.runtime_dir / "usage"

    # secrets
    @property
    def auths_dir(self) -> Path:
        return self.state_dir / "auths"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    def secret_file(self, name: str) -> Path:
        return self.secrets_dir / name

    @property
    def parse_cache(self) -> Path:
        """routertool.yaml's parse as JSON (config.remember_parse / config.cached_parse)."""
        return self.state_dir / "cache" / "routertool.parsed.json"

    # scratch and locks
    @property
    def tmp_dir(self) -> Path:
        return self.runtime_dir / "tmp"

    @property
    def lock_path(self) -> Path:
        return self.runtime_dir / "router.lock"

    def lock(self, timeout: float = 60.0) -> FileLock:
        """The one lock that serialises start/stop/restart/profile changes (shared per process)."""
        lock = _LOCKS.get(self.lock_path)
        if lock is None:
            lock = _LOCKS[self.lock_path] = FileLock(self.lock_path, timeout, purpose="the router state")
        lock.timeout = timeout
        return lock
