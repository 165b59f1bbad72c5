"""Policy profiles: discovery, rendering rules, validation of bad templates, activation, rollback, front ends."""
from __future__ import annotations

import json
import unittest
from unittest import mock

import yaml

from llm_router import config as config_mod
from llm_router import events, fsutil, profiles, switch
from llm_router.errors import RouterError
from llm_router.litellm import service as litellm_service
from tests.support import TempRepo, inv, patched_env, snapshot

CONFIG = """\
config_version: 2
default_profile: balanced
services:
  cliproxyapi_plus: {host: 127.0.0.1, port: 8417}
  litellm: {host: 127.0.0.1, port: 4100}
providers:
  cliproxy: {type: cliproxyapi_plus}
  custom: {type: openai_compatible, api_base: https://api.example.com/v1, api_key_env: CUSTOM_API_KEY, tier: paid}
  team: {type: openai_compatible, api_base: http://10.0.0.5:9000/v1, api_key_env: TEAM_KEY, tier: subscription}
models:
  - name: coder
    deployments: [{provider: custom, model: gpt-4.1}, {provider: cliproxy, model: gpt-5-codex},
                  {provider: team, model: qwen-coder}]
  - name: chat
    deployments: [{provider: cliproxy, model: gpt-5}]
"""
SECRET = "sk-live-do-not-leak-4242"

# A user profile that extends the shipped base and writes its own router_settings (lines 1-7 are fixed).
USER_PROFILE = """\
{{# {name}: a test profile #}}
{{% extends "base.yaml.j2" %}}
{{% set paid_last = false %}}
{{% set cooldown_time = 30 %}}
{{% set timeout = 60 %}}
{{% set stream_timeout = 30 %}}
{{% block router_settings %}}
router_settings:
  num_retries: 0
{router_settings}{{% endblock %}}
"""

# A user profile that does not extend the base: the whole config is its own (line numbers matter below).
STANDALONE = """\
# standalone: written without the base
model_list:
{% for group in models %}
  - model_name: {{ group.name }}
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:1/v1", api_key: os.environ/ROUTER_UPSTREAM_API_KEY, order: 1, cooldown_time: 5}
    model_info: {id: "{{ group.name }}/cliproxy/x"}
{% endfor %}
router_settings: {num_retries: 0}
litellm_settings: {drop_params: true}
general_settings: {master_key: os.environ/LITELLM_MASTER_KEY, disable_spend_logs: true, disable_model_info_refresh: true}
"""


class ProfileRepo(TempRepo):
    def setUp(self) -> None:
        super().setUp()
        self.write_config(CONFIG)
        self.env = patched_env({"CUSTOM_API_KEY": SECRET, "TEAM_KEY": "team-secret-value-77"})
        self.env.__enter__()
        self.addCleanup(self.env.__exit__, None, None, None)

    @property
    def cfg(self) -> config_mod.RouterConfig:
        return config_mod.load(self.config_path)

    def user_profile(self, name: str, text: str) -> str:
        folder = self.root / "config" / "profiles"
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.yaml.j2"
        path.write_text(text)
        return str(path)

    def rendered(self, name: str) -> dict:
        return yaml.safe_load(profiles.render(self.cfg, name))

    def deployments(self, name: str, group: str) -> list[dict]:
        entries = [e for e in self.rendered(name)["model_list"] if e["model_name"] == group]
        return sorted(entries, key=lambda e: e["litellm_params"]["order"])


