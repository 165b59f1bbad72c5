"""`smoke`'s operator flow as named steps, with the supervisor and the profile switch replaced by fakes (fast; the
real processes are in test_smoke.py): the step list in order, skips after a failure, Ctrl-C, clean-up that stops
only what smoke started and puts back a profile it changed, and a profile step that says what the switch did."""
from __future__ import annotations

import unittest
from types import SimpleNamespace
from unittest import mock

from llm_router import config as config_mod
from llm_router.checks import OK, smoke
from llm_router.errors import RouterError
from llm_router.supervisor.model import ServiceOutcome
from llm_router.switch import SwitchResult
from tests.support import TempRepo

ORDER = ("cliproxyapi_plus", "litellm")
STEP_NAMES = ["doctor", "profile set", "service start", "health", "chat completion", "streamed completion",
              "streamed responses", "streamed messages", "service stop"]


class FakeStack:
    """What the flow asks the supervisor and the profile switch, recorded."""

    def __init__(self, running=(), active="balanced", how="worker swap", fail_start=None):
        self.running = set(running)
        self.active = active
        self.how = how
        self.fail_start = fail_start
        self.stopped: list[list[str]] = []
        self.switched: list[str] = []

    def start(self, cfg, names, timeout=None):
        [name] = names
        if name == self.fail_start:
            raise RouterError(f"{name} was not ready within 1 s", hint="see the log")
        result = "already running" if name in self.running else "started"
        self.running.add(name)
        return [ServiceOutcome(name, result, pid=42, port=4000)]

    def stop(self, cfg, names):
        self.stopped.append(list(names))
        return [ServiceOutcome(n, "stopped") for n in names]

    def health_check(self, cfg):
        return [{"service": n, "ready": True, "state": "RUNNING", "probe": {"latency_ms": 3.0, "error": None}}
                for n in ORDER]

    def set_profile(self, cfg, name):
        previous, self.active = self.active, name
        self.switched.append(name)
        return SwitchResult(name=name, sha256="0" * 64, time="t", template="t", config="c", previous=previous,
                            applied={"how": self.how}, seconds=0.1)

    def patches(self, test: unittest.TestCase) -> None:
        fake_services = SimpleNamespace(ORDER=ORDER, is_running=lambda cfg, name: name in self.running,
                                        start=self.start, stop=self.stop, health_check=self.health_check)
        for target, value in (
                ("llm_router.checks.smoke.stack", fake_services),
                ("llm_router.profiles.active", lambda cfg: {"name": self.active} if self.active else None),
                ("llm_router.profiles.render", lambda cfg, name: f"rendered {name}\n"),
                ("llm_router.switch.set_profile", self.set_profile),
                ("llm_router.checks.doctor.run", lambda cfg: []),
                ("llm_router.checks.doctor.summary", lambda findings: {OK: 7, "warn": 1})):
            patcher = mock.patch(target, value)
            patcher.start()
            test.addCleanup(patcher.stop)


