"""Session affinity for multi-turn Responses calls, through the real LiteLLM proxy on the `cost` profile.

The profiles set `router_settings.optional_pre_call_checks: ["responses_api_deployment_check"]` (LiteLLM PR
#10193; in 1.108.7 it is DeploymentAffinityCheck with enable_responses_api_affinity): LiteLLM encodes the answering
deployment's model id in the response id it returns, and a request whose `previous_response_id` carries it is
sent to that deployment, before the `order` filter, so a conversation that failed over stays where it moved to.
"""
from __future__ import annotations

import time
import unittest

from llm_router.config import MASTER_KEY_ENV
from llm_router.standin.process import requests_log, set_fault
from tests.litellm_support import class_sandbox, requires_litellm

CLIPROXY = "cliproxy"
FIRST, SECOND = "pin-first", "pin-second"
TIMEOUT = 120.0
COOLDOWN_WAIT = 90.0  # the cost profile cools a failed deployment for 15 s; generous on a loaded machine


@requires_litellm
class ResponsesAffinityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import httpx

        cls.box = box = class_sandbox(cls, "llm-router-affinity-", {CLIPROXY: {"type": "cliproxyapi_plus"}},
                                      {"pin": [(CLIPROXY, FIRST), (CLIPROXY, SECOND)]}, "cost")
        cls.http = httpx.Client(trust_env=False, timeout=TIMEOUT)
        cls.addClassCleanup(cls.http.close)
        cls.key = box.cfg.secret(MASTER_KEY_ENV)

    def respond(self, text: str, **extra):
        response = self.http.post(self.box.litellm_url + "/v1/responses", json={"model": "pin", "input": text, **extra},
                                  headers={"Authorization": f"Bearer {self.key}"})
        self.assertEqual(response.status_code, 200, response.text[:500])
        return response.json()

    def answered_by(self, since: int) -> list[str]:
        return [e["model"] for e in requests_log(self.box.cliproxy_url, since=since)
                if e["path"] == "/v1/responses" and e["status"] == 200]

    def last_seq(self) -> int:
        return max([e["seq"] for e in requests_log(self.box.cliproxy_url)] or [0])

    def test_previous_response_id_reaches_the_deployment_that_answered(self):
        set_fault(self.box.cliproxy_url, FIRST, status=429, count=1)
        mark = self.last_seq()
        first_turn = self.respond("turn one")
        self.assertEqual(self.answered_by(mark), [SECOND], "the 429 moved turn one to the second deployment")
        # wait (no timing assertion) until the first deployment serves new conversations again
        deadline = time.monotonic() + COOLDOWN_WAIT
        while True:
            mark = self.last_seq()
            self.respond("a new conversation")
            if self.answered_by(mark) == [FIRST]:
                break
            self.assertLess(time.monotonic(), deadline, "the first deployment never came back from its cooldown")
            time.sleep(1.0)
        mark = self.last_seq()
        self.respond("turn two", previous_response_id=first_turn["id"])
        self.assertEqual(self.answered_by(mark), [SECOND], "turn two follows turn one, not the order")
        mark = self.last_seq()
        self.respond("another new conversation")
        self.assertEqual(self.answered_by(mark), [FIRST], "without previous_response_id the order applies")


if __name__ == "__main__":
    unittest.main()