class DiscoveryTest(ProfileRepo):
    def test_shipped_profiles_with_descriptions(self):
        found = {p.name: p for p in profiles.available(self.cfg)}
        self.assertEqual(sorted(found), ["balanced", "cost", "reliability"])
        for p in found.values():
            self.assertEqual(p.source, "shipped")
            self.assertTrue(p.description.startswith(p.name), p.description)
            self.assertEqual(p.path.name, f"{p.name}.yaml.j2")

    def test_user_profiles_come_first_and_may_shadow_a_shipped_one(self):
        self.user_profile("mine", USER_PROFILE.format(name="mine", router_settings=""))
        self.user_profile("cost", USER_PROFILE.format(name="cost", router_settings=""))
        self.user_profile("base", "{# not a profile #}\n")
        found = {p.name: p for p in profiles.available(self.cfg)}
        self.assertEqual(sorted(found), ["balanced", "cost", "mine", "reliability"])
        self.assertEqual((found["mine"].source, found["cost"].source), ("user", "user"))
        self.assertEqual(found["mine"].description, "mine: a test profile")
        self.assertIn("cooldown_time: 30", profiles.render(self.cfg, "cost"))

    def test_yaml_comment_as_description_and_no_comment(self):
        self.user_profile("standalone", STANDALONE)
        self.user_profile("bare", STANDALONE.split("\n", 1)[1])
        found = {p.name: p for p in profiles.available(self.cfg)}
        self.assertEqual(found["standalone"].description, "standalone: written without the base")
        self.assertEqual(found["bare"].description, "")


class RenderingRulesTest(ProfileRepo):
    def test_every_shipped_profile_follows_the_rules(self):
        for name in ("balanced", "reliability", "cost"):
            with self.subTest(name):
                data = self.rendered(name)
                self.assertEqual(sorted({e["model_name"] for e in data["model_list"]}), ["chat", "coder"])
                by_id = {e["model_info"]["id"]: e["litellm_params"] for e in data["model_list"]}
                self.assertEqual(sorted(by_id), ["chat/cliproxy/gpt-5", "coder/cliproxy/gpt-5-codex",
                                                 "coder/custom/gpt-4.1", "coder/team/qwen-coder"])
                cliproxy = by_id["coder/cliproxy/gpt-5-codex"]
                self.assertEqual(cliproxy["model"], "openai/gpt-5-codex")
                self.assertEqual(cliproxy["api_base"], "http://127.0.0.1:8417/v1")
                self.assertEqual(cliproxy["api_key"], "os.environ/ROUTER_UPSTREAM_API_KEY")
                self.assertEqual(by_id["coder/custom/gpt-4.1"]["api_key"], "os.environ/CUSTOM_API_KEY")
                self.assertEqual(by_id["coder/team/qwen-coder"]["api_base"], "http://10.0.0.5:9000/v1")
                for params in by_id.values():
                    self.assertGreater(params["cooldown_time"], 0)
                self.assertEqual(data["general_settings"], {"master_key": "os.environ/LITELLM_MASTER_KEY",
                                                            "custom_auth": "llm_router.litellm.hooks.custom_auth",
                                                            "disable_spend_logs": True,
                                                            "disable_model_info_refresh": True})
                self.assertIs(data["litellm_settings"]["drop_params"], True)
                self.assertEqual(data["router_settings"]["fallbacks"], [])

    def test_no_secret_value_in_the_context_or_the_rendered_file(self):
        self.assertNotIn(SECRET, json.dumps(profiles.context(self.cfg, "balanced")))
        for name in ("balanced", "reliability", "cost"):
            self.assertNotIn(SECRET, profiles.render(self.cfg, name))

    def test_balanced_and_reliability_keep_the_configured_order(self):
        for name in ("balanced", "reliability"):
            ids = [e["model_info"]["id"] for e in self.deployments(name, "coder")]
            self.assertEqual(ids, ["coder/custom/gpt-4.1", "coder/cliproxy/gpt-5-codex", "coder/team/qwen-coder"])

    def test_cost_puts_paid_deployments_last(self):
        ids = [e["model_info"]["id"] for e in self.deployments("cost", "coder")]
        self.assertEqual(ids, ["coder/cliproxy/gpt-5-codex", "coder/team/qwen-coder", "coder/custom/gpt-4.1"])

    def test_the_failover_order_is_written_out(self):
        text = profiles.render(self.cfg, "cost")
        self.assertIn("# coder: coder/cliproxy/gpt-5-codex (subscription) -> coder/team/qwen-coder (subscription)"
                      " -> coder/custom/gpt-4.1 (paid)", text)
        self.assertEqual([e["litellm_params"]["order"] for e in self.deployments("cost", "coder")], [1, 2, 3])

    def test_policies(self):
        balanced = self.rendered("balanced")["router_settings"]
        self.assertEqual((balanced["num_retries"], balanced["allowed_fails"], balanced["cooldown_time"]), (1, 0, 60))
        self.assertEqual(balanced["retry_policy"]["RateLimitErrorRetries"], 0)
        self.assertEqual(balanced["retry_policy"]["InternalServerErrorRetries"], 1)
        self.assertEqual(balanced["retry_policy"]["TimeoutErrorRetries"], 1)
        reliability = self.rendered("reliability")["router_settings"]
        self.assertIn(reliability["num_retries"], (2, 3))
        self.assertIn(reliability["retry_policy"]["InternalServerErrorRetries"], (2, 3))
        self.assertGreaterEqual(reliability["cooldown_time"], 120)
        cost = self.rendered("cost")["router_settings"]
        self.assertEqual(cost["num_retries"], 0)
        self.assertNotIn("retry_policy", cost)
        self.assertLess(cost["cooldown_time"], balanced["cooldown_time"])
        timeouts = {n: self.deployments(n, "chat")[0]["litellm_params"]["timeout"] for n in ("balanced", "reliability")}
        self.assertGreater(timeouts["reliability"], timeouts["balanced"])

    def test_rate_limits_are_enforced_only_when_a_deployment_sets_one(self):
        for name in ("balanced", "cost", "reliability"):
            checks = yaml.safe_load(profiles.render(self.cfg, name))["router_settings"]["optional_pre_call_checks"]
            self.assertEqual(checks, ["responses_api_deployment_check"], name)
        self.write_config(CONFIG.replace("{provider: cliproxy, model: gpt-5}", "{provider: cliproxy, model: gpt-5, rpm: 30}"))
        for name in ("balanced", "cost", "reliability"):
            data = yaml.safe_load(profiles.render(self.cfg, name))
            self.assertEqual(data["router_settings"]["optional_pre_call_checks"],
                             ["responses_api_deployment_check", "enforce_model_rate_limits"], name)
            limited = [d for d in data["model_list"] if d["model_name"] == "chat"]
            self.assertEqual([d["litellm_params"].get("rpm") for d in limited], [30], name)

    def test_rendering_is_deterministic(self):
        self.assertEqual(profiles.render(self.cfg, "balanced"), profiles.render(self.cfg, "balanced"))

    def test_diff(self):
        code, out, err = self.cli("profile", "diff", "balanced", "cost")
        self.assertEqual(code, 0, err)
        self.assertIn("--- balanced.yaml", out)
        self.assertIn("-  num_retries: 1", out)
        self.assertIn("+  num_retries: 0", out)
        code, out, _ = self.cli("profile", "diff", "cost", "cost")
        self.assertEqual((code, out.strip()), (0, "profiles cost and cost render the same config"))


