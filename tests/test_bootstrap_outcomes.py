"""bootstrap status and rollback, the `inv bootstrap.*` tasks, the progress bar, and the typed outcomes: what
`install`, `status` and `rollback` return is a frozen dataclass whose `to_dict()` is exactly the JSON data of
`bootstrap download|status|rollback --json` (same keys, same order, same values).
"""
from __future__ import annotations

import dataclasses
import io
import json
import unittest

from llm_router import bootstrap
from llm_router import config as config_mod
from llm_router.commands.bootstrap import ProgressBar
from llm_router.errors import CHECK_FAILED, NOT_FOUND
from llm_router.standin.github import publish
from tests.support import inv, patched_env
from tests.test_bootstrap import LINUX, NEW, OLD, REPO_NAME, GitHubCase

INSTALL_KEYS = ["result", "version", "repository", "asset", "line", "binary", "sha256", "verified", "binary_version",
                "binary_sha256", "source", "installed_at", "path", "litellm_runner", "litellm_version",
                "restart_needed", "warnings"]
STATUS_KEYS = ["path", "installed", "manifest", "intact", "binary_version", "problem", "pinned", "previous",
               "litellm_runner", "litellm_version"]
ROLLBACK_KEYS = ["version", "sha256", "previous", "path", "restart_needed"]


class StatusRollbackTest(GitHubCase):
    def test_status_not_installed(self):
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("NOT INSTALLED", out)
        self.assertIn(f"v{NEW} from {REPO_NAME}", out)

    def test_status_installed_then_modified(self):
        self.assertEqual(self.download()[0], 0)
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, 0, out)
        self.assertIn(f"INSTALLED  v{NEW} ({NEW}-plus) from {REPO_NAME}, verified", out)
        self.assertIn(self.manifest()["sha256"], out)
        code, out, _ = self.cli("bootstrap", "status", "--json")
        data = json.loads(out)["data"]
        self.assertEqual((data["intact"], data["binary_version"]), (True, f"{NEW}-plus"))
        with self.layout.cliproxy_binary.open("a") as handle:
            handle.write("# changed\n")
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, CHECK_FAILED)
        self.assertIn("MODIFIED", out)

    def test_rollback_swaps_and_a_second_rollback_undoes_it(self):
        publish(self.server, REPO_NAME, OLD, self.assets, platforms=[("linux", "amd64")], latest=False)
        self.assertEqual(self.download("--cliproxy-version", f"v{OLD}")[0], 0)
        self.assertEqual(self.download()[0], 0)
        code, out, err = self.cli("bootstrap", "rollback")
        self.assertEqual(code, 0, err)
        self.assertIn(f"CLIProxyAPIPlus is now v{OLD}; v{NEW} is kept as previous", out)
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{OLD}-plus")
        self.assertEqual(self.manifest()["version"], f"v{OLD}")
        self.assertEqual(self.events()[-1]["event"], "bootstrap_rollback")
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, 0, out)
        self.assertIn(f"previous   v{NEW}", out)
        self.assertEqual(self.cli("bootstrap", "rollback")[0], 0)
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{NEW}-plus")
        self.assertEqual(self.manifest()["version"], f"v{NEW}")
        self.assertEqual(sorted(p.name for p in self.layout.bin_dir.iterdir() if p.name.startswith(".")), [])

    def test_rollback_without_a_previous_binary(self):
        code, _, err = self.cli("bootstrap", "rollback")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("no previous CLIProxyAPIPlus binary", err)


class InvokeTest(GitHubCase):
    def test_tasks_are_listed_and_run(self):
        code, out, _ = inv("--list")
        for name in ("bootstrap.download", "bootstrap.status", "bootstrap.rollback"):
            self.assertIn(name, out)
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv("bootstrap.download", "--cliproxy-version", f"v{NEW}", "--force", "--json")
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["data"]["version"], f"v{NEW}")
            code, out, err = inv("bootstrap.rollback")
            self.assertEqual(code, NOT_FOUND)
            self.assertIn("error: no previous CLIProxyAPIPlus binary", err)


class ProgressBarTest(unittest.TestCase):
    def test_bar_shows_bytes_and_rate_then_ends_the_line(self):
        stream = io.StringIO()
        bar = ProgressBar(stream)
        bar(0, 4 * 2**20)
        bar(4 * 2**20, 4 * 2**20)
        bar.close()
        text = stream.getvalue()
        self.assertIn("\r[" + "#" * ProgressBar.WIDTH + "] 4.0/4.0 MiB", text)
        self.assertIn("MiB/s", text)
        self.assertTrue(text.endswith("\n"))

    def test_unknown_size(self):
        stream = io.StringIO()
        ProgressBar(stream)(3 * 2**20, None)
        self.assertIn("3.0 MiB", stream.getvalue())


