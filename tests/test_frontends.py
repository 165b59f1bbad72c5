"""Both front ends: `llm-router` (argparse) and the invoke tasks, and the listing of namespaced tasks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest

from tests.support import REPO, TempRepo, inv, patched_env

EXPECTED_TASKS = ["config.check", "config.show", "config.migrate", "events.tail", "bootstrap.download",
                  "profile.set", "profile.list", "profile.prove", "service.start", "service.watch",
                  "service.install", "auth.codex-login", "auth.copilot-login", "auth.codex-import",
                  "check.doctor", "check.smoke", "check.security", "bench.failover", "up", "down", "demo"]




class InvokeTest(TempRepo):
    def test_list_shows_namespaced_tasks(self):
        code, out, _ = inv("--list")
        self.assertEqual(code, 0)
        for name in EXPECTED_TASKS:
            self.assertIn(name, out)

    def test_inv_list_from_repo_root(self):
        proc = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=REPO, capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("config.check", proc.stdout)

    def test_task_renders_json_and_maps_errors_to_exit_codes(self):
        self.write_config()
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv("config.check", "--json")
        self.assertEqual(code, 0, err)
        self.assertTrue(json.loads(out)["ok"])
        with patched_env({"LLM_ROUTER_CONFIG": str(self.root / "missing.yaml")}):
            code, out, err = inv("config.check")
        self.assertEqual(code, 2)
        self.assertIn("error: config file not found", err)
        self.assertNotIn("Traceback", err)


class CliTest(TempRepo):
    def test_help_and_module_entry_point(self):
        for argv in (["-m", "llm_router", "--help"],):
            proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO / "src")})
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("config", proc.stdout)

    def test_json_flag_before_or_after_the_command(self):
        self.write_config()
        for argv in (("--json", "config", "show"), ("config", "show", "--json")):
            code, out, err = self.cli(*argv)
            self.assertEqual(code, 0, err)
            envelope = json.loads(out)
            self.assertEqual((envelope["schema"], envelope["command"], envelope["ok"]), (1, "config show", True))


if __name__ == "__main__":
    unittest.main()