BAD_TEMPLATES = [  # (name, template, expected message parts; "{path}" is the template file)
    ("syntax error", USER_PROFILE.format(name="x", router_settings="").replace(
        "{% set timeout = 60 %}", "{% set timeout = 60 %}{% endif %}"),
     ["{path}:5: template syntax error: Encountered unknown tag 'endif'"]),
    ("undefined variable in the profile", USER_PROFILE.format(name="x", router_settings="  x: {{ nope }}\n"),
     ["{path}:10: undefined variable: 'nope' is undefined"]),
    ("undefined policy variable", USER_PROFILE.format(name="x", router_settings="").replace(
        "{% set cooldown_time = 30 %}\n", ""), ["base.yaml.j2:", "undefined variable: 'cooldown_time' is undefined"]),
    ("unknown template", STANDALONE.replace("# standalone", '{% extends "nope.yaml.j2" %}'),
     ["{path}: template 'nope.yaml.j2' not found"]),
    ("fallback to a missing group", USER_PROFILE.format(name="x", router_settings="  fallbacks: [{coder: [nowhere]}]\n"),
     ["{path}:10: fallback target 'nowhere' is not a model group"]),
    ("group falls back to itself", USER_PROFILE.format(name="x", router_settings="  fallbacks:\n  - coder: [chat, coder]\n"),
     ["{path}:11: model group 'coder' falls back to itself"]),
    ("fallbacks from an unknown group", USER_PROFILE.format(name="x", router_settings="  fallbacks: [{ghost: [chat]}]\n"),
     ["{path}:10: fallbacks for 'ghost', which is not a model group"]),
    ("context window fallback missing", USER_PROFILE.format(
        name="x", router_settings="  context_window_fallbacks: [{chat: [big]}]\n"),
     ["{path}:10: fallback target 'big' is not a model group"]),
    ("unknown variable", USER_PROFILE.format(name="x", router_settings="  redis_password: os.environ/REDIS_PASSWORD\n"),
     ["{path}:10: os.environ/REDIS_PASSWORD is not a variable llm-router knows", "LITELLM_MASTER_KEY"]),
    ("unknown provider", STANDALONE.replace('/cliproxy/x"', '/ghost/x"'),
     ["{path}:6: deployment 'coder/ghost/x' names unknown provider 'ghost'"]),
    ("group clients never send", STANDALONE.replace("model_name: {{ group.name }}", "model_name: other"),
     ["{path}:4: model group 'other' is not a models[].name", "model group 'coder' (models[].name) has no deployment"]),
    ("deployment without order", STANDALONE.replace("order: 1, ", ""),
     ["{path}:5: litellm_params.order must be a positive number"]),
    ("literal api key", STANDALONE.replace("api_key: os.environ/ROUTER_UPSTREAM_API_KEY", "api_key: sk-abc"),
     ["{path}:5: api_key must be an os.environ/NAME reference"]),
    ("a secret's value", STANDALONE.replace("os.environ/ROUTER_UPSTREAM_API_KEY", SECRET),
     ["{path}:5: the rendered config contains the value of a secret"]),
    ("no master key", STANDALONE.replace("master_key: os.environ/LITELLM_MASTER_KEY, ", ""),
     ["{path}:10: general_settings.master_key must be \"os.environ/LITELLM_MASTER_KEY\""]),
    ("invalid YAML", STANDALONE.replace("router_settings: {num_retries: 0}", "router_settings: {num_retries: 0"),
     ["{path}:9: not valid YAML"]),
    ("not a mapping", "- a\n- b\n", ["{path}:1: the config must be a mapping"]),
]