class OperatorFlowTest(TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        self.cfg = config_mod.load(self.config_path)
        self.answers = {}  # the endpoint's steps answer from here (they talk HTTP in test_smoke.py)
        for method in ("chat", "stream", "responses_stream", "anthropic_stream"):
            patcher = mock.patch.object(smoke.OperatorFlow, method,
                                        lambda flow, _m=method: self.answers.get(_m, lambda: f"{_m} ok")())
            patcher.start()
            self.addCleanup(patcher.stop)

    def smoke(self, stack: FakeStack, profile: str = "cost") -> smoke.SmokeReport:
        stack.patches(self)
        return smoke.run(self.cfg, profile=profile)

    def by_name(self, report) -> dict[str, smoke.Step]:
        return {s.name: s for s in report.steps}

    def test_steps_in_order_and_the_changed_profile_put_back(self):
        stack = FakeStack(how="worker swap")
        report = self.smoke(stack)
        self.assertTrue(report.ok, report.steps)
        self.assertEqual([s.name for s in report.steps], [*STEP_NAMES, "profile restore"])
        steps = self.by_name(report)
        self.assertEqual(steps["doctor"].detail, "7 ok, 1 warning(s)")
        self.assertEqual(steps["profile set"].detail,
                         "cost activated (was balanced); LiteLLM serves it now (worker swap)")
        self.assertEqual(steps["profile restore"].detail, "balanced active again; LiteLLM serves it now (worker swap)")
        self.assertEqual(stack.switched, ["cost", "balanced"])
        self.assertEqual(report.started, list(ORDER))
        self.assertEqual(stack.stopped, [list(ORDER)])
        self.assertEqual(steps["chat completion"].detail, "chat ok")

    def test_profile_step_says_what_the_switch_did(self):
        for how, clause in (("restart", "LiteLLM restarted on it"),
                            ("not running", "LiteLLM was not running (it starts on it)")):
            with self.subTest(how):
                stack = FakeStack(how=how)
                steps = self.by_name(self.smoke(stack))
                self.assertEqual(steps["profile set"].detail, f"cost activated (was balanced); {clause}")
                self.assertEqual(steps["profile restore"].detail, f"balanced active again; {clause}")

    def test_an_unchanged_profile_is_not_switched_or_restored(self):
        (self.cfg.layout.active_config.parent).mkdir(parents=True, exist_ok=True)
        self.cfg.layout.active_config.write_text("rendered balanced\n", encoding="utf-8")
        stack = FakeStack(running=ORDER)
        report = self.smoke(stack, profile="balanced")
        steps = self.by_name(report)
        self.assertEqual(steps["profile set"].detail, "balanced is already active (unchanged)")
        self.assertNotIn("profile restore", steps)
        self.assertEqual(stack.switched, [])
        # both were running already: nothing is stopped
        self.assertEqual(report.started, [])
        self.assertEqual(stack.stopped, [])
        self.assertEqual(steps["service stop"].detail, "left running as found: cliproxyapi_plus, litellm")

    def test_a_failed_start_skips_the_rest_and_stops_only_what_smoke_started(self):
        stack = FakeStack(fail_start="litellm")
        report = self.smoke(stack)
        steps = self.by_name(report)
        self.assertFalse(report.ok)
        self.assertEqual(steps["service start"].status, smoke.FAIL)
        self.assertEqual(steps["service start"].detail,
                         "litellm: litellm was not ready within 1 s (after: cliproxyapi_plus started (pid 42, "
                         "port 4000))")
        self.assertEqual(steps["service start"].hint, "see the log")
        for name in STEP_NAMES[3:-1]:
            self.assertEqual((steps[name].status, steps[name].detail),
                             (smoke.SKIP, "not run: an earlier step failed"))
        self.assertEqual(stack.stopped, [["cliproxyapi_plus"]])
        self.assertEqual(steps["service stop"].detail, "cliproxyapi_plus stopped")
        self.assertEqual(steps["profile restore"].status, OK)
        self.assertEqual(stack.switched, ["cost", "balanced"])

    def test_ctrl_c_is_a_step_and_the_clean_up_still_runs(self):
        def interrupted():
            raise KeyboardInterrupt

        self.answers["stream"] = interrupted
        stack = FakeStack(running=["cliproxyapi_plus"])
        report = self.smoke(stack)
        steps = self.by_name(report)
        self.assertTrue(report.interrupted)
        self.assertEqual(steps["streamed completion"].status, smoke.INTERRUPTED)
        self.assertEqual(steps["streamed responses"].status, smoke.SKIP)
        self.assertEqual(stack.stopped, [["litellm"]])
        self.assertEqual(steps["service stop"].detail, "litellm stopped; left running as found: cliproxyapi_plus")
        self.assertEqual(steps["profile restore"].status, OK)

    def test_a_bug_escaping_the_flow_still_stops_and_restores(self):
        # not a step's exception (those are recorded): the report's notify itself fails after "health"
        stack = FakeStack()
        stack.patches(self)
        seen = []

        def notify(step):
            seen.append(step.name)
            if step.name == "health":
                raise RuntimeError("notify broke")

        with self.assertRaises(RuntimeError):
            smoke.run(self.cfg, profile="cost", notify=notify)
        self.assertEqual(seen[-2:], ["service stop", "profile restore"])
        self.assertEqual(stack.stopped, [list(ORDER)])
        self.assertEqual(stack.switched, ["cost", "balanced"])


if __name__ == "__main__":
    unittest.main()
