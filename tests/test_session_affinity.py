"""Session affinity inside CLIProxyAPI: a multi-turn conversation stays on the account that served its first turn.

Three levels:
- the runtime-config rule (`cliproxy.session_affinity_rule`, `write_runtime_config`): `routing.session-affinity:
  true` is added where the installed line has it (6.9.27+), nothing is added on a line without it, and a value the
  user's cliproxyapi.yaml sets is kept;
- the CLIProxyAPIPlus stand-in on its own, per emulated line: round-robin over the accounts, and with affinity on
  the session keys upstream uses (`metadata.user_id` on every affinity line, `prompt_cache_key` from 7.2.103, never
  `previous_response_id`), a pinned account that goes away replaced by the next;
- the real LiteLLM proxy on loopback in front of the stand-in with TWO Codex accounts: multi-turn Responses
  conversations (`previous_response_id` plus a session key, and the full history resent) land on one account every
  turn; `previous_response_id` alone does not pin one (LiteLLM forwards no session header, and the Codex executor
  drops the id).

The stand-in's request log (`GET /_standin/requests`) says which account served each request.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

import yaml

from llm_router import cliproxy
from llm_router.cliproxy_lines import expected_features
from llm_router.config import MASTER_KEY_ENV
from llm_router.standin import cliproxy as standin
from llm_router.standin.process import free_port, requests_log, start_cliproxy

from .litellm_support import class_sandbox, requires_litellm
from .support import STACK_CONFIG, TempRepo

PLUS_6, OLD_PLUS, MAINLINE_7, PLUS_FORK_7 = "6.9.28-0", "6.6.9-0", "7.2.140", "7.1.68-6"
AFFINITY_LINES = (PLUS_6, MAINLINE_7, PLUS_FORK_7)
CODEX_MODEL = "gpt-5.1-codex-max"
ACCOUNTS = (("first@example.com", "plus"), ("second@example.com", "plus"))
CLIENT_KEY = "sk-affinity-client-0123456789"
TIMEOUT = 120.0
RESCAN_WAIT = 30.0  # the stand-in rescans its auth folder every 0.5 s; generous on a loaded machine
LOG_WAIT = 30.0  # the stand-in logs a request just after it has sent the answer


def served_since(base: str, mark: int, count: int = 1) -> list[tuple[str, str | None]]:
    """(account, affinity outcome) of the `count` answered /v1/responses requests after `mark`, waiting for the
    request log to catch up with the answers (an entry is added once its answer is sent)."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        served = [(e["account"], e.get("affinity")) for e in requests_log(base, since=mark)
                  if e["path"] == "/v1/responses" and e["status"] == 200]
        if len(served) >= count or time.monotonic() > deadline:
            return served
        time.sleep(0.05)


def features(version: str):
    return expected_features(version, standin.emulation(version).program)


