"""Copilot quota from the Plus forks' `GET /v0/management/copilot-quota`: the reader of its answer (the fork's
`CopilotUsageResponse`, docs/standins.md), one call per account, and `auth status --quota` / `models --quota`
against the stand-in of the Plus fork line answering realistic and broken values.
"""
from __future__ import annotations

import json
import unittest

from llm_router import stack
from llm_router.auth.status import copilot_quotas, quota_summary, read_copilot_quota
from llm_router.errors import UNAVAILABLE, RouterError
from tests.support import StackRepo

CP = "cliproxyapi_plus"
FORK = "7.1.68-6"  # the stand-in's plus-fork-7 build, the line with /copilot-quota
DETAIL_KEYS = ["entitlement", "overage_count", "overage_permitted", "percent_remaining", "quota_id",
               "quota_remaining", "remaining", "unlimited"]
USAGE_KEYS = ["access_type_sku", "analytics_tracking_id", "assigned_date", "can_signup_for_limited", "chat_enabled",
              "copilot_plan", "organization_login_list", "organization_list", "quota_reset_date", "quota_snapshots"]


def snapshot(quota_id: str, entitlement=0, remaining=0, unlimited=False, percent=None, **extra) -> dict:
    if percent is None:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (entitlement, remaining))
        percent = 100.0 if unlimited is True else (100.0 * remaining / entitlement if numbers and entitlement else 0)
    return {"entitlement": entitlement, "overage_count": 0, "overage_permitted": False,
            "percent_remaining": percent, "quota_id": quota_id, "quota_remaining": remaining,
            "remaining": remaining, "unlimited": unlimited, **extra}


def github_user(premium: dict, chat: dict | None = None, completions: dict | None = None,
                reset: str = "2026-12-01", plan: str = "individual", sku: str = "copilot_pro") -> dict:
    """What GitHub's `/copilot_internal/user` answers (more fields than the fork's struct keeps)."""
    return {"access_type_sku": sku, "copilot_plan": plan, "chat_enabled": True, "quota_reset_date": reset,
            "quota_reset_date_utc": reset + "T00:00:00.000Z", "endpoints": {"api": "https://api.example"},
            "quota_snapshots": {"chat": chat or snapshot("chat", unlimited=True),
                                "completions": completions or snapshot("completions", unlimited=True),
                                "premium_interactions": premium}}


PRO = github_user(snapshot("premium_interactions", entitlement=300, remaining=124, percent=41.33))
FREE_MARSHALLED = {  # a free plan: GitHub sends no quota_snapshots, the fork's struct answers zero values
    **dict.fromkeys(USAGE_KEYS[:9], ""), "can_signup_for_limited": False, "chat_enabled": True,
    "organization_login_list": None, "organization_list": None, "copilot_plan": "individual",
    "quota_snapshots": {k: dict(snapshot("", 0, 0), percent_remaining=0) for k in
                        ("chat", "completions", "premium_interactions")}}


class ReadAnswerTest(unittest.TestCase):
    """`read_copilot_quota`: the real shape into remaining / entitlement / reset; anything else unknown + a note."""

    def test_a_pro_plan(self):
        entry = read_copilot_quota(PRO)
        self.assertEqual((entry["remaining"], entry["entitlement"], entry["percent_remaining"], entry["resets_at"]),
                         (124, 300, 41.33, "2026-12-01"))
        self.assertEqual((entry["plan"], entry["sku"], entry["notes"]), ("individual", "copilot_pro", []))
        self.assertEqual((entry["chat"], entry["completions"]), ({"state": "unlimited"}, {"state": "unlimited"}))
        self.assertEqual(quota_summary(entry), "premium 124/300 left (41 %), resets 2026-12-01")

    def test_exhausted_unlimited_and_limited_chat(self):
        empty = read_copilot_quota(github_user(snapshot("premium_interactions", 300, 0, overage_count=7)))
        self.assertEqual((empty["remaining"], empty["premium_interactions"]["overage_count"]), (0, 7))
        self.assertTrue(quota_summary(empty).startswith("premium 0/300 left (0 %)"))
        unlimited = read_copilot_quota(github_user(snapshot("premium_interactions", unlimited=True)))
        self.assertEqual(unlimited["remaining"], "unlimited")
        self.assertEqual(quota_summary(unlimited), "premium unlimited, resets 2026-12-01")
        limited = read_copilot_quota(github_user(snapshot("premium_interactions", 50, 10),
                                                 chat=snapshot("chat", 500, 410), completions=snapshot(
                                                     "completions", 4000, 4000)))
        self.assertEqual(quota_summary(limited), "premium 10/50 left (20 %), chat 410/500 left (82 %), "
                                                 "completions 4000/4000 left (100 %), resets 2026-12-01")

    def test_go_zero_values_are_unknown_not_zero_left(self):
        entry = read_copilot_quota(FREE_MARSHALLED)
        self.assertEqual((entry["remaining"], entry["entitlement"], entry["resets_at"]), ("unknown", None, "unknown"))
        self.assertEqual(quota_summary(entry), "unknown")
        self.assertEqual(entry["notes"], ["GitHub reported no premium request quota for this account"])

    def test_malformed_answers_are_unknown_with_a_note(self):
        cases = [
            (None, "not a JSON object"), ("<html>", "not a JSON object"), ([PRO], "not a JSON object"),
            ({}, "no quota_snapshots"), ({"quota_snapshots": [1, 2]}, "quota_snapshots is not an object"),
            ({"quota_snapshots": {"premium_interactions": "lots"}}, "premium_interactions: not an object"),
            (github_user(snapshot("premium_interactions", 300, "lots")), "remaining is not a number"),
            (github_user(snapshot("premium_interactions", 300, True)), "remaining is not a number"),
            (github_user(snapshot("premium_interactions", float("nan"), 3)), "entitlement is not a number"),
            (github_user({"quota_id": "premium_interactions"}), "no entitlement or remaining figure"),
            (github_user(snapshot("premium_interactions", unlimited="yes")), "unlimited is not true or false"),
        ]
        for payload, note in cases:
            with self.subTest(payload=str(payload)[:60]):
                entry = read_copilot_quota(payload)
                self.assertEqual(entry["remaining"], "unknown")
                self.assertTrue(any(note in n for n in entry["notes"]), entry["notes"])
                self.assertIsInstance(quota_summary(entry), str)
        bad_date = read_copilot_quota({**PRO, "quota_reset_date": "next\nmonth"})
        self.assertEqual((bad_date["remaining"], bad_date["resets_at"]), (124, "unknown"))
        self.assertIn("quota_reset_date is not a date", bad_date["notes"])
        self.assertEqual(read_copilot_quota({**PRO, "copilot_plan": "x\x1b[31m"})["plan"], "x?[31m")


