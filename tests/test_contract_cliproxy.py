"""The contract llm-router relies on from a CLIProxyAPI binary, runnable against the real thing.

By default every test runs against the stand-in, installed as a fake binary, once per emulated line
(standin.cliproxy.EMULATED_VERSIONS: Plus 6.6 and 6.9, mainline 7.x, a Plus fork on 7.x). To prove the stand-in
faithful, point it at a real binary (no accounts and no network needed; it is started with `-local-model` when it
has that flag, on loopback, with the management panel off):

    LLM_ROUTER_CONTRACT_BINARY=/path/to/cli-proxy-api-plus uv run pytest -q tests/test_contract_cliproxy.py

What differs between lines is decided from the binary's own banner version (cliproxy_lines.expected_features),
so the same assertions hold for every line, and the feature probe is checked against that expectation.
Management calls with a wrong key stay below v7's ban threshold (five failures, localhost included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import unittest
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from llm_router import cliproxy_lines
from llm_router.standin.cliproxy import EMULATED_VERSIONS, install_fake_binary, unsigned_jwt
from llm_router.standin.process import call, free_port

ENV_BINARY = "LLM_ROUTER_CONTRACT_BINARY"
HOW = (f"set {ENV_BINARY}=/path/to/cli-proxy-api[-plus] to run the contract against a real binary: "
       f"{ENV_BINARY}=/path/to/binary uv run pytest -q tests/test_contract_cliproxy.py")
START_TIMEOUT = 60.0
BANNER_PREFIX = "CLIProxyAPI Version: "


def run_help(binary: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=60, cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL)


def isolated_env(home: Path) -> dict[str, str]:
    """No MANAGEMENT_PASSWORD or store switches from the caller's environment; HOME and WRITABLE_PATH in a temp dir."""
    drop = {"MANAGEMENT_PASSWORD", "PGSTORE_DSN", "GITSTORE_GIT_URL", "OBJECTSTORE_ENDPOINT", "DEPLOY", "HOME_JWT",
            "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}
    env = {key: value for key, value in os.environ.items() if key not in drop and not key.startswith("CLIPROXY_")}
    return env | {"HOME": str(home), "WRITABLE_PATH": str(home), "NO_PROXY": "*"}


def codex_record(email: str) -> dict:
    """A Codex auth file in the binary's own format, far from expiry (so nothing refreshes it)."""
    now = datetime.now(timezone.utc)
    expires = now + timedelta(days=20)
    claims = {"email": email, "exp": int(expires.timestamp()),
              "https://api.openai.com/auth": {"chatgpt_account_id": "acct-contract", "chatgpt_plan_type": "plus"}}
    token = unsigned_jwt(claims)
    return {"id_token": token, "access_token": token, "refresh_token": "rt-contract", "account_id": "acct-contract",
            "last_refresh": now.isoformat(timespec="seconds").replace("+00:00", "Z"), "email": email,
            "type": "codex", "expired": expires.isoformat(timespec="seconds").replace("+00:00", "Z")}


class Server:
    """The binary started on a config in a temp dir, in its own session; stop() ends its process group."""

    def __init__(self, binary: Path, folder: Path, config: dict, extra_args: list[str], env: dict[str, str]):
        self.folder = folder
        self.config_path = folder / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = folder / "server.log"
        self.port = config.get("port")
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen([str(binary), "-config", str(self.config_path), *extra_args], cwd=folder,
                                          env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(f"exited {self.popen.returncode} before serving:\n{self.output()[-2000:]}")
            try:
                call("GET", self.url + "/", timeout=2.0)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"no HTTP on {self.url} within {timeout:.0f} s:\n{self.output()[-2000:]}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, 15)
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self.popen.wait()


class ContractBase:
    """The contract; subclasses set `binary_factory`. Mixed into unittest.TestCase below."""

    VERSION: str | None = None  # stand-in version to install; None for a real binary
    LINE: str | None = None

    @classmethod
    def make_binary(cls, folder: Path) -> Path:
        line = cliproxy_lines.LINES[cls.LINE]
        return install_fake_binary(folder / line.binary, cls.VERSION, line=cls.LINE)

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        cls.tmp = Path(tempfile.mkdtemp(prefix="contract-cliproxy-"))
        cls.env = isolated_env(cls.tmp)
        cls.binary = cls.make_binary(cls.tmp / "bin")
        help_run = run_help(cls.binary, cls.tmp, cls.env)
        cls.help_run = help_run
        cls.help_text = help_run.stdout + help_run.stderr
        first = (help_run.stdout.splitlines() or [""])[0]
        cls.reported = first.removeprefix(BANNER_PREFIX).split(",")[0].strip()
        cls.flags = cliproxy_lines.help_flags(cls.help_text)
        cls.expected = cliproxy_lines.expected_features(cls.reported, cls.binary.name)
        cls.extra_args = ["-local-model"] if "local-model" in cls.flags else []
        # one shared server: the management key, client key, auth-dir and port every test uses
        cls.client_key = "sk-contract-" + secrets.token_hex(8)
        cls.management_key = "mgmt-contract-" + secrets.token_hex(8)
        cls.auth_dir = cls.tmp / "auths"
        cls.server = cls.start(cls.base_config(), "main")
        try:
            cls.server.wait_ready()
        except BaseException:
            cls.server.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()  # type: ignore[misc]

    @classmethod
    def base_config(cls, **changes) -> dict:
        config = {"host": "127.0.0.1", "port": free_port(), "auth-dir": str(cls.auth_dir),
                  "api-keys": [cls.client_key],
                  "remote-management": {"allow-remote": False, "secret-key": cls.management_key,
                                        "disable-control-panel": True},
                  "usage-statistics-enabled": False, "request-retry": 0}
        config.update(changes)
        return config

    @classmethod
    def start(cls, config: dict, name: str) -> Server:
        folder = cls.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        return Server(cls.binary, folder, config, cls.extra_args, cls.env)

    def started(self, config: dict, name: str) -> Server:
        server = self.start(config, name)
        self.addCleanup(server.stop)  # type: ignore[attr-defined]
        return server

    def mgmt(self, method: str, path: str, key: str | None = None, body=None, server: Server | None = None):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return call(method, (server or self.server).url + "/v0/management" + path, body, headers, timeout=15)

    # --- the binary ----------------------------------------------------------------------

    def test_banner_first_and_help_exits_zero(self) -> None:
        first = self.help_run.stdout.splitlines()[0]
        self.assertRegex(first, r"^CLIProxyAPI Version: [^,\s]+, Commit: [^,\s]+, BuiltAt: \S+$")
        self.assertEqual(self.help_run.returncode, 0, "Go's flag package exits 0 for -h")
        self.assertIn("config", self.flags, "-h lists the flags, -config among them")
        self.assertIn("codex-login", self.flags)

    def test_help_flags_match_the_line(self) -> None:
        self.assertEqual("codex-device-login" in self.flags, self.expected.codex_device_login)
        self.assertEqual("github-copilot-login" in self.flags, self.expected.copilot_login)

    def test_unknown_flag_exits_two(self) -> None:
        run = subprocess.run([str(self.binary), "-no-such-flag"], capture_output=True, text=True, timeout=60,
                             cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 2)
        self.assertTrue(run.stdout.startswith(BANNER_PREFIX))
        self.assertIn("flag provided but not defined: -no-such-flag", run.stderr)

    def test_missing_config_exits_zero_without_serving(self) -> None:
        folder = self.tmp / "missing"
        folder.mkdir(exist_ok=True)
        run = subprocess.run([str(self.binary), "-config", str(folder / "absent.yaml"), *self.extra_args],
                             capture_output=True, text=True, timeout=60, cwd=folder, env=self.env,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(run.returncode, 0, "start-up errors are logged, then main returns")
        self.assertTrue(run.stdout.startswith(BANNER_PREFIX))

    def test_busy_port_exits_zero(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
            port = sock.getsockname()[1]
            server = self.started(self.base_config(port=port), "busy")
            self.assertEqual(server.wait_exit(), 0, "a failed bind is logged, then the process exits 0")

    # --- public routes -------------------------------------------------------------------

    def test_binds_the_configured_port_on_loopback(self) -> None:
        reply = call("GET", self.server.url + "/")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["message"], "CLI Proxy API Server")

    def test_healthz_as_the_version_says(self) -> None:
        get = call("GET", self.server.url + "/healthz")
        head = call("HEAD", self.server.url + "/healthz")
        self.assertEqual(get.status == 200, self.expected.healthz, get.status)
        if self.expected.healthz:
            self.assertEqual(get.json(), {"status": "ok"})
        self.assertEqual(head.status == 200, self.expected.healthz_head, head.status)
        self.assertEqual(head.body, b"")

    def test_models_need_the_client_key(self) -> None:
        url = self.server.url + "/v1/models"
        missing = call("GET", url)
        self.assertEqual((missing.status, missing.json()), (401, {"error": "Missing API key"}))
        wrong = call("GET", url, headers={"Authorization": "Bearer not-the-key"})
        self.assertEqual((wrong.status, wrong.json()), (401, {"error": "Invalid API key"}))
        ok = call("GET", url, headers={"Authorization": f"Bearer {self.client_key}"})
        self.assertEqual(ok.status, 200)
        self.assertEqual(ok.json()["object"], "list")
        self.assertIsInstance(ok.json()["data"], list)
        raw = call("GET", url, headers={"X-Api-Key": self.client_key})
        self.assertEqual(raw.status, 200)

    def test_empty_api_keys_is_open(self) -> None:
        server = self.started(self.base_config(**{"api-keys": []}), "open")
        server.wait_ready()
        self.assertEqual(call("GET", server.url + "/v1/models").status, 200)

    def test_sample_api_keys_and_safe_mode(self) -> None:
        server = self.started(self.base_config(**{"api-keys": ["your-api-key-1"]}), "sample")
        server.wait_ready()
        reply = call("GET", server.url + "/v1/models", headers={"Authorization": "Bearer your-api-key-1"})
        if self.expected.safe_mode:
            self.assertEqual(reply.status, 403)
            self.assertEqual(reply.json()["error"], "unsafe_example_api_key")
            self.assertEqual(reply.headers.get("X-CPA-SAFE-MODE"), "example-api-key")
        else:
            self.assertEqual(reply.status, 200)
        self.assertFalse(cliproxy_lines.is_sample_key(self.client_key), "our generated keys never trip it")

    # --- management ----------------------------------------------------------------------

    def test_management_key_is_hashed_and_written_back(self) -> None:
        data = yaml.safe_load(self.server.config_path.read_text())
        stored = data["remote-management"]["secret-key"]
        self.assertTrue(stored.startswith(("$2a$", "$2b$", "$2y$")), stored[:4])
        self.assertNotIn(self.management_key, self.server.config_path.read_text())
        reply = self.mgmt("GET", "/config", self.management_key)
        self.assertEqual(reply.status, 200)
        self.assertIn("X-CPA-VERSION", reply.headers)
        self.assertEqual(cliproxy_lines.plain_version(reply.headers["X-CPA-VERSION"]),
                         cliproxy_lines.plain_version(self.reported))

    def test_management_401_rules(self) -> None:
        missing = self.mgmt("GET", "/config")
        self.assertEqual((missing.status, missing.json()), (401, {"error": "missing management key"}))
        wrong = self.mgmt("GET", "/config", "not-the-key")
        self.assertEqual((wrong.status, wrong.json()), (401, {"error": "invalid management key"}))
        by_header = call("GET", self.server.url + "/v0/management/config",
                         headers={"X-Management-Key": self.management_key})
        self.assertEqual(by_header.status, 200)  # a good key resets the failure count

    def test_management_404_without_a_secret(self) -> None:
        config = self.base_config()
        config["remote-management"] = {"allow-remote": False, "secret-key": "", "disable-control-panel": True}
        server = self.started(config, "nosecret")
        server.wait_ready()
        self.assertEqual(self.mgmt("GET", "/config", self.management_key, server=server).status, 404)

    def test_unknown_management_route_is_404(self) -> None:
        self.assertEqual(self.mgmt("GET", "/no-such-route", self.management_key).status, 404)

    def test_feature_probe_matches_the_version(self) -> None:
        probed = cliproxy_lines.expected_features(self.reported, self.binary.name)
        cliproxy_lines.probe_help(probed, self.help_text)
        cliproxy_lines.probe_server(probed, self.server.url, self.management_key)
        self.assertEqual(probed.management, "ok")
        for name in ("healthz", "healthz_head", "reset_quota", "usage", "routing_strategy", "copilot_login",
                     "codex_device_login"):
            self.assertEqual(getattr(probed, name), getattr(self.expected, name), name)

    # --- auth files ------------------------------------------------------------------------

    def test_auth_file_upload_list_models_delete(self) -> None:
        name = "codex-contract@example.com-plus.json"
        body = json.dumps(codex_record("contract@example.com")).encode()
        upload = call("POST", self.server.url + f"/v0/management/auth-files?name={name}", body,
                      {"Authorization": f"Bearer {self.management_key}", "Content-Type": "application/json"})
        self.assertEqual(upload.status, 200, upload.text)
        path = self.auth_dir / name
        self.assertTrue(path.is_file())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600, "management uploads are written 0600")
        listed = self.mgmt("GET", "/auth-files", self.management_key).json()["files"]
        entry = next(item for item in listed if item["name"] == name)
        self.assertEqual((entry["type"], entry["provider"]), ("codex", "codex"))
        self.assertEqual(entry["email"], "contract@example.com")
        models = self.wait_models(lambda ids: any(i.startswith("gpt-") for i in ids))
        self.assertTrue(any(i.startswith("gpt-") for i in models), models)
        deleted = self.mgmt("DELETE", f"/auth-files?name={name}", self.management_key)
        self.assertEqual(deleted.status, 200)
        self.assertFalse(path.exists())

    def test_auth_file_dropped_into_auth_dir_is_picked_up(self) -> None:
        self.auth_dir.mkdir(parents=True, exist_ok=True)
        path = self.auth_dir / "codex-dropped@example.com-plus.json"
        path.write_text(json.dumps(codex_record("dropped@example.com")))
        self.addCleanup(path.unlink, missing_ok=True)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        names: list[str] = []
        while time.monotonic() < deadline:
            names = [f["name"] for f in self.mgmt("GET", "/auth-files", self.management_key).json()["files"]]
            if path.name in names:
                break
            time.sleep(0.2)
        self.assertIn(path.name, names)

    def wait_models(self, ready, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        ids: list[str] = []
        while time.monotonic() < deadline:
            reply = call("GET", self.server.url + "/v1/models", headers={"Authorization": f"Bearer {self.client_key}"})
            ids = [item["id"] for item in reply.json()["data"]]
            if ready(ids):
                return ids
            time.sleep(0.2)
        return ids

    # --- OAuth routes ----------------------------------------------------------------------

    def test_codex_auth_url_shape_and_status(self) -> None:
        reply = self.mgmt("GET", "/codex-auth-url", self.management_key)
        self.assertEqual(reply.status, 200)
        data = reply.json()
        self.assertEqual(data["status"], "ok")
        url = urlsplit(data["url"])
        self.assertEqual((url.scheme, url.netloc, url.path), ("https", "auth.openai.com", "/oauth/authorize"))
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.assertEqual(query["client_id"], "app_EMoamEEZ73f0CkXaXp7hrann")
        self.assertEqual(query["redirect_uri"], "http://localhost:1455/auth/callback")
        self.assertEqual(query["code_challenge_method"], "S256")
        self.assertEqual(query["state"], data["state"])
        status = self.mgmt("GET", f"/get-auth-status?state={data['state']}", self.management_key).json()
        self.assertEqual(status, {"status": "wait"})
        if self.expected.line != cliproxy_lines.PLUS_6:
            cancelled = self.mgmt("DELETE", f"/oauth-session?state={data['state']}", self.management_key)
            self.assertEqual(cancelled.status, 200)

    def test_unknown_state_reads_as_the_version_says(self) -> None:
        status = self.mgmt("GET", "/get-auth-status?state=never-issued-state", self.management_key).json()
        if self.expected.line == cliproxy_lines.PLUS_6:
            self.assertEqual(status, {"status": "ok"}, "6.x forgets finished sessions: unknown reads ok")
        else:
            self.assertEqual(status, {"status": "error", "error": "unknown or expired state"})


class StandinOnly:
    """Checks that would make a real binary contact GitHub (a device flow): stand-in only."""

    def test_github_auth_url_shape(self) -> None:
        reply = self.mgmt("GET", "/github-auth-url", self.management_key)  # type: ignore[attr-defined]
        if not self.expected.github_auth_url:  # type: ignore[attr-defined]
            self.assertEqual(reply.status, 404)  # type: ignore[attr-defined]
            return
        data = reply.json()
        self.assertEqual(data["status"], "ok")  # type: ignore[attr-defined]
        self.assertTrue(data["state"].startswith("gh-"))  # type: ignore[attr-defined]
        self.assertEqual(data["verification_uri"], "https://github.com/login/device")  # type: ignore[attr-defined]
        self.assertRegex(data["user_code"], r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")  # type: ignore[attr-defined]


def _standin_class(version: str, line: str) -> type:
    name = "TestContractStandin_" + version.replace(".", "_").replace("-", "_")
    return type(name, (ContractBase, StandinOnly, unittest.TestCase), {"VERSION": version, "LINE": line})


for _version, _line in EMULATED_VERSIONS.items():
    _cls = _standin_class(_version, _line)
    globals()[_cls.__name__] = _cls
del _version, _line, _cls


@unittest.skipUnless(os.environ.get(ENV_BINARY), HOW)
class TestContractRealBinary(ContractBase, unittest.TestCase):
    """The same contract against the binary named by LLM_ROUTER_CONTRACT_BINARY."""

    @classmethod
    def make_binary(cls, folder: Path) -> Path:
        source = Path(os.environ[ENV_BINARY]).expanduser().resolve()
        if not source.is_file():
            raise unittest.SkipTest(f"{ENV_BINARY}={source} is not a file; {HOW}")
        return source


if __name__ == "__main__":
    unittest.main()