class BadInputTest(ProfileRepo):
    """Every bad input: its message, its exit code, and nothing activated or written."""

    def setUp(self) -> None:
        super().setUp()
        code, _, err = self.cli("profile", "set", "balanced")
        self.assertEqual(code, 0, err)

    def assert_rejected(self, argv: list[str], code: int, parts: list[str]) -> str:
        before = snapshot(self.root)
        got, out, err = self.cli(*argv)
        self.assertEqual(got, code, err)
        for part in parts:
            self.assertIn(part, err)
        self.assertNotIn("Traceback", err)
        self.assertNotIn(SECRET, err + out)
        self.assertEqual(snapshot(self.root), before, "something was written")
        self.assertEqual(profiles.active(self.cfg)["name"], "balanced")
        return err

    def test_bad_templates(self):
        self.assertGreaterEqual(len(BAD_TEMPLATES), 15)
        for case, template, parts in BAD_TEMPLATES:
            with self.subTest(case):
                path = self.user_profile("broken", template)
                parts = [p.format(path=path) for p in parts]
                self.assert_rejected(["profile", "set", "broken"], 2, parts)
                self.assert_rejected(["profile", "show", "broken"], 2, parts)

    def test_every_problem_is_listed(self):
        path = self.user_profile("broken", STANDALONE.replace("order: 1, ", "").replace('/cliproxy/x"', '/ghost/x"'))
        err = self.assert_rejected(["profile", "set", "broken"], 2, ["(3 problems)"])
        self.assertEqual(err.count(f"{path}:5: litellm_params.order must be a positive number"), 1)
        self.assertIn(f"{path}:6: deployment 'coder/ghost/x'", err)
        self.assertIn(f"{path}:6: deployment 'chat/ghost/x'", err)

    def test_unknown_profile_lists_the_available_ones(self):
        self.assert_rejected(["profile", "set", "balancd"], 4, [
            "unknown profile 'balancd' (available: balanced, cost, reliability); did you mean 'balanced'?"])
        self.assert_rejected(["profile", "show", "nope"], 4, ["unknown profile 'nope'"])
        self.assert_rejected(["profile", "diff", "cost", "nope"], 4, ["unknown profile 'nope'"])

    def test_runtime_folder_that_cannot_be_created(self):
        (self.root / "blocker").write_text("a file where the runtime folder should be\n")
        self.write_config(CONFIG + "runtime_dir: blocker/runtime\n")
        before = snapshot(self.root)
        code, _, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 2, err)
        self.assertIn("cannot create folder", err)
        self.assertEqual(snapshot(self.root), before)

    def test_failed_write_puts_every_file_back(self):
        layout = self.cfg.layout
        real_write = fsutil.atomic_write

        def fail_on_info(path, data, mode=0o644):
            if path == layout.active_profile_file:
                raise RouterError(f"cannot write {path}: No space left on device")
            return real_write(path, data, mode)

        before = snapshot(self.root)
        with mock.patch.object(profiles, "atomic_write", side_effect=fail_on_info):
            code, _, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 2, err)
        self.assertIn("No space left on device", err)
        self.assertEqual(snapshot(self.root), before)
        self.assertFalse(layout.profile_config("cost").exists())


