"""What each emulated CLIProxyAPI line changes, checked on every line of the stand-in.

Each job below is a mixin that runs once per entry of standin.cliproxy.EMULATED_VERSIONS (Plus 6.6 and 6.9,
mainline 7.x, a Plus fork on 7.x): the classes at the bottom are generated, one per job and line, and share one
stand-in process per class. The expectations come from cliproxy_lines.expected_features and the line's own
definition (cliproxy_lines.LINES; "7.x" is every line but plus-6), never from a copy here. Behaviour that is the
same on every line stays in test_standin_cliproxy.py and runs once, on the default line.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import unittest
import zipfile

from llm_router.cliproxy_lines import LINES, PLUS_6, classify, expected_features, help_flags, plain_version
from llm_router.standin.cliproxy import EMULATED_VERSIONS, banner, build_release_archive, install_fake_binary
from llm_router.standin.process import call, complete_oauth, free_port, start_cliproxy
from tests.test_standin_cliproxy import (
    CLIENT_KEY,
    SECRET,
    ProxyClient,
    TempDirCase,
    run_cli,
    write_config,
)

BANNER_PREFIX = "CLIProxyAPI Version: "
ARCHIVE_EXTRAS = {"config.example.yaml", "LICENSE", "README.md", "README_CN.md"}


class LineCase:
    """The line under test: `VERSION` and `LINE` are set by the generated classes."""

    VERSION: str
    LINE: str

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.line = LINES[cls.LINE]
        cls.expected = expected_features(cls.VERSION, cls.line.binary)
        cls.v7 = cls.LINE != PLUS_6
        cls.env = {"CLIPROXY_STANDIN_VERSION": cls.VERSION}  # the version alone picks the line
        cls.dir = cls.make_temp_dir()

    def assert_banner(self, first_line: str) -> None:
        """The banner of this line's build, naming a version that classifies as this line."""
        self.assertEqual(first_line, banner(self.VERSION))
        self.assert_reports_the_line(first_line.removeprefix(BANNER_PREFIX).split(",")[0])

    def assert_reports_the_line(self, reported: str) -> None:
        self.assertEqual(plain_version(reported), self.VERSION)
        self.assertEqual(classify(reported, self.line.binary).key, self.LINE)