class TypedOutcomeTest(GitHubCase):
    """The library returns frozen dataclasses; the command layer's JSON data is their `to_dict()`, item for item."""

    def setUp(self) -> None:
        super().setUp()
        publish(self.server, REPO_NAME, OLD, self.assets, platforms=[("linux", "amd64")], latest=False)
        self.cfg = config_mod.load(self.config_path)

    def json_data(self, *argv: str) -> dict:
        code, out, err = self.cli("bootstrap", *argv, "--json")
        self.assertNotIn("Traceback", out + err)
        return json.loads(out)["data"]

    def assert_same_items(self, data: dict, expected: dict) -> None:
        self.assertEqual(list(data.items()), list(expected.items()))  # same keys in the same order, same values

    def test_install_outcome(self):
        outcome = bootstrap.install(self.cfg, version=f"v{OLD}")
        self.assertIsInstance(outcome, bootstrap.InstallOutcome)
        self.assertEqual((outcome.result, outcome.version, outcome.line, outcome.repository),
                         ("installed", f"v{OLD}", "plus-6", REPO_NAME))
        self.assertEqual(outcome.binary_version, f"{OLD}-plus")
        self.assertEqual(list(outcome.to_dict()), INSTALL_KEYS)
        self.assertEqual(outcome.to_dict()["warnings"], [])
        with self.assertRaises(dataclasses.FrozenInstanceError):
            outcome.result = "unchanged"
        data = self.json_data("download", "--cliproxy-version", f"v{OLD}")  # unchanged: the manifest on disk
        self.assertEqual(list(data), INSTALL_KEYS)
        again = bootstrap.install(self.cfg, version=f"v{OLD}")
        self.assertEqual(again.result, "unchanged")
        self.assert_same_items(data, again.to_dict())

    def test_install_outcome_warnings(self):
        outcome = bootstrap.install(self.cfg, archive=str(self.assets / NEW / LINUX), insecure_skip_checksum=True,
                                    force=True)
        self.assertIsInstance(outcome.warnings, tuple)
        self.assertIn("--insecure-skip-checksum", outcome.warnings[0])
        self.assertEqual(outcome.to_dict()["warnings"], list(outcome.warnings))

    def test_status_report(self):
        report = bootstrap.status(self.cfg)
        self.assertIsInstance(report, bootstrap.StatusReport)
        self.assertEqual((report.installed, report.manifest, report.intact), (False, None, None))
        self.assertEqual(report.pinned, bootstrap.Pin(REPO_NAME, f"v{NEW}"))
        self.assert_same_items(self.json_data("status"), report.to_dict())
        bootstrap.install(self.cfg, version=f"v{OLD}")
        bootstrap.install(self.cfg)
        report = bootstrap.status(self.cfg)
        self.assertEqual((report.installed, report.intact, report.binary_version, report.problem, report.previous),
                         (True, True, f"{NEW}-plus", None, f"v{OLD}"))
        self.assertEqual(list(report.to_dict()), STATUS_KEYS)
        self.assertEqual(report.to_dict()["pinned"], {"repository": REPO_NAME, "version": f"v{NEW}"})
        self.assert_same_items(self.json_data("status"), report.to_dict())
        with self.assertRaises(dataclasses.FrozenInstanceError):
            report.installed = False

    def test_rollback_outcome(self):
        bootstrap.install(self.cfg, version=f"v{OLD}")
        bootstrap.install(self.cfg)
        outcome = bootstrap.rollback(self.cfg)
        self.assertIsInstance(outcome, bootstrap.RollbackOutcome)
        self.assertEqual((outcome.version, outcome.previous, outcome.restart_needed), (f"v{OLD}", f"v{NEW}", False))
        self.assertEqual(list(outcome.to_dict()), ROLLBACK_KEYS)
        data = self.json_data("rollback")  # back to NEW
        manifest = json.loads(self.layout.bin_manifest.read_text())
        self.assert_same_items(data, {"version": f"v{NEW}", "sha256": manifest["sha256"], "previous": f"v{OLD}",
                                      "path": str(self.layout.cliproxy_binary), "restart_needed": False})
        self.assert_same_items(data, dataclasses.replace(outcome, version=f"v{NEW}", sha256=manifest["sha256"],
                                                         previous=f"v{OLD}").to_dict())


if __name__ == "__main__":
    unittest.main()