class ActivationTest(ProfileRepo):
    def test_set_writes_the_profile_the_active_config_and_its_info(self):
        code, out, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 0, err)
        self.assertIn("profile cost active", out)
        self.assertIn("LiteLLM is not running", out)
        layout = self.cfg.layout
        text = profiles.render(self.cfg, "cost")
        self.assertEqual(layout.profile_config("cost").read_text(), text)
        self.assertEqual(layout.active_config.read_text(), text)
        info = json.loads(layout.active_profile_file.read_text())
        self.assertEqual(info["name"], "cost")
        self.assertEqual(info["sha256"], profiles._render(self.cfg, profiles.find(self.cfg, "cost")).sha256)
        self.assertTrue(info["time"])
        switches = events.for_config(self.cfg).read(event="profile_switch")
        self.assertEqual([(e["profile"], e["result"]) for e in switches], [("cost", "ok")])
        self.assertEqual(switches[0]["detail"]["applied"], "not running")

    def test_switching_reports_the_previous_profile(self):
        self.cli("profile", "set", "cost")
        info = switch.set_profile(self.cfg, "reliability")
        self.assertEqual((info.name, info.previous), ("reliability", "cost"))
        self.assertTrue(self.cfg.layout.profile_config("cost").exists())
        self.assertEqual(self.cfg.layout.active_config.read_text(), profiles.render(self.cfg, "reliability"))

    def test_ensure_active_uses_default_profile_once(self):
        self.write_config(CONFIG.replace("default_profile: balanced", "default_profile: cost"))
        self.assertIsNone(profiles.active(self.cfg))
        info = profiles.ensure_active(self.cfg)
        self.assertEqual(info["name"], "cost")
        self.assertEqual(profiles.ensure_active(self.cfg), info)
        self.assertEqual(len(events.for_config(self.cfg).read(event="profile_switch")), 1)

    def test_ensure_active_rewrites_a_missing_active_config(self):
        switch.set_profile(self.cfg, "reliability")
        self.cfg.layout.active_config.unlink()
        self.assertEqual(profiles.ensure_active(self.cfg)["name"], "reliability")
        self.assertTrue(self.cfg.layout.active_config.is_file())

    def test_list_marks_the_active_or_default_profile(self):
        code, out, _ = self.cli("profile", "list")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"(?m)^balanced\s+default\s+shipped\s+\S+balanced\.yaml\.j2\s+balanced \(default\)")
        self.cli("profile", "set", "cost")
        code, out, _ = self.cli("--json", "profile", "list")
        data = json.loads(out)["data"]
        self.assertEqual(data["active"], "cost")
        self.assertEqual([p["name"] for p in data["profiles"] if p["active"]], ["cost"])
        code, out, _ = self.cli("profile", "list")
        self.assertRegex(out, r"(?m)^cost\s+\*\s+shipped")

    def test_show_defaults_to_the_active_profile(self):
        code, out, _ = self.cli("profile", "show")
        self.assertEqual((code, out), (0, profiles.render(self.cfg, "balanced")))
        self.cli("profile", "set", "cost")
        code, out, _ = self.cli("profile", "show")
        self.assertIn('from the policy profile "cost"', out)