class RuntimeConfigRuleTest(TempRepo):
    """`routing.session-affinity` in the enforced runtime config."""

    def setUp(self):
        super().setUp()
        self.write_config(STACK_CONFIG.format(cliproxy_port=free_port(), litellm_port=free_port()))
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        self.user_file = self.root / "config" / "cliproxyapi.yaml"

    def written(self) -> dict:
        return yaml.safe_load(self.cfg.layout.cliproxy_runtime_config.read_text())

    def test_the_rule_on_every_line(self):
        for version in AFFINITY_LINES:
            with self.subTest(version=version):
                self.assertTrue(features(version).session_affinity)
                self.assertEqual(cliproxy.session_affinity_rule({}, features(version)), {"session-affinity": True})
        self.assertFalse(features(OLD_PLUS).session_affinity)
        self.assertIsNone(cliproxy.session_affinity_rule({}, features(OLD_PLUS)), "nothing on a line without it")
        self.assertIsNone(cliproxy.session_affinity_rule({}, None), "nothing for an unknown binary")

    def test_the_users_routing_is_kept(self):
        on = features(PLUS_6)
        self.assertEqual(cliproxy.session_affinity_rule({"routing": {"strategy": "fill-first"}}, on),
                         {"strategy": "fill-first", "session-affinity": True})
        for explicit in ({"session-affinity": False}, {"session-affinity": True, "session-affinity-ttl": "5m"},
                         {"claude-code-session-affinity": False}):
            with self.subTest(explicit=explicit):
                self.assertIsNone(cliproxy.session_affinity_rule({"routing": explicit}, on))
                self.assertFalse(cliproxy.leaves_affinity_to_us({"routing": explicit}))
        self.assertIsNone(cliproxy.session_affinity_rule({"routing": "round-robin"}, on), "not a mapping: as is")

    def test_written_for_the_installed_line(self):
        for version, expected in ((PLUS_6, {"session-affinity": True}), (MAINLINE_7, {"session-affinity": True}),
                                  (OLD_PLUS, None)):
            with self.subTest(version=version):
                standin.install_fake_binary(self.cfg.layout.cliproxy_binary, version=version)
                cliproxy.write_runtime_config(self.cfg)
                self.assertEqual(self.written().get("routing"), expected)
                self.assertEqual(self.cfg.layout.cliproxy_runtime_config.stat().st_mode & 0o777, 0o600)

    def test_no_binary_adds_nothing(self):
        cliproxy.write_runtime_config(self.cfg)
        self.assertNotIn("routing", self.written())

    def test_an_explicit_user_value_is_kept_and_the_binary_not_asked(self):
        self.user_file.write_text("routing:\n  strategy: round-robin\n  session-affinity: false\n")
        standin.install_fake_binary(self.cfg.layout.cliproxy_binary, version=PLUS_6)
        with mock.patch.object(cliproxy, "installed_features", side_effect=AssertionError("probed")):
            cliproxy.write_runtime_config(self.cfg)
        self.assertEqual(self.written()["routing"], {"strategy": "round-robin", "session-affinity": False})

    def test_the_users_other_routing_keys_survive(self):
        self.user_file.write_text("routing:\n  strategy: fill-first\n  session-affinity-ttl: 30m\n")
        cliproxy.write_runtime_config(self.cfg, features=features(MAINLINE_7))
        self.assertEqual(self.written()["routing"],
                         {"strategy": "fill-first", "session-affinity-ttl": "30m", "session-affinity": True})


class SessionKeysTest(unittest.TestCase):
    """The stand-in's session keys, by emulated era (docs/standins.md#session-affinity)."""

    def test_previous_response_id_is_never_a_key(self):
        body = {"input": "turn two", "previous_response_id": "resp_abc"}
        for version in AFFINITY_LINES:
            with self.subTest(version=version):
                primary, _ = standin.session_ids(version, None, body)
                self.assertFalse(primary.endswith("resp_abc"), primary)

    def test_keys_by_era(self):
        user = {"input": "hi", "metadata": {"user_id": "conv-1"}}
        pck = {"input": "hi", "prompt_cache_key": "conv-1"}
        for version in AFFINITY_LINES:
            with self.subTest(version=version):
                self.assertEqual(standin.session_ids(version, None, user), ("user:conv-1", ""))
                self.assertEqual(standin.session_ids(version, {"X-Session-ID": "s"}, {})[0], "header:s")
        self.assertEqual(standin.session_ids(MAINLINE_7, None, pck), ("pck:conv-1", ""))
        self.assertEqual(standin.session_ids(PLUS_6, None, pck), ("", ""), "a string input has no message hash")
        self.assertEqual(standin.session_ids(PLUS_FORK_7, {"Session_id": "c"}, {})[0], "codex:c")
        self.assertEqual(standin.session_ids(PLUS_6, {"Session_id": "c"}, {}), ("", ""), "6.9.42+ only")
        claude = {"metadata": {"user_id": "user_ab_account__session_0f-1"}}
        self.assertEqual(standin.session_ids(PLUS_6, None, claude), ("claude:0f-1", ""))

    def test_the_message_hash_carries_turn_one_to_turn_two(self):
        turn1 = {"instructions": "be brief", "input": [{"role": "user", "content": "hello"}]}
        turn2 = {"instructions": "be brief", "input": [
            {"role": "user", "content": "hello"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]},
            {"role": "user", "content": "more"}]}
        first, none = standin.session_ids(PLUS_6, None, turn1)
        primary, fallback = standin.session_ids(PLUS_6, None, turn2)
        self.assertEqual((none, fallback), ("", first))
        self.assertNotEqual(primary, first)
        self.assertTrue(first.startswith("msg:"))

    def test_ttl_and_strategy(self):
        on = features(PLUS_6)
        self.assertEqual(standin.Routing.from_config({"routing": {"session-affinity": True}}, on).ttl, 3600.0)
        ttl = {"routing": {"session-affinity": True, "session-affinity-ttl": "1h30m"}}
        self.assertEqual(standin.Routing.from_config(ttl, on).ttl, 5400.0)
        bad = {"routing": {"session-affinity": True, "session-affinity-ttl": "soon"}}
        self.assertEqual(standin.Routing.from_config(bad, on).ttl, 3600.0)
        self.assertFalse(standin.Routing.from_config({"routing": {"session-affinity": True}},
                                                     features(OLD_PLUS)).affinity, "the line lacks it")
        self.assertTrue(standin.Routing.from_config({"routing": {"strategy": "ff"}}, on).fill_first)