class FakeManagement:
    def __init__(self, files, answers):
        self.files, self.answers, self.asked = files, answers, []

    def get(self, path):
        assert path == "auth-files"
        return {"files": self.files}

    def request(self, method, path, params=None, allow=()):
        self.asked.append(params["auth_index"])
        answer = self.answers[params["auth_index"]]
        if isinstance(answer, Exception):
            raise answer
        return answer


class PerAccountTest(unittest.TestCase):
    def test_one_call_per_copilot_account_and_each_failure_stays_with_its_account(self):
        files = [{"name": "codex-a.json", "provider": "codex", "auth_index": "c0"},
                 {"name": "github-copilot-ok.json", "provider": "github-copilot", "auth_index": "i1",
                  "account": "ok"},
                 {"name": "github-copilot-401.json", "type": "github-copilot", "auth_index": "i2"},
                 {"name": "github-copilot-none.json", "provider": "github-copilot", "auth_index": "i3"},
                 {"name": "github-copilot-down.json", "provider": "copilot", "auth_index": "i4"},
                 {"name": "github-copilot-noindex.json", "provider": "github"}, "junk"]
        fake = FakeManagement(files, {
            "i1": (200, PRO),
            "i2": (502, {"error": "github api request failed", "status_code": 401, "body": "Bad credentials"}),
            "i3": (400, {"error": "copilot token not found"}),
            "i4": RouterError("CLIProxyAPIPlus is not reachable", exit_code=UNAVAILABLE)})
        entries = {e["name"]: e for e in copilot_quotas(fake)}
        self.assertEqual(fake.asked, ["i1", "i2", "i3", "i4"])
        self.assertNotIn("codex-a.json", entries)
        ok = entries["github-copilot-ok.json"]
        self.assertEqual((ok["remaining"], ok["account"]), (124, "ok"))
        expected = {"github-copilot-401.json": "GitHub answered HTTP 401 (github api request failed)",
                    "github-copilot-none.json": "/copilot-quota answered HTTP 400: copilot token not found",
                    "github-copilot-down.json": "CLIProxyAPIPlus is not reachable",
                    "github-copilot-noindex.json": "/auth-files gives no auth_index for it"}
        for name, note in expected.items():
            self.assertEqual((entries[name]["remaining"], entries[name]["notes"]), ("unknown", [note]))
        self.assertNotIn("Bad credentials", json.dumps(entries))  # GitHub's body is never passed on