class ApplyTest(ProfileRepo):
    """A running LiteLLM is switched to the new profile under the lock (the supervisor's mechanics are tested with
    real processes in test_integration_switch.py); when that fails the previous profile comes back."""

    def setUp(self) -> None:
        super().setUp()
        switch.set_profile(self.cfg, "balanced")
        self.balanced = {p: p.read_bytes() for p in (self.cfg.layout.active_config,
                                                     self.cfg.layout.active_profile_file)}

    def apply_with(self, outcome):
        lock = self.cfg.layout.lock()
        held = []

        def apply(cfg, restore):
            held.append((lock._fd is not None, json.loads(cfg.layout.active_profile_file.read_text())["name"]))
            if isinstance(outcome, Exception):
                restore()
                raise outcome
            return outcome

        patcher = mock.patch.object(litellm_service, "serve_active", side_effect=apply)
        patcher.start()
        self.addCleanup(patcher.stop)
        return held

    def test_running_litellm_is_switched_under_the_lock(self):
        held = self.apply_with({"how": "worker swap", "worker_ready_s": 0.3, "switch_s": 0.6, "notes": []})
        code, out, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 0, err)
        self.assertIn("LiteLLM serves it now (new worker ready in 0.3 s", out)
        self.assertEqual(held, [(True, "cost")])
        detail = events.for_config(self.cfg).read(event="profile_switch")[-1]["detail"]
        self.assertEqual((detail["applied"], detail["switch_s"]), ("worker swap", 0.6))

    def test_restart_mode_and_notes_are_reported(self):
        self.apply_with({"how": "restart", "pid": 1, "notes": ["secrets changed since LiteLLM started: run x"]})
        code, out, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 0, err)
        self.assertIn("LiteLLM restarted on it", out)
        self.assertIn("note: secrets changed", out)

    def test_failure_restores_the_previous_profile(self):
        held = self.apply_with(RouterError("litellm was not ready within 90 s; the previous config was put back "
                                           "and is served", exit_code=6))
        code, _, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 6)
        self.assertIn("profile 'cost' was not applied (the previous profile 'balanced' is active again): "
                      "litellm was not ready within 90 s", err)
        self.assertEqual(held, [(True, "cost")])
        self.assertEqual({p: p.read_bytes() for p in self.balanced}, self.balanced)
        last = events.for_config(self.cfg).read(event="profile_switch")[-1]
        self.assertEqual((last["profile"], last["result"], last["detail"]["restored"]), ("cost", "rolled_back",
                                                                                         "balanced"))

    def test_nothing_to_restore(self):
        for path in self.balanced:
            path.unlink()
        self.apply_with(RouterError("not ready", exit_code=6))
        with self.assertRaises(RouterError) as caught:
            switch.set_profile(self.cfg, "cost")
        self.assertIn("no profile was active before", caught.exception.message)
        self.assertIsNone(profiles.active(self.cfg))
        self.assertFalse(self.cfg.layout.active_config.exists())


class InvokeTest(ProfileRepo):
    def test_tasks_are_listed(self):
        code, out, _ = inv("--list")
        self.assertEqual(code, 0)
        for name in ("profile.list", "profile.show", "profile.diff", "profile.set", "bench.failover"):
            self.assertIn(name, out)

    def test_set_and_list_through_invoke(self):
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv("profile.set", "--name", "cost")
            self.assertEqual(code, 0, err)
            code, out, err = inv("profile.list", "--json")
            self.assertEqual(json.loads(out)["data"]["active"], "cost")
            code, out, err = inv("profile.set", "--name", "nope")
        self.assertEqual(code, 4)
        self.assertIn("unknown profile 'nope'", err)


if __name__ == "__main__":
    unittest.main()