class StandinAffinityTest(unittest.TestCase):
    """The stand-in process with two Codex accounts, straight over HTTP."""

    def start(self, version: str, routing: dict | None) -> str:
        import httpx

        root = Path(tempfile.mkdtemp(prefix="llm-router-affinity-standin-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.auths = root / "auths"
        for email, plan in ACCOUNTS:
            standin.write_codex_login(self.auths, email, plan)
        config = {"port": free_port(), "host": "127.0.0.1", "auth-dir": str(self.auths), "api-keys": [CLIENT_KEY]}
        if routing is not None:
            config["routing"] = routing
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        proc = start_cliproxy(root / "config.yaml", env={"CLIPROXY_STANDIN_VERSION": version})
        self.addCleanup(proc.stop)
        self.http = httpx.Client(trust_env=False, timeout=TIMEOUT)
        self.addCleanup(self.http.close)
        return proc.base_url

    def served(self, base: str, **body) -> tuple[str, str | None]:
        mark = max([e["seq"] for e in requests_log(base)] or [0])
        response = self.http.post(base + "/v1/responses", json={"model": CODEX_MODEL, **body},
                                  headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        self.assertEqual(response.status_code, 200, response.text[:300])
        self.assertIsNone(response.json()["previous_response_id"], "the Codex executor drops it")
        (served,) = served_since(base, mark)
        return served

    def test_each_line(self):
        for version in (OLD_PLUS, *AFFINITY_LINES):
            with self.subTest(version=version):
                base = self.start(version, {"session-affinity": True})
                turns = [self.served(base, input=f"turn {n}", metadata={"user_id": "conv-a"},
                                     previous_response_id=f"resp_{n}") for n in range(3)]
                accounts = {account for account, _ in turns}
                if version == OLD_PLUS:
                    self.assertEqual(len(accounts), 2, f"6.6 has no session affinity: round-robin {turns}")
                    self.assertEqual({outcome for _, outcome in turns}, {None})
                else:
                    self.assertEqual(len(accounts), 1, turns)
                    self.assertEqual([outcome for _, outcome in turns], ["new", "hit", "hit"])

    def test_off_unless_configured(self):
        base = self.start(PLUS_6, None)
        turns = [self.served(base, input="x", metadata={"user_id": "conv-a"}) for _ in range(2)]
        self.assertEqual(len({account for account, _ in turns}), 2, f"round-robin: {turns}")

    def test_prompt_cache_key_pins_from_7_2_103(self):
        base = self.start(MAINLINE_7, {"session-affinity": True})
        turns = [self.served(base, input=f"turn {n}", prompt_cache_key="conv-b") for n in range(3)]
        self.assertEqual(len({account for account, _ in turns}), 1, turns)

    def test_a_pinned_account_that_goes_away_is_replaced(self):
        base = self.start(PLUS_6, {"session-affinity": True})
        pinned, _ = self.served(base, input="x", metadata={"user_id": "conv-c"})
        (self.auths / pinned).unlink()
        deadline = time.monotonic() + RESCAN_WAIT
        while True:
            account, outcome = self.served(base, input="y", metadata={"user_id": "conv-c"})
            if account != pinned:
                break
            self.assertLess(time.monotonic(), deadline, "the stand-in never noticed the removed account")
            time.sleep(0.5)
        self.assertEqual(outcome, "rebound")
        self.assertEqual(self.served(base, input="z", metadata={"user_id": "conv-c"}), (account, "hit"))


@requires_litellm
class LiteLLMAffinityTest(unittest.TestCase):
    """The real LiteLLM proxy (balanced profile) over the stand-in (6.9.28-0) with two Codex accounts."""

    @classmethod
    def setUpClass(cls):
        import openai

        def two_codex_accounts(box) -> None:
            auths = box.cfg.layout.auths_dir
            for path in auths.glob("codex-*.json"):
                path.unlink()  # the sandbox's own Codex account: replaced by the two below
            cls.accounts = sorted(standin.write_codex_login(auths, *account).name for account in ACCOUNTS)
            for name in cls.accounts:
                (auths / name).chmod(0o600)

        cls.box = box = class_sandbox(cls, "llm-router-affinity-", {"cliproxy": {"type": "cliproxyapi_plus"}},
                                      {"coder": [("cliproxy", CODEX_MODEL)]}, "balanced",
                                      before_start=two_codex_accounts)
        cls.client = openai.OpenAI(base_url=box.litellm_url + "/v1", api_key=box.cfg.secret(MASTER_KEY_ENV),
                                   max_retries=0, timeout=TIMEOUT,
                                   http_client=openai.DefaultHttpxClient(trust_env=False))
        cls.addClassCleanup(cls.client.close)

    def mark(self) -> int:
        return max([e["seq"] for e in requests_log(self.box.cliproxy_url)] or [0])

    def turn(self, **request) -> tuple[object, tuple[str, str | None]]:
        mark = self.mark()
        response = self.client.responses.create(model="coder", **request)
        (served,) = served_since(self.box.cliproxy_url, mark)
        return response, served

    def test_the_runtime_config_turns_it_on(self):
        written = yaml.safe_load(self.box.cfg.layout.cliproxy_runtime_config.read_text())
        self.assertIs(written["routing"]["session-affinity"], True)

    def test_previous_response_id_conversations_stay_on_their_account(self):
        served: dict[str, list] = {"conv-a": [], "conv-b": []}
        previous: dict[str, str | None] = {"conv-a": None, "conv-b": None}
        for n in range(3):
            for conversation in served:
                extra = {"previous_response_id": previous[conversation]} if previous[conversation] else {}
                response, who = self.turn(input=f"{conversation} turn {n}", metadata={"user_id": conversation},
                                          **extra)
                previous[conversation] = response.id
                served[conversation].append(who)
        for conversation, turns in served.items():
            self.assertEqual(len({account for account, _ in turns}), 1, f"{conversation}: {turns}")
            self.assertEqual([outcome for _, outcome in turns], ["new", "hit", "hit"], conversation)
        self.assertEqual({served["conv-a"][0][0], served["conv-b"][0][0]}, set(self.accounts),
                         "two new conversations are bound round-robin, one per account")

    def test_the_full_history_stays_on_its_account(self):
        history: list = []
        turns = []
        for n in range(3):
            history.append({"role": "user", "content": f"history turn {n}"})
            response, who = self.turn(input=list(history), instructions="answer briefly")
            history.append({"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": response.output_text}]})
            turns.append(who)
        self.assertEqual(len({account for account, _ in turns}), 1, turns)
        self.assertEqual([outcome for _, outcome in turns], ["new", "fallback-hit", "hit"])

    def test_previous_response_id_alone_pins_no_account(self):
        first, one = self.turn(input="alone one")
        _, two = self.turn(input="alone two", previous_response_id=first.id)
        self.assertEqual((one[1], two[1]), (None, None), "no session key reached CLIProxyAPI")
        self.assertEqual({one[0], two[0]}, set(self.accounts), "round-robin: the next account")


if __name__ == "__main__":
    unittest.main()
