"""The shipped profiles on the real LiteLLM proxy (runtime group) over stand-in upstreams, driven with `openai`.

One LiteLLM per test class (~10 s to start). Each scenario has its own model group, so the cooldown one test
causes never reaches another. Upstream models are named after their group; `cliproxy` plays CLIProxyAPIPlus,
`flaky` is a subscription upstream that a test stops (refused connections), `paid` has tier paid.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import unittest
from pathlib import Path

import yaml

from llm_router.standin.process import set_fault, stats
from tests.litellm_support import StandinStack, requires_litellm
from tests.support import TempRepo, snapshot
from tests.test_profiles import STANDALONE

GROUPS = {
    "healthy": [("cliproxy", "healthy-1"), ("cliproxy", "healthy-2"), ("paid", "healthy-paid")],
    "on-429": [("cliproxy", "r429-1"), ("cliproxy", "r429-2"), ("paid", "r429-paid")],
    "on-500": [("cliproxy", "r500-1"), ("cliproxy", "r500-2"), ("paid", "r500-paid")],
    "on-refused": [("flaky", "refused-1"), ("cliproxy", "refused-2"), ("paid", "refused-paid")],
    "stream": [("cliproxy", "stream-1"), ("cliproxy", "stream-2"), ("paid", "stream-paid")],
    "stream-429": [("cliproxy", "s429-1"), ("cliproxy", "s429-2"), ("paid", "s429-paid")],
    "paid-first": [("paid", "pf-paid"), ("cliproxy", "pf-1"), ("cliproxy", "pf-2")],
    "paid-guard": [("paid", "pg-paid"), ("cliproxy", "pg-1"), ("cliproxy", "pg-2")],
    "last-resort": [("cliproxy", "lr-1"), ("paid", "lr-paid")],
    "retry-after": [("cliproxy", "ra-1"), ("cliproxy", "ra-2")],
}
MESSAGES = [{"role": "user", "content": "ping"}]


def dep_id(group: str, index: int) -> str:
    provider, model = GROUPS[group][index]
    return f"{group}/{provider}/{model}"


class ProfileOnLiteLLM:
    """The scenarios every shipped profile must pass; subclasses name the profile."""

    PROFILE: str
    FIRST_OF_PAID_FIRST: str  # the deployment a healthy `paid-first` request lands on

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.root = Path(tempfile.mkdtemp(prefix=f"llm-router-{cls.PROFILE}-"))
        cls.addClassCleanup(shutil.rmtree, cls.root, True)
        cls.stack = StandinStack(cls.root, GROUPS)
        cls.addClassCleanup(cls.stack.stop)
        cls.proxy = cls.stack.proxy(cls.PROFILE)
        cls.addClassCleanup(cls.proxy.stop)
        cls.proxy.start()
        cls.client = cls.proxy.client()
        cls.config = yaml.safe_load(cls.proxy.config_path.read_text())

    def ask(self, group: str) -> tuple[dict, str]:
        raw = self.client.chat.completions.with_raw_response.create(model=group, messages=MESSAGES)
        return raw.headers, raw.parse().choices[0].message.content

    def ask_streaming(self, group: str) -> tuple[dict, str]:
        raw = self.client.chat.completions.with_raw_response.create(model=group, messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices)
        return raw.headers, text

    def received(self, group: str, index: int) -> int:
        provider, model = GROUPS[group][index]
        if provider == "flaky":
            raise AssertionError("the flaky upstream is stopped; it counts nothing")
        return stats(self.stack.url(provider))["requests"].get(model, 0)

    def assert_fails_over(self, group: str) -> None:
        """Requests succeed on the second deployment; the failover shows in the headers of the first one; the
        broken deployment is soon left alone (cooldown); the paid one is never needed."""
        headers, text = self.ask(group)
        self.assertEqual(headers["x-litellm-model-id"], dep_id(group, 1))
        self.assertEqual(text, f"standin {GROUPS[group][1][0]} model {GROUPS[group][1][1]}")
        moved = int(headers["x-litellm-attempted-fallbacks"]) + int(headers["x-litellm-attempted-retries"])
        self.assertGreaterEqual(moved, 1, dict(headers))
        for _ in range(3):
            self.assertEqual(self.ask(group)[0]["x-litellm-model-id"], dep_id(group, 1))
        if GROUPS[group][0][0] != "flaky":
            settled = self.received(group, 0)
            for _ in range(3):
                self.assertEqual(self.ask(group)[0]["x-litellm-model-id"], dep_id(group, 1))
            self.assertEqual(self.received(group, 0), settled, "the broken deployment is not cooling down")
        self.assertEqual(self.received(group, 2), 0, "a paid deployment was used while a subscription one works")

    def test_requests_land_on_the_first_deployment(self):
        for _ in range(3):
            headers, text = self.ask("healthy")
            self.assertEqual(headers["x-litellm-model-id"], dep_id("healthy", 0))
            self.assertEqual(headers["x-litellm-attempted-fallbacks"], "0")
            self.assertEqual(text, "standin cliproxy model healthy-1")
        self.assertEqual((self.received("healthy", 1), self.received("healthy", 2)), (0, 0))

    def test_first_deployment_answers_429(self):
        set_fault(self.stack.url("cliproxy"), "r429-1", status=429, retry_after=1800)
        self.assert_fails_over("on-429")

    def test_first_deployment_answers_500(self):
        set_fault(self.stack.url("cliproxy"), "r500-1", status=500)
        self.assert_fails_over("on-500")

    def test_first_deployment_refuses_connections(self):
        self.stack.servers["flaky"].stop()
        self.assert_fails_over("on-refused")

    def test_streaming(self):
        headers, text = self.ask_streaming("stream")
        self.assertEqual(headers["x-litellm-model-id"], dep_id("stream", 0))
        self.assertEqual(text, "standin cliproxy model stream-1")
        set_fault(self.stack.url("cliproxy"), "s429-1", status=429)
        headers, text = self.ask_streaming("stream-429")
        self.assertEqual(headers["x-litellm-model-id"], dep_id("stream-429", 1))
        self.assertEqual(text, "standin cliproxy model s429-2")

    def test_paid_deployment_position(self):
        self.assertEqual(self.ask("paid-first")[0]["x-litellm-model-id"], self.FIRST_OF_PAID_FIRST)

    def test_paid_deployment_is_the_last_resort(self):
        set_fault(self.stack.url("cliproxy"), "lr-1", status=500)
        headers, text = self.ask("last-resort")
        self.assertEqual(headers["x-litellm-model-id"], dep_id("last-resort", 1))
        self.assertEqual(text, "standin paid model lr-paid")


@requires_litellm
class BalancedOnLiteLLMTest(ProfileOnLiteLLM, unittest.TestCase):
    PROFILE = "balanced"
    FIRST_OF_PAID_FIRST = dep_id("paid-first", 0)  # the configured order


@requires_litellm
class ReliabilityOnLiteLLMTest(ProfileOnLiteLLM, unittest.TestCase):
    PROFILE = "reliability"
    FIRST_OF_PAID_FIRST = dep_id("paid-first", 0)


@requires_litellm
class CostOnLiteLLMTest(ProfileOnLiteLLM, unittest.TestCase):
    PROFILE = "cost"
    FIRST_OF_PAID_FIRST = dep_id("paid-first", 1)  # subscription first, whatever the configured order

    def test_never_reaches_paid_while_a_subscription_deployment_works(self):
        set_fault(self.stack.url("cliproxy"), "pg-1", status=429, retry_after=1800)
        for _ in range(4):
            self.assertEqual(self.ask("paid-guard")[0]["x-litellm-model-id"], dep_id("paid-guard", 2))
        self.assertEqual(stats(self.stack.url("paid"))["requests"].get("pg-paid", 0), 0)
        set_fault(self.stack.url("cliproxy"), "pg-2", status=500)
        self.assertEqual(self.ask("paid-guard")[0]["x-litellm-model-id"], dep_id("paid-guard", 0))

    def test_retry_after_does_not_outlast_the_profile_cooldown(self):
        set_fault(self.stack.url("cliproxy"), "ra-1", status=429, retry_after=1800, count=1)
        self.assertEqual(self.ask("retry-after")[0]["x-litellm-model-id"], dep_id("retry-after", 1))
        cooldown = self.config["router_settings"]["cooldown_time"]
        time.sleep(cooldown + 2)  # Retry-After said 30 minutes; the deployment's cooldown_time wins
        self.assertEqual(self.ask("retry-after")[0]["x-litellm-model-id"], dep_id("retry-after", 0))


@requires_litellm
class DeepValidationTest(TempRepo):
    """`profile set --deep` also loads the rendered file with `litellm --validate_config` (~11 s each)."""

    def setUp(self) -> None:
        super().setUp()
        self.write_config()

    def test_a_shipped_profile_passes(self):
        code, out, err = self.cli("profile", "set", "reliability", "--deep")
        self.assertEqual(code, 0, err)
        self.assertIn("profile reliability active", out)

    def test_a_deployment_litellm_drops_is_caught(self):
        # model_info.tier is a LiteLLM field ("free" or "paid"): LiteLLM drops the deployment and still says OK
        folder = self.root / "config" / "profiles"
        folder.mkdir()
        (folder / "tiered.yaml.j2").write_text(STANDALONE.replace('/cliproxy/x"}', '/cliproxy/x", tier: gold}'))
        before = snapshot(self.root)
        code, _, err = self.cli("profile", "set", "tiered", "--deep")
        self.assertEqual(code, 2, err)
        self.assertIn("profile 'tiered': LiteLLM loaded 0 of 2 deployments", err)
        self.assertEqual(snapshot(self.root), before)


if __name__ == "__main__":
    unittest.main()
