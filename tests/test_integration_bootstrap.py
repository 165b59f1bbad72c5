"""End to end with real processes: bootstrap from the GitHub stand-in → service start cliproxyapi_plus → ready →
a new bootstrap while it runs (not disturbed, restart advised) → stop → start again on the new version → stop.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
import urllib.request
from pathlib import Path
from unittest import mock

from llm_router import bootstrap, stack
from llm_router.config import UPSTREAM_KEY_ENV
from llm_router.standin.github import publish
from tests.support import StackRepo, serve_github

REPO_NAME = "router-for-me/CLIProxyAPIPlus"
OLD, NEW = "6.9.27-0", "6.9.28-0"


class BootstrapThenServiceTest(StackRepo):
    def setUp(self) -> None:
        super().setUp()
        self.server = serve_github(self)
        assets = Path(tempfile.mkdtemp(prefix="llm-router-assets-"))
        self.addCleanup(shutil.rmtree, assets, True)
        for version in (OLD, NEW):
            publish(self.server, REPO_NAME, version, assets, platforms=[bootstrap.platform_id()])
        patch = mock.patch.dict(os.environ, {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"})
        patch.start()
        self.addCleanup(patch.stop)
        os.environ.pop("GITHUB_TOKEN", None)
        self.write_stack_config(f"bootstrap:\n  github_api_url: {self.server.url}\n"
                                f"  cliproxy_repository: {REPO_NAME}\n  cliproxy_version: v{OLD}\n")
        self.cfg.layout.cliproxy_binary.unlink()  # StackRepo installs the stand-in directly; bootstrap it instead

    def state(self) -> str:
        return stack.status(self.cfg, ["cliproxyapi_plus"])[0].state

    def models(self) -> int:
        svc = self.cfg.services["cliproxyapi_plus"]
        request = urllib.request.Request(svc.base_url + "/v1/models",
                                         headers={"Authorization": f"Bearer {self.cfg.secret(UPSTREAM_KEY_ENV)}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return response.status

    def test_bootstrap_start_ready_replace_while_running_stop(self):
        code, out, err = self.cli("bootstrap", "download")
        self.assertEqual(code, 0, err)
        self.assertIn(f"installed CLIProxyAPIPlus v{OLD}", out)

        started = stack.start(self.cfg, ["cliproxyapi_plus"])
        self.remember_pids()
        self.assertEqual((started[0].result, started[0].version), ("started", f"{OLD}-plus"))
        self.assertEqual(self.state(), "RUNNING")
        self.assertEqual(self.models(), 200)
        pid = started[0].pid

        code, out, err = self.cli("bootstrap", "download", "--cliproxy-version", f"v{NEW}", "--json")
        self.assertEqual(code, 0, err)
        data = json.loads(out)["data"]
        self.assertEqual((data["result"], data["version"], data["restart_needed"]), ("installed", f"v{NEW}", True))
        code, out, err = self.cli("bootstrap", "download", "--cliproxy-version", f"v{NEW}", "--force")
        self.assertIn("restart it to use v6.9.28-0: llm-router service restart cliproxyapi_plus", out)
        status = stack.status(self.cfg, ["cliproxyapi_plus"])[0]
        self.assertEqual((status.state, status.pid), ("RUNNING", pid))  # not disturbed by the replacement
        self.assertEqual(self.models(), 200)

        stack.stop(self.cfg, ["cliproxyapi_plus"])
        self.assertEqual(self.state(), "STOPPED")

        started = stack.start(self.cfg, ["cliproxyapi_plus"])
        self.remember_pids()
        self.assertEqual(started[0].version, f"{NEW}-plus")
        self.assertEqual(self.models(), 200)
        stack.stop(self.cfg, ["cliproxyapi_plus"])
        self.assertEqual(self.state(), "STOPPED")


if __name__ == "__main__":
    unittest.main()
