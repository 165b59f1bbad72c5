"""The LiteLLM launcher's warm-up of the gunicorn master (`llm_router.litellm_launch`), without starting LiteLLM.

The real master running it is covered by the gunicorn integration tests (`test_integration_switch.py`), which
also check its `llm-router: warmed` log line."""
from __future__ import annotations

import contextlib
import io
import sys
import unittest
from unittest import mock

from llm_router import litellm_launch


class WarmTest(unittest.TestCase):
    def tearDown(self):
        sys.modules.pop("email.mime.audio", None)

    def test_imports_what_is_missing_and_skips_what_fails(self):
        sys.modules.pop("email.mime.audio", None)
        result = litellm_launch.warm(("json", "email.mime.audio", "llm_router_no_such_module.sub"))
        self.assertIn("email.mime.audio", sys.modules)
        self.assertGreaterEqual(result["imported"], 1)
        self.assertEqual(result["skipped"], ["llm_router_no_such_module.sub (ModuleNotFoundError)"])

    def test_a_module_that_raises_is_skipped_not_fatal(self):
        with mock.patch.object(litellm_launch.importlib, "import_module", side_effect=RuntimeError("boom")):
            result = litellm_launch.warm(("llm_router_not_imported_yet",))
        self.assertEqual(result["skipped"], ["llm_router_not_imported_yet (RuntimeError)"])


class WarmupHookTest(unittest.TestCase):
    def test_warms_once_after_the_first_fork_in_the_master(self):
        from gunicorn.arbiter import Arbiter

        original = Arbiter.spawn_worker
        forks = []
        try:
            with mock.patch.object(Arbiter, "spawn_worker", lambda arbiter: forks.append(arbiter) or 4242):
                plain_spawn = Arbiter.spawn_worker
                with mock.patch.object(litellm_launch, "warm",
                                       return_value={"imported": 3, "skipped": ["x (ImportError)"], "seconds": 0.5}) \
                        as warm:
                    self.assertTrue(litellm_launch.install_warmup())
                    err = io.StringIO()
                    with contextlib.redirect_stderr(err):
                        self.assertEqual(Arbiter.spawn_worker("arbiter"), 4242)
                        self.assertEqual(forks, ["arbiter"])  # forked first, warmed after
                    self.assertIs(Arbiter.spawn_worker, plain_spawn)  # restored: later forks do not warm again
                    Arbiter.spawn_worker("arbiter")
                warm.assert_called_once_with()
                self.assertEqual(forks, ["arbiter", "arbiter"])
                self.assertEqual(err.getvalue().strip(), "llm-router: warmed 3 modules for the next workers in "
                                                         "0.50 s; skipped 1: x (ImportError)")
        finally:
            Arbiter.spawn_worker = original

    def test_the_forked_worker_never_warms(self):
        from gunicorn.arbiter import Arbiter

        original = Arbiter.spawn_worker

        def child(arbiter):  # what gunicorn's spawn_worker does in the child: it ends through SystemExit
            raise SystemExit(0)

        try:
            with mock.patch.object(Arbiter, "spawn_worker", child), \
                    mock.patch.object(litellm_launch, "warm") as warm:
                litellm_launch.install_warmup()
                with self.assertRaises(SystemExit):
                    Arbiter.spawn_worker("arbiter")
            warm.assert_not_called()
        finally:
            Arbiter.spawn_worker = original

    def test_without_gunicorn_nothing_is_installed(self):
        with mock.patch.dict(sys.modules, {"gunicorn.arbiter": None}):
            self.assertFalse(litellm_launch.install_warmup())


if __name__ == "__main__":
    unittest.main()