class CommandLineLines(LineCase):
    """The binary's banner, flags and login modes, and the release archives that carry it."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.auth_dir = cls.dir / "auths"
        cls.config = write_config(cls.dir / "config.yaml", cls.auth_dir, port=free_port())

    def test_help_prints_banner_first_and_exits_zero(self) -> None:
        result = run_cli("-h", env=self.env)
        self.assertEqual(result.returncode, 0)
        self.assert_banner(result.stdout.splitlines()[0])
        self.assertTrue(result.stderr.startswith(f"Usage of {self.line.binary}"), result.stderr[:80])
        flags = help_flags(result.stderr)
        self.assertIn("config", flags)
        self.assertEqual("github-copilot-login" in flags, self.expected.copilot_login)
        self.assertEqual("codex-device-login" in flags, self.expected.codex_device_login)

    def test_github_copilot_login_approve_writes_0644_file(self) -> None:
        flow = {**self.env, "CLIPROXY_STANDIN_DEVICE_FLOW": "approve:octo"}
        result = run_cli("-github-copilot-login", "-config", str(self.config), env=flow)
        if not self.expected.copilot_login:
            self.assertEqual(result.returncode, 2)
            self.assertIn("flag provided but not defined: -github-copilot-login", result.stderr)
            self.assertFalse((self.auth_dir / "github-copilot-octo.json").exists())
            return
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertIn("To authenticate, please visit: https://github.com/login/device", result.stdout)
        self.assertIn("And enter the code: ABCD-1234", result.stdout)
        path = self.auth_dir / "github-copilot-octo.json"
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644)
        record = json.loads(path.read_text())
        self.assertEqual((record["type"], record["username"]), ("github-copilot", "octo"))
        self.assertTrue(record["access_token"].startswith("gho_"))

    def test_installed_fake_binary_runs_outside_the_venv(self) -> None:
        binary = install_fake_binary(self.dir / "bin" / self.line.binary, version=self.VERSION, line=self.LINE)
        self.assertEqual(stat.S_IMODE(binary.stat().st_mode), 0o755)
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        result = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=60, env=env, cwd=self.dir)
        self.assertEqual(result.returncode, 0)
        self.assert_banner(result.stdout.splitlines()[0])

    def test_release_archives_are_named_as_the_line_names_them(self) -> None:
        directory = self.make_temp_dir()
        archive = build_release_archive(directory, self.VERSION, "linux", "amd64")
        self.assertEqual(archive.name, f"{self.line.project}_{self.VERSION}_linux_amd64.tar.gz")
        with tarfile.open(archive) as bundle:
            members = {member.name: member for member in bundle.getmembers()}
            self.assertEqual(set(members), ARCHIVE_EXTRAS | {self.line.binary})
            self.assertEqual(members[self.line.binary].mode, 0o755)
            bundle.extractall(directory / "x", filter="data")
        result = subprocess.run([directory / "x" / self.line.binary, "-h"], capture_output=True, text=True,
                                timeout=60)
        self.assert_banner(result.stdout.splitlines()[0])
        again = build_release_archive(directory / "again", self.VERSION, "linux", "amd64")
        self.assertEqual(archive.read_bytes(), again.read_bytes())
        windows = build_release_archive(directory, f"v{self.VERSION}", "windows", "amd64")
        self.assertEqual(windows.name, f"{self.line.project}_{self.VERSION}_windows_amd64.zip")
        with zipfile.ZipFile(windows) as bundle:
            self.assertEqual(set(bundle.namelist()), ARCHIVE_EXTRAS | {self.line.binary + ".exe"})


class ServerLines(ProxyClient, LineCase):
    """One stand-in of the line with a client key and a management secret: its public and management routes."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.auth_dir = cls.dir / "auths"
        config = write_config(cls.dir / "config.yaml", cls.auth_dir, port=free_port(), secret=SECRET,
                              api_keys=(CLIENT_KEY,))
        cls.proxy = start_cliproxy(config, env=cls.env)
        cls.addClassCleanup(cls.proxy.stop)
        cls.url = cls.proxy.base_url

    def setUp(self) -> None:
        self.manage("GET", "/config")  # a good key clears the failure count (v7 bans localhost after five)

    def test_banner_is_the_first_line_of_output(self) -> None:
        self.assert_banner(self.proxy.output().splitlines()[0])

    def test_root_and_healthz_need_no_key(self) -> None:
        root = call("GET", self.url + "/").json()
        self.assertEqual(root["message"], "CLI Proxy API Server")
        self.assertIn("GET /v1/models", root["endpoints"])
        get, head = call("GET", self.url + "/healthz"), call("HEAD", self.url + "/healthz")
        self.assertEqual(get.status, 200 if self.expected.healthz else 404)
        if self.expected.healthz:
            self.assertEqual(get.json(), {"status": "ok"})
        self.assertEqual(head.status, 200 if self.expected.healthz_head else 404)

    def test_management_key_errors_and_version_header(self) -> None:
        url = f"{self.url}/v0/management/api-keys"
        missing = call("GET", url)
        self.assertEqual((missing.status, missing.json()), (401, {"error": "missing management key"}))
        self.assert_reports_the_line(missing.headers["X-CPA-VERSION"])
        wrong = call("GET", url, headers={"Authorization": "Bearer wrong"})
        self.assertEqual((wrong.status, wrong.json()), (401, {"error": "invalid management key"}))
        for headers in ({"X-Management-Key": SECRET}, {"Authorization": SECRET}):
            self.assertEqual(call("GET", url, headers=headers).status, 200)
        unknown = f"{self.url}/v0/management/no-such-route"
        self.assertEqual(call("GET", unknown, headers={"X-Management-Key": SECRET}).status, 404)
        # 6.x has no such route, so Gin answers before the key is checked; v7's NoRoute handler checks it first
        self.assertEqual(call("GET", unknown).status, 401 if self.v7 else 404)

    def test_config_usage_and_latest_version(self) -> None:
        config = self.manage("GET", "/config").json()
        self.assertEqual(config["api-keys"], [CLIENT_KEY])
        for hidden in ("host", "port", "auth-dir", "remote-management"):
            self.assertNotIn(hidden, config)
        usage = self.manage("GET", "/usage")
        self.assertEqual(usage.status, 200 if self.expected.usage else 404)
        if self.expected.usage:
            self.assertEqual(usage.json()["usage"]["total_requests"], 0)
        self.assertEqual(self.manage("GET", "/latest-version").json(), {"latest-version": f"v{self.VERSION}"})

    def test_management_routes_follow_the_line(self) -> None:
        requests = {  # feature: a request with no side effect, never answered 404 where the route exists
            "copilot_quota": ("GET", "/copilot-quota", None),
            "reset_quota": ("POST", "/reset-quota", {}),  # no auth_index: 400
            "routing_strategy": ("GET", "/routing/strategy", None),
        }
        for feature, (method, path, body) in requests.items():
            with self.subTest(feature):
                status = self.manage(method, path, body).status
                self.assertEqual(status != 404, getattr(self.expected, feature), status)

    def test_copilot_auth_file_serves_models_only_on_a_copilot_line(self) -> None:
        self.upload("github-copilot-lines.json", {"type": "github-copilot", "username": "lines",
                                                  "access_token": "gho_x"})
        listed = [item["name"] for item in self.manage("GET", "/auth-files").json()["files"]]
        self.assertIn("github-copilot-lines.json", listed)  # every line lists the file
        owners = {model["id"]: model["owned_by"] for model in self.client("GET", "/v1/models").json()["data"]}
        reply = self.chat("raptor-mini")
        if self.line.copilot:
            self.assertEqual(owners.get("raptor-mini"), "github-copilot")
            self.assertEqual(reply.status, 200)
        else:
            self.assertNotIn("raptor-mini", owners)
            self.assertEqual((reply.status, reply.text), (400, "unknown provider for model raptor-mini"))

    def test_unknown_or_empty_state(self) -> None:
        unknown = {"status": "error", "error": "unknown or expired state"} if self.v7 else {"status": "ok"}
        self.assertEqual(self.auth_status("never-issued"), unknown)  # 6.x forgets finished logins
        self.assertEqual(self.manage("GET", "/get-auth-status").json(), {"status": "ok"})

    def test_github_device_login_through_management(self) -> None:
        reply = self.manage("GET", "/github-auth-url")
        if not self.expected.github_auth_url:
            self.assertEqual(reply.status, 404)
            return
        data = reply.json()
        self.assertEqual((data["url"], data["user_code"]), ("https://github.com/login/device", "ABCD-1234"))
        self.assertTrue(data["state"].startswith("gh-"))
        self.assertEqual(self.auth_status(data["state"]), {"status": "wait"})
        path = self.auth_dir / "github-copilot-octocat.json"
        self.forget_later(path.name)
        complete_oauth(self.url, data["state"], login="octocat")
        self.assertEqual(self.auth_status(data["state"]), {"status": "ok"})
        record = json.loads(path.read_text())
        expected = {"token_type": "bearer", "scope": "user:email", "username": "octocat", "type": "github-copilot"}
        self.assertEqual({key: record[key] for key in expected}, expected)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644)

    def test_management_is_404_without_secret(self) -> None:
        proxy = start_cliproxy(write_config(self.dir / "open.yaml", self.dir / "open-auths"), env=self.env)
        self.addCleanup(proxy.stop)
        reply = call("GET", proxy.base_url + "/v0/management/auth-files", headers={"X-Management-Key": "any"})
        self.assertEqual(reply.status, 404)
        self.assertIsNone(reply.headers["X-CPA-VERSION"])
        self.assertEqual(reply.body == b"", self.v7)  # v7: AbortWithStatus(404); 6.x: Gin's "404 page not found"


def _per_line(*jobs: type) -> None:
    """One TestCase per job and emulated line, e.g. ServerLines_7_2_140."""
    for version, line in EMULATED_VERSIONS.items():
        for job in jobs:
            name = f"{job.__name__}_{version.replace('.', '_').replace('-', '_')}"
            globals()[name] = type(name, (job, TempDirCase), {"VERSION": version, "LINE": line,
                                                              "__module__": __name__})


_per_line(CommandLineLines, ServerLines)


if __name__ == "__main__":
    unittest.main()