class StandinQuotaTest(StackRepo):
    """The stand-in of the Plus fork line answers the fork's shape; `auth status --quota` and `models --quota`
    read it per account."""

    def setUp(self):
        super().setUp()
        from llm_router.standin.cliproxy import install_fake_binary

        install_fake_binary(self.cfg.layout.cliproxy_binary, version=FORK)
        self.write_config(self.config_path.read_text().replace(
            "deployments: [{provider: cliproxy, model: gpt-5-codex}]",
            "deployments: [{provider: cliproxy, model: claude-sonnet-4.5}, "
            "{provider: cliproxy, model: gpt-5.1-codex-max}]"))
        self.cfg = self.load()

    def write_account(self, login: str, **standin) -> str:
        from llm_router.standin.cliproxy import copilot_auth_record, write_login_file

        path = write_login_file(self.cfg.layout.auths_dir, f"github-copilot-{login}.json",
                                copilot_auth_record(login) | standin)
        path.chmod(0o600)
        return path.name

    def start(self) -> None:
        self.assertEqual(stack.start(self.cfg, [CP])[0].result, "started")
        self.remember_pids()

    def test_the_route_answers_the_forks_struct_for_one_account(self):
        from llm_router.cliproxy import Management

        self.write_account("a-default")  # the first Copilot account: a Pro plan with 300 premium requests left
        self.write_account("b-pro", standin_github_user=PRO)
        self.start()
        management = Management(self.cfg)
        indexes = {f["name"]: f["auth_index"] for f in management.get("auth-files")["files"]}
        status, answer = management.request("GET", "/copilot-quota",
                                             params={"auth_index": indexes["github-copilot-b-pro.json"]})
        self.assertEqual(status, 200)
        self.assertEqual(list(answer), USAGE_KEYS)  # quota_reset_date_utc and endpoints are dropped
        self.assertEqual(list(answer["quota_snapshots"]), ["chat", "completions", "premium_interactions"])
        premium = answer["quota_snapshots"]["premium_interactions"]
        self.assertEqual(list(premium), DETAIL_KEYS)
        self.assertEqual((premium["remaining"], premium["entitlement"], premium["percent_remaining"]),
                         (124, 300, 41.33))
        self.assertEqual((answer["analytics_tracking_id"], answer["organization_list"]), ("", None))  # zero values
        _, fallback = management.request("GET", "/copilot-quota")  # no auth_index: the first Copilot account
        self.assertEqual(fallback["quota_snapshots"]["premium_interactions"]["remaining"], 300)

    def test_the_route_refuses_like_the_fork(self):
        from llm_router.cliproxy import Management

        self.start()
        status, answer = Management(self.cfg).request("GET", "/copilot-quota", allow=(400,))
        self.assertEqual((status, answer), (400, {"error": "no github copilot credential found"}))

    def test_auth_status_and_models_read_each_account(self):
        self.write_account("pro", standin_github_user=PRO)
        self.write_account("revoked", standin_github_status=401, standin_github_user={"message": "Bad credentials"})
        self.write_account("broken", standin_github_user=github_user(snapshot("premium_interactions", 300, "lots")))
        self.write_account("business", standin_github_user=github_user(
            snapshot("premium_interactions", unlimited=True), plan="business", sku="copilot_business"))
        self.start()
        code, out, err = self.cli("auth", "status", "--quota", "--json")
        self.assertEqual(code, 0, out + err)
        quota = json.loads(out)["data"]["quota"]
        self.assertTrue(quota["available"])
        self.assertEqual((quota["line"], quota["copilot_quota"]), ("plus-fork-7", True))
        entries = {e["name"]: e for e in quota["accounts"]}
        pro = entries["github-copilot-pro.json"]
        self.assertEqual((pro["remaining"], pro["entitlement"], pro["resets_at"], pro["notes"]),
                         (124, 300, "2026-12-01", []))
        self.assertEqual(entries["github-copilot-business.json"]["remaining"], "unlimited")
        self.assertEqual(entries["github-copilot-revoked.json"]["notes"],
                         ["GitHub answered HTTP 401 (github api request failed)"])
        self.assertEqual(entries["github-copilot-broken.json"]["notes"],
                         ["/copilot-quota answered HTTP 500: failed to parse response"])
        code, out, err = self.cli("auth", "status", "--quota")
        self.assertEqual(code, 0, out + err)
        lines = {name: line for line in out.splitlines() for name in line.split() if name.endswith(".json")}
        self.assertIn("premium 124/300 left (41 %), resets 2026-12-01", lines["github-copilot-pro.json"])
        self.assertIn("premium unlimited", lines["github-copilot-business.json"])
        self.assertIn("quota github-copilot-revoked.json: GitHub answered HTTP 401", out)
        self.assertNotIn("Bad credentials", out)
        self.assertNotIn("Traceback", out + err)

        code, out, err = self.cli("models", "--quota", "--json")
        self.assertEqual(code, 0, out + err)
        deployments = {d["id"]: d for g in json.loads(out)["data"]["models"] for d in g["deployments"]}
        copilot = deployments["coder/cliproxy/claude-sonnet-4.5"]["quota"]
        self.assertEqual((copilot["remaining"], copilot["source"]), ("unlimited", "copilot-quota"))
        self.assertEqual(len(copilot["cliproxy"]["accounts"]), 4)
        codex = deployments["coder/cliproxy/gpt-5.1-codex-max"]["quota"]  # no Copilot account serves it
        self.assertEqual((codex["remaining"], codex["cliproxy"]["accounts"]), ("unknown", []))
        code, out, err = self.cli("models", "--quota")
        self.assertEqual(code, 0, out + err)
        self.assertIn("quota pro: premium 124/300 left (41 %), resets 2026-12-01", out)
        self.assertIn("quota revoked: unknown (GitHub answered HTTP 401 (github api request failed))", out)


if __name__ == "__main__":
    unittest.main()
