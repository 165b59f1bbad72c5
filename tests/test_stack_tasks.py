"""`inv up` / `inv down` (and `llm-router up|down`): bootstrap when the binary is missing, activate the default
profile when none is active, start, health; then a smoke run on the running stack leaves it as it was."""
from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from llm_router import bootstrap, profiles, stack
from llm_router.standin.cliproxy import install_fake_binary, write_codex_login
from llm_router.standin.github import publish
from llm_router.supervisor.model import ServiceOutcome
from tests.litellm_support import requires_litellm
from tests.support import StackRepo, TempRepo, inv, patched_env, serve_github

REPO_NAME = "router-for-me/CLIProxyAPIPlus"
VERSION = "6.9.28-0"


@requires_litellm
class UpSmokeDownTest(StackRepo):
    def setUp(self):
        super().setUp()
        self.server = serve_github(self)
        assets = Path(tempfile.mkdtemp(prefix="llm-router-assets-"))
        self.addCleanup(shutil.rmtree, assets, True)
        publish(self.server, REPO_NAME, VERSION, assets, platforms=[bootstrap.platform_id()])
        self.write_stack_config(f"bootstrap:\n  github_api_url: {self.server.url}\n"
                                f"  cliproxy_repository: {REPO_NAME}\n  cliproxy_version: v{VERSION}\n")
        self.cfg.layout.cliproxy_binary.unlink()  # `up` must bootstrap it
        write_codex_login(self.cfg.layout.auths_dir, "dev@example.com", "plus").chmod(0o600)
        self.env = {"LLM_ROUTER_CONFIG": str(self.config_path), "NO_PROXY": "127.0.0.1,localhost",
                    "no_proxy": "127.0.0.1", "GITHUB_TOKEN": None, "STARTUP_TIMEOUT": None}

    def test_up_then_smoke_leaves_it_running_then_down(self):
        with patched_env(self.env):
            code, out, err = inv("up", "--json")
        self.remember_pids()
        self.assertEqual(code, 0, out + err)
        data = json.loads(out)["data"]
        self.assertEqual(data["bootstrap"]["result"], "installed")
        self.assertEqual(data["profile"], "balanced")
        self.assertEqual([o["result"] for o in data["start"]], ["started", "started"])
        self.assertTrue(all(r["ready"] for r in data["health"]))
        pids = {s.name: s.pid for s in stack.status(self.cfg)}

        code, out, err = self.cli("smoke", "--json", env={"STARTUP_TIMEOUT": None})
        steps = {s["name"]: s for s in json.loads(out)["data"]["steps"]}
        self.assertEqual(code, 0, json.dumps(steps, indent=1) + err)
        self.assertEqual(steps["profile set"]["detail"], "balanced is already active (unchanged)")
        self.assertIn("already running", steps["service start"]["detail"])
        self.assertEqual(steps["service stop"]["detail"], "left running as found: cliproxyapi_plus, litellm")
        self.assertEqual({s.name: s.pid for s in stack.status(self.cfg)}, pids)

        with patched_env(self.env):
            code, out, err = inv("up")  # again: nothing to install, nothing to start
        self.assertEqual(code, 0, out + err)
        self.assertNotIn("bootstrap:", out)
        self.assertIn("already running", out)

        with patched_env(self.env):
            code, out, err = inv("down")
        self.assertEqual(code, 0, out + err)
        self.assertIn("litellm  stopped", out)
        self.assertEqual([s.state for s in stack.status(self.cfg)], ["STOPPED", "STOPPED"])


class UpOrchestrationTest(TempRepo):
    """The decisions of `up`, with the processes mocked out."""

    def setUp(self):
        super().setUp()
        self.write_config("config_version: 2\nproviders: {cliproxy: {type: cliproxyapi_plus}}\n"
                          "models: [{name: coder, deployments: [{provider: cliproxy, model: gpt-5-codex}]}]\n")
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        ready = [{"service": n, "ready": True, "live": True, "state": "RUNNING",
                  "probe": {"url": "u", "status": 200, "error": None, "latency_ms": 1.0}} for n in stack.ORDER]
        started = [ServiceOutcome("litellm", "started", pid=1, port=2)]
        for target, value in (("start", started), ("health_check", ready)):
            patcher = mock.patch.object(stack, target, return_value=value)
            setattr(self, target, patcher.start())
            self.addCleanup(patcher.stop)

    def test_binary_present_no_bootstrap_and_default_profile_activated(self):
        install_fake_binary(self.cfg.layout.cliproxy_binary)
        with mock.patch.object(bootstrap, "install") as download:
            code, out, err = self.cli("up")
        self.assertEqual(code, 0, out + err)
        download.assert_not_called()
        self.assertIn("profile: balanced activated (none was active)", out)
        self.assertEqual(profiles.active(self.cfg)["name"], "balanced")
        self.start.assert_called_once()
        code, out, _ = self.cli("up", "--profile", "cost")
        self.assertIn("profile: cost active (was balanced)", out)
        code, out, _ = self.cli("up")
        self.assertIn("profile: cost (active)", out)

    def test_missing_binary_is_bootstrapped_first(self):
        def fake_download(cfg, **_):
            install_fake_binary(cfg.layout.cliproxy_binary)
            return bootstrap.InstallOutcome(result="installed", manifest={"version": "v6.9.28-0"}, path="p",
                                            litellm_runner="r", litellm_version=None, restart_needed=False)

        with mock.patch.object(bootstrap, "install", side_effect=fake_download) as download:
            code, out, err = self.cli("up", "--json")
        self.assertEqual(code, 0, out + err)
        download.assert_called_once()
        self.assertEqual(json.loads(out)["data"]["bootstrap"]["result"], "installed")

    def test_not_ready_fails(self):
        install_fake_binary(self.cfg.layout.cliproxy_binary)
        self.health_check.return_value[1] = {**self.health_check.return_value[1], "ready": False,
                                              "probe": {"url": "u", "status": None, "error": "refused",
                                                        "latency_ms": None}}
        code, out, _ = self.cli("up")
        self.assertEqual(code, 1)
        self.assertIn("NOT READY", out)


class TaskListingTest(unittest.TestCase):
    def test_top_level_and_check_tasks_are_listed(self):
        code, out, _ = inv("--list")
        self.assertEqual(code, 0)
        names = {line.split()[0] for line in out.splitlines()[1:] if line.strip()}
        for name in ("up", "down", "demo", "check.doctor", "check.smoke", "check.security"):
            self.assertIn(name, names)


if __name__ == "__main__":
    unittest.main()
