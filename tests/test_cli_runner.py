"""The one front-end runner (`frontend.run_command`) behind `llm-router` and the invoke tasks: warnings attached
once and in order (config, command, failed event appends), the error mapping (RouterError, OSError, a bug, Ctrl-C)
and its exit codes, the traceback only on request, and both front ends calling it."""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import unittest
from pathlib import Path
from unittest import mock

from invoke.exceptions import Exit

from llm_router import cli, events, frontend
from llm_router.commands import Ctx
from llm_router.errors import USAGE, RouterError
from llm_router.output import Result
from llm_router.tasks import _common
from tests.support import TempRepo, patched_env

LEGACY = """\
runtime_dir: .router/runtime
services:
  cliproxyapi:
    port: 8400
"""


def captured(fn, *args, **kwargs):
    """(return value, stdout, stderr) of `fn(*args, **kwargs)`."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        value = fn(*args, **kwargs)
    return value, out.getvalue(), err.getvalue()


class RunCommandTest(TempRepo):
    def setUp(self):
        super().setUp()
        events.take_warnings()  # nothing left over from another test
        self.addCleanup(events.take_warnings)
        (self.root / "not-a-folder").write_text("")

    def fail_an_append(self) -> str:
        """Make one event append fail for real (its folder is a file) and return the warning it leaves."""
        events.EventLog(self.root / "not-a-folder" / "events.log").append("test_event")
        [warning] = events._WARNINGS
        return warning

    def test_warnings_attached_once_in_order(self):
        ctx = Ctx(warnings=["config: deprecated key"])

        def command() -> Result:
            self.dropped = self.fail_an_append()
            # a command that still lists the config's warnings itself: they are not shown twice
            return Result("x", data={}, text="done", warnings=["config: deprecated key", "own warning"])

        code, out, err = captured(frontend.run_command, "x", command, ctx, True)
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["warnings"], ["config: deprecated key", "own warning", self.dropped])
        code, out, err = captured(frontend.run_command, "x", command, ctx, False)
        self.assertEqual(err.splitlines(), ["warning: config: deprecated key", "warning: own warning",
                                            f"warning: {self.dropped}"])
        self.assertEqual(out, "done\n")
        self.assertEqual(events.take_warnings(), [])  # taken once, by the runner

    def test_router_error_keeps_the_warnings_of_the_run(self):
        ctx = Ctx(warnings=["config: deprecated key"])

        def command() -> Result:
            self.dropped = self.fail_an_append()
            raise RouterError("boom", hint="do this", exit_code=5)

        code, out, _ = captured(frontend.run_command, "x y", command, ctx, True)
        self.assertEqual(code, 5)
        envelope = json.loads(out)
        self.assertEqual((envelope["command"], envelope["ok"], envelope["data"]), ("x y", False, None))
        self.assertEqual(envelope["errors"][0]["message"], "boom")
        self.assertEqual(envelope["warnings"], ["config: deprecated key", self.dropped])
        code, out, err = captured(frontend.run_command, "x y", command, ctx, False)
        self.assertEqual((code, out), (5, ""))
        self.assertEqual(err, f"warning: config: deprecated key\nwarning: {self.dropped}\nerror: boom\nhint: do this\n")

    def test_interrupt_os_error_and_bug(self):
        def raising(exc):
            def command():
                raise exc
            return command

        code, out, err = captured(frontend.run_command, "x", raising(KeyboardInterrupt()), Ctx(), True)
        self.assertEqual((code, out, err), (130, "", "error: interrupted\n"))
        code, _, err = captured(frontend.run_command, "x", raising(OSError(errno.EROFS, "Read-only file system")),
                                Ctx(), False)
        self.assertEqual(code, USAGE)
        self.assertTrue(err.startswith("error: "), err)
        self.assertNotIn("Traceback", err)
        code, _, err = captured(frontend.run_command, "x", raising(ValueError("bad\nvalue")), Ctx(), False,
                                debug_hint="the hint")
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: unexpected ValueError: bad value\nhint: the hint\n")
        code, _, err = captured(frontend.run_command, "x", raising(ValueError("bad")), Ctx(), False, debug=True)
        self.assertEqual(code, 1)
        self.assertIn("Traceback (most recent call last)", err)
        self.assertTrue(err.endswith("error: unexpected ValueError: bad\nhint: " + frontend.DEBUG_HINT + "\n"))
        code, _, err = captured(frontend.run_command, "x", raising(RouterError("plain", exit_code=3)), Ctx(), False,
                                debug=True)
        self.assertEqual((code, err), (3, "error: plain\n"))  # a RouterError is not a bug: no traceback

    def test_a_callable_name_is_asked_only_on_failure(self):
        asked = []

        def name() -> str:
            asked.append(True)
            return "late name"

        captured(frontend.run_command, name, lambda: Result("x", text="ok"), Ctx(), True)
        self.assertEqual(asked, [])
        _, out, _ = captured(frontend.run_command, name, mock.Mock(side_effect=RouterError("no")), Ctx(), True)
        self.assertEqual(json.loads(out)["command"], "late name")

    def test_old_names_still_importable_from_cli(self):
        self.assertIs(cli.fail, frontend.fail)
        self.assertIs(cli.emit_result, frontend.emit_result)


class CliRunnerTest(TempRepo):
    def test_config_warnings_shown_once_by_the_cli(self):
        self.write_config(LEGACY)
        code, out, err = self.cli("--json", "config", "show")
        self.assertEqual(code, 0, err)
        warnings = json.loads(out)["warnings"]
        self.assertTrue(any("services.cliproxyapi" in w for w in warnings), warnings)
        self.assertEqual(len(warnings), len(set(warnings)))
        code, _, err = self.cli("config", "check")
        self.assertEqual(code, 0, err)
        self.assertEqual(err.count("'services.cliproxyapi' was read as"), 1, err)

    def test_config_warnings_kept_when_the_command_fails(self):
        self.write_config(LEGACY)
        code, out, _ = self.cli("--json", "profile", "show", "no-such-profile")
        self.assertNotEqual(code, 0)
        envelope = json.loads(out)
        self.assertEqual(envelope["command"], "profile show")
        self.assertTrue(any("services.cliproxyapi" in w for w in envelope["warnings"]), envelope)

    def test_usage_error_is_reported_under_the_program_name(self):
        self.write_config()
        code, out, err = self.cli("--json", "config", "frobnicate")
        self.assertEqual(code, USAGE)
        self.assertEqual(json.loads(out)["command"], "llm-router")

    def test_debug_flag_shows_the_traceback_of_a_bug(self):
        self.write_config()
        with mock.patch("llm_router.commands.config.check", side_effect=ValueError("oops")):
            code, _, err = self.cli("config", "check")
            self.assertEqual(code, 1)
            self.assertNotIn("Traceback", err)
            self.assertIn("hint: re-run with --debug", err)
            code, _, err = self.cli("--debug", "config", "check")
        self.assertEqual(code, 1)
        self.assertIn("Traceback (most recent call last)", err)
        self.assertIn("error: unexpected ValueError: oops", err)

    def test_interrupt(self):
        self.write_config()
        with mock.patch("llm_router.commands.config.check", side_effect=KeyboardInterrupt):
            code, out, err = self.cli("config", "check")
        self.assertEqual((code, out, err), (130, "", "error: interrupted\n"))


class TaskRunnerTest(TempRepo):
    def run_task(self, fn, **kwargs):
        """`_common.run` as a task calls it: (exit code, stdout, stderr)."""
        code = 0
        out, err = io.StringIO(), io.StringIO()
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                _common.run("test task", fn, **kwargs)
            except Exit as exc:
                code = exc.code
                if exc.message:
                    err.write(exc.message + "\n")
        return code, out.getvalue(), err.getvalue()

    def test_ctx_warnings_and_exit_codes(self):
        self.write_config(LEGACY)

        def command(ctx: Ctx, value: int) -> Result:
            ctx.config  # loads the config: its migration warnings go to ctx.warnings
            return Result("test task", data={"value": value}, exit_code=value, warnings=["own"])

        code, out, err = self.run_task(command, json=True, value=0)
        self.assertEqual(code, 0, err)
        envelope = json.loads(out)
        self.assertEqual(envelope["data"], {"value": 0})
        self.assertEqual(envelope["warnings"][-1], "own")
        self.assertTrue(any("services.cliproxyapi" in w for w in envelope["warnings"][:-1]), envelope)
        code, _, _ = self.run_task(command, value=3)
        self.assertEqual(code, 3)

    def test_interrupt_and_debug_traceback(self):
        self.write_config()
        code, out, err = self.run_task(mock.Mock(side_effect=KeyboardInterrupt))
        self.assertEqual((code, out, err), (130, "", "error: interrupted\n"))
        with patched_env({"LLM_ROUTER_DEBUG": None}):
            code, _, err = self.run_task(mock.Mock(side_effect=ValueError("oops")))
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: unexpected ValueError: oops\nhint: set LLM_ROUTER_DEBUG=1 for the traceback "
                              "and report it\n")
        with patched_env({"LLM_ROUTER_DEBUG": "1"}):
            code, _, err = self.run_task(mock.Mock(side_effect=ValueError("oops")))
        self.assertEqual(code, 1)
        self.assertIn("Traceback (most recent call last)", err)

    def test_invoke_program_maps_a_missing_config(self):
        from tests.support import inv

        with patched_env({"LLM_ROUTER_CONFIG": str(Path(self.root) / "missing.yaml"), "LLM_ROUTER_DEBUG": None}):
            code, out, err = inv("config.check", "--json")
        self.assertEqual(code, 2)
        envelope = json.loads(out)
        self.assertEqual((envelope["command"], envelope["ok"]), ("config check", False))
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(self.root / "missing.yaml"))


if __name__ == "__main__":
    unittest.main()
