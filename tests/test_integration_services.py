"""The whole stack with real processes: the CLIProxyAPIPlus stand-in and the real LiteLLM proxy.

service start all → status → health → one chat completion through LiteLLM with the openai client →
service restart litellm → service stop all → nothing of ours left (checked through psutil in cleanup).
"""
from __future__ import annotations

import json
import unittest

import psutil
from openai import OpenAI

from llm_router import stack
from llm_router.errors import CONFLICT, USAGE
from llm_router.standin.cliproxy import write_codex_login
from tests.support import StackRepo


class FullStackTest(StackRepo):
    def test_start_status_health_chat_restart_stop(self):
        write_codex_login(self.cfg.layout.auths_dir, "dev@example.com", "plus")
        code, out, err = self.cli("service", "start", "all")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertLess(out.index("cliproxyapi_plus  started"), out.index("litellm  started"))
        self.assertIn("profile balanced", out)

        code, out, _ = self.cli("status", "--json")
        states = {s["name"]: s for s in json.loads(out)["data"]["services"]}
        self.assertEqual(states["litellm"]["state"], "RUNNING")
        self.assertEqual(states["litellm"]["profile"], "balanced")
        self.assertEqual(states["cliproxyapi_plus"]["state"], "RUNNING")

        code, out, err = self.cli("health")
        self.assertEqual(code, 0, out + err)

        client = OpenAI(base_url=f"http://127.0.0.1:{self.ports['litellm_port']}/v1",
                        api_key=self.cfg.secret("LITELLM_MASTER_KEY"), max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
        self.assertIn("gpt-5-codex", reply.choices[0].message.content)

        old_pid = states["litellm"]["pid"]
        code, out, err = self.cli("service", "restart", "litellm")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertFalse(psutil.pid_exists(old_pid) and psutil.Process(old_pid).status() != psutil.STATUS_ZOMBIE)
        self.assertTrue(stack.is_running(self.cfg, "cliproxyapi_plus"))  # untouched by a LiteLLM restart
        reply = client.chat.completions.create(model="coder", messages=[{"role": "user", "content": "again"}])
        self.assertTrue(reply.choices[0].message.content)

        code, out, err = self.cli("service", "stop", "all")
        self.assertEqual(code, 0, out + err)
        self.assertLess(out.index("litellm  stopped"), out.index("cliproxyapi_plus  stopped"))
        # nothing of ours is left: checked again by StackRepo's cleanup for every test
        for pid in self.started_pids:
            self.assertFalse(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        events = [json.loads(line) for line in self.cfg.layout.events_log.read_text().splitlines()]
        self.assertIn(("service_restart", "litellm", "ok"),
                      [(e["event"], e["service"], e["result"]) for e in events])
        self.assertNotIn(self.cfg.secret("LITELLM_MASTER_KEY"), self.cfg.layout.events_log.read_text())

    def test_missing_provider_secret_names_the_variable(self):
        text = self.config_path.read_text()
        text = text.replace("  cliproxy: {type: cliproxyapi_plus}\n", "  cliproxy: {type: cliproxyapi_plus}\n"
                            "  paid: {type: openai_compatible, api_base: http://127.0.0.1:9/v1, "
                            "api_key_env: PAID_TEST_KEY}\n")
        text = text.replace("[{provider: cliproxy, model: gpt-5-codex}]",
                            "[{provider: cliproxy, model: gpt-5-codex}, {provider: paid, model: m}]")
        self.config_path.write_text(text)
        self.cfg = self.load()
        code, out, err = self.cli("service", "start", "litellm", env={"PAID_TEST_KEY": None})
        self.assertEqual(code, USAGE, err)
        self.assertIn("secret not set: PAID_TEST_KEY (provider paid)", err)
        self.assertFalse(self.cfg.layout.pid_file("litellm").exists())

    def test_litellm_port_busy(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", self.ports["litellm_port"]))
            sock.listen()
            code, _, err = self.cli("service", "start", "litellm")
        self.assertEqual(code, CONFLICT)
        self.assertIn(f"port {self.ports['litellm_port']} is in use", err)


if __name__ == "__main__":
    unittest.main()
