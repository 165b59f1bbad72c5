"""The LiteLLM launcher's pre-fork warm-up (`llm_router.litellm_launch`), without starting LiteLLM.

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


class PreforkHookTest(unittest.TestCase):
    def test_warms_once_when_the_arbiter_starts_then_runs_gunicorn(self):
        from gunicorn.arbiter import Arbiter

        original = Arbiter.start
        calls = []
        try:
            with mock.patch.object(Arbiter, "start", lambda arbiter: calls.append(arbiter)):
                patched_original = Arbiter.start
                with mock.patch.object(litellm_launch, "warm",
                                       return_value={"imported": 3, "skipped": ["x (ImportError)"], "seconds": 0.5}) \
                        as warm:
                    self.assertTrue(litellm_launch.install_prefork_warmup())
                    err = io.StringIO()
                    with contextlib.redirect_stderr(err):
                        Arbiter.start("arbiter")
                    self.assertIs(Arbiter.start, patched_original)  # restored: a second start does not warm again
                    Arbiter.start("arbiter")
                warm.assert_called_once_with()
                self.assertEqual(calls, ["arbiter", "arbiter"])
                self.assertEqual(err.getvalue().strip(), "llm-router: warmed 3 modules before forking workers in "
                                                         "0.50 s; skipped 1: x (ImportError)")
        finally:
            Arbiter.start = original

    def test_without_gunicorn_nothing_is_installed(self):
        with mock.patch.dict(sys.modules, {"gunicorn.arbiter": None}):
            self.assertFalse(litellm_launch.install_prefork_warmup())


if __name__ == "__main__":
    unittest.main()
