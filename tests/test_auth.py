"""Codex and Copilot logins, the Codex CLI import and `auth status`.

Logins run against the CLIProxyAPIPlus stand-in installed as the binary: a test thread finishes (or fails) the
pending login through the stand-in's `/_standin/oauth/*` hooks, which write the auth file as the real server
does (mode 0644). Poll-loop details run against a fake management client with a fake clock. Every test token
is a JWT built here.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import threading
import time
import unittest
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import psutil
import yaml

from llm_router import auth, keys, stack
from llm_router.auth import login as login_mod
from llm_router.errors import AUTH, CONFLICT, NOT_FOUND, UNAVAILABLE, USAGE, RouterError
from llm_router.standin.cliproxy import codex_auth_record, write_login_file
from llm_router.standin.process import StandinError, call, complete_oauth, fail_oauth, pending_oauth
from tests.support import StackRepo, TempRepo, patched_env

CP = "cliproxyapi_plus"
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
NOW = int(time.time())
DAY = 86400
TOKEN_KEYS = ("id_token", "access_token", "refresh_token")


def jwt(claims: dict) -> str:
    def enc(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'RS256', 'typ': 'JWT'})}.{enc(claims)}.{enc({'sig': secrets.token_hex(16)})}"


def codex_cli_auth(email: str | None = "dev@example.com", plan: str | None = "plus", exp: int | None = NOW + 10 * DAY,
                   account_id: str = "acct-1234") -> dict:
    """A Codex CLI `~/.codex/auth.json` (ChatGPT login) with tokens built here."""
    auth_claims = {"chatgpt_account_id": account_id, **({"chatgpt_plan_type": plan} if plan else {})}
    common = {"iss": "https://auth.openai.com", "iat": NOW, **({"exp": exp} if exp is not None else {})}
    id_claims = {**common, AUTH_CLAIM: auth_claims, **({"email": email} if email else {})}
    access_claims = {**common, AUTH_CLAIM: auth_claims, **({PROFILE_CLAIM: {"email": email}} if email else {})}
    return {"auth_mode": "chatgpt", "OPENAI_API_KEY": None,
            "tokens": {"id_token": jwt(id_claims), "access_token": jwt(access_claims),
                       "refresh_token": "rt_" + secrets.token_urlsafe(24), "account_id": account_id},
            "last_refresh": "2026-11-20T10:00:00.123456Z"}


def codex_file(folder: Path, email: str, plan: str, exp: int, mode: int = 0o600) -> Path:
    """A proxy-format Codex auth file (as a login or refresh writes it)."""
    data = codex_cli_auth(email, plan, exp)
    tokens = data["tokens"]
    record = {**{k: tokens[k] for k in TOKEN_KEYS}, "account_id": tokens["account_id"],
              "last_refresh": data["last_refresh"], "email": email, "type": "codex",
              "expired": datetime.fromtimestamp(exp, timezone.utc).isoformat()}
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"codex-{email}-{plan}.json"
    path.write_text(json.dumps(record))
    path.chmod(mode)
    return path


class SecretsMixin:
    """Checks that no token or key leaked into what a command printed or logged."""

    def secret_values(self, *extra_sources: dict) -> list[str]:
        values = []
        folder = self.cfg.layout.auths_dir
        for path in folder.glob("*.json") if folder.is_dir() else []:
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(path.read_text())
                values += [data.get(k) for k in TOKEN_KEYS] if isinstance(data, dict) else []
        for source in extra_sources:
            tokens = source.get("tokens") or {}
            values += [tokens.get(k) for k in TOKEN_KEYS] + [source.get("OPENAI_API_KEY")]
        secrets_dir = self.cfg.layout.secrets_dir
        for path in secrets_dir.iterdir() if secrets_dir.is_dir() else []:
            values.append(path.read_text().strip())
        return [v for v in values if isinstance(v, str) and len(v) > 8]

    def assert_no_secrets(self, *texts: str, sources: tuple[dict, ...] = ()) -> None:
        log = self.cfg.layout.events_log
        haystack = "\n".join([*texts, log.read_text() if log.exists() else ""])
        for value in self.secret_values(*sources):
            self.assertNotIn(value, haystack)
            self.assertNotIn(value[:24], haystack)

    def login_events(self) -> list[dict]:
        log = self.cfg.layout.events_log
        lines = log.read_text().splitlines() if log.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == "oauth_login"]

    def auth_names(self, folder: Path | None = None) -> list[str]:
        folder = folder or self.cfg.layout.auths_dir
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- pure helpers

class JwtAndHelpersTest(unittest.TestCase):
    def test_claims_are_decoded_without_verifying(self):
        token = jwt({"email": "a@b.c", "exp": 5})
        self.assertEqual(auth.jwt_claims(token), {"email": "a@b.c", "exp": 5})

    def test_malformed_and_truncated_tokens(self):
        token = jwt({"email": "a@b.c"})
        for bad, why in ((token.rsplit(".", 1)[0], "expected 3 dot-separated parts, found 2"),
                         (token[:30] + "." + token.split(".")[1][:9] + ".x", "not base64url-encoded JSON"),
                         ("a.W10.b", "not a JSON object"), ("", "missing")):
            with self.assertRaises(auth.JWTError) as caught:
                auth.jwt_claims(bad)
            self.assertIn(why, str(caught.exception))
            if bad:
                self.assertNotIn(bad, str(caught.exception))

    def test_display_detection(self):
        self.assertTrue(auth.has_display({}, "darwin"))
        self.assertFalse(auth.has_display({}, "linux"))
        self.assertTrue(auth.has_display({"DISPLAY": ":0"}, "linux"))
        self.assertTrue(auth.has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux"))

    def test_callback_url_state(self):
        url = "http://localhost:1455/auth/callback?code=abc&scope=x&state=0123abcd"
        self.assertEqual(auth.callback_state(url), "0123abcd")
        for bad in ("http://localhost:1455/auth/callback?state=0123abcd", "not a url",
                    "http://localhost:1455/auth/callback?code=abc&state=bad%20state"):
            with self.assertRaises(RouterError) as caught:
                auth.callback_state(bad)
            self.assertEqual(caught.exception.exit_code, USAGE)

    def test_default_source_follows_codex_home(self):
        self.assertEqual(auth.default_source({"CODEX_HOME": "/x/codex"}), Path("/x/codex/auth.json"))
        self.assertEqual(auth.default_source({}), Path.home() / ".codex" / "auth.json")


# --------------------------------------------------------------------------- import-headless

class CodexImportTest(SecretsMixin, TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        self.source = self.root / "codex-home" / "auth.json"
        self.source.parent.mkdir()

    def write_source(self, data) -> dict:
        self.source.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
        return data if isinstance(data, dict) else {}

    def run_import(self, *extra: str, env: dict | None = None):
        return self.cli("auth", "codex", "import-headless", "--source", str(self.source), *extra, env=env)

    def test_import_writes_a_private_proxy_auth_file(self):
        source = self.write_source(codex_cli_auth())
        code, out, err = self.run_import()
        self.assertEqual(code, 0, err)
        path = self.cfg.layout.auths_dir / "codex-dev@example.com-plus.json"
        record = json.loads(path.read_text())
        self.assertEqual(set(record), {"id_token", "access_token", "refresh_token", "account_id", "last_refresh",
                                       "email", "type", "expired"})
        for key in TOKEN_KEYS:
            self.assertEqual(record[key], source["tokens"][key])
        self.assertEqual((record["type"], record["email"], record["account_id"]), ("codex", "dev@example.com",
                                                                                    "acct-1234"))
        self.assertEqual(record["last_refresh"], source["last_refresh"])
        self.assertEqual(datetime.fromisoformat(record["expired"].replace("Z", "+00:00")).timestamp(), NOW + 10 * DAY)
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        self.assertEqual(self.cfg.layout.auths_dir.stat().st_mode & 0o777, 0o700)
        self.assertIn("Imported Codex account: dev@example.com, plan plus, expires", out)
        self.assertIn("is not running; it loads the file when it starts", out)
        self.assertIn("refresh tokens rotate", err)
        self.assertEqual(self.auth_names(), [path.name])  # no temp file left
        events = self.login_events()
        self.assertEqual([(e["provider"], e["result"], e["detail"]["email"]) for e in events],
                         [("codex", "ok", "dev@example.com")])
        self.assert_no_secrets(out, err, sources=(source,))

    def test_json_envelope_and_team_plan_file_name(self):
        source = self.write_source(codex_cli_auth(email="t@example.com", plan="team", account_id="acct-team"))
        code, out, err = self.run_import("--json")
        self.assertEqual(code, 0, err)
        envelope = json.loads(out)
        expected = f"codex-{hashlib.sha256(b'acct-team').hexdigest()[:8]}-t@example.com-team.json"
        self.assertEqual(envelope["data"]["file"], expected)
        self.assertEqual((envelope["command"], envelope["data"]["plan"]), ("auth codex import-headless", "team"))
        self.assertTrue(any("rotate" in w for w in envelope["warnings"]))
        self.assert_no_secrets(out, err, sources=(source,))

    def test_default_source_is_codex_home(self):
        source = self.write_source(codex_cli_auth())
        code, out, err = self.cli("auth", "codex", "import-headless", env={"CODEX_HOME": str(self.source.parent)})
        self.assertEqual(code, 0, err)
        self.assert_no_secrets(out, err, sources=(source,))

    def assert_import_fails(self, code_expected: int, message: str, *extra: str, source: dict | None = None,
                            env: dict | None = None, dest: Path | None = None) -> str:
        code, out, err = self.run_import(*extra, env=env)
        self.assertEqual(code, code_expected, err)
        self.assertIn(message, err)
        self.assertNotIn("Traceback", err)
        self.assertEqual([n for n in self.auth_names(dest) if n.endswith((".json", ".tmp"))], [])
        self.assertEqual([(e["result"], e["detail"]["method"]) for e in self.login_events()], [("failed", "import")])
        self.assert_no_secrets(out, err, sources=(source or {},))
        return err

    def test_source_missing(self):
        code, _, err = self.cli("auth", "codex", "import-headless", env={"CODEX_HOME": str(self.root / "nowhere")})
        self.assertEqual(code, NOT_FOUND)
        self.assertIn(f"Codex CLI auth file not found: {self.root / 'nowhere' / 'auth.json'}", err)
        self.assertIn("codex login", err)
        self.assertEqual(self.auth_names(), [])

    def test_source_unreadable(self):
        self.source.mkdir()  # a folder where the file should be: unreadable even as root
        self.assert_import_fails(USAGE, f"cannot read the Codex CLI auth file {self.source}")

    @unittest.skipIf(os.geteuid() == 0, "root reads any file")
    def test_source_without_permission(self):
        self.write_source(codex_cli_auth())
        self.source.chmod(0)
        self.assert_import_fails(USAGE, "Permission denied")

    def test_source_not_json(self):
        self.write_source('{"tokens": {"id_token": "eyJhbGciOi')
        self.assert_import_fails(AUTH, "is not valid JSON (line 1")

    def test_json_without_tokens(self):
        self.write_source({"last_refresh": "2026-01-01T00:00:00Z"})
        self.assert_import_fails(AUTH, "has no ChatGPT tokens; an import needs a ChatGPT login")

    def test_api_key_only_file(self):
        source = self.write_source({"auth_mode": "apikey", "OPENAI_API_KEY": "sk-proj-" + "x" * 40})
        err = self.assert_import_fails(AUTH, "holds only an API key; an import needs a ChatGPT login", source=source)
        self.assertIn("Sign in with ChatGPT", err)

    def test_missing_refresh_token(self):
        source = codex_cli_auth()
        del source["tokens"]["refresh_token"]
        self.write_source(source)
        self.assert_import_fails(AUTH, "tokens.refresh_token is missing", source=source)

    def test_malformed_jwt(self):
        source = codex_cli_auth()
        source["tokens"]["id_token"] = source["tokens"]["id_token"].rsplit(".", 2)[0]
        self.write_source(source)
        self.assert_import_fails(AUTH, "tokens.id_token is not a valid JWT: expected 3 dot-separated parts",
                                 source=source)

    def test_truncated_jwt(self):
        source = codex_cli_auth()
        head, payload, _ = source["tokens"]["access_token"].split(".")
        source["tokens"]["access_token"] = f"{head}.{payload[:len(payload) // 2 + 1]}.sig"
        self.write_source(source)
        self.assert_import_fails(AUTH, "tokens.access_token is not a valid JWT: its payload is not base64url",
                                 source=source)

    def test_jwt_without_email(self):
        source = self.write_source(codex_cli_auth(email=None))
        self.assert_import_fails(AUTH, "the id_token has no email claim", source=source)

    def test_access_token_without_expiry(self):
        source = self.write_source(codex_cli_auth(exp=None))
        self.assert_import_fails(AUTH, "the access_token has no exp (expiry) claim", source=source)

    def test_destination_unwritable(self):
        source = self.write_source(codex_cli_auth())
        blocker = self.root / "not-a-folder"
        blocker.write_text("x")
        dest = blocker / "auths"
        code, out, err = self.run_import("--dest-dir", str(dest))
        self.assertEqual(code, USAGE, err)
        self.assertIn(f"cannot create folder {dest}", err)
        self.assertFalse(dest.exists())
        self.assertEqual(self.login_events()[-1]["result"], "failed")
        self.assert_no_secrets(out, err, sources=(source,))

    @unittest.skipIf(os.geteuid() == 0, "root writes anywhere")
    def test_destination_read_only(self):
        source = self.write_source(codex_cli_auth())
        dest = self.root / "ro"
        dest.mkdir(mode=0o500)
        self.addCleanup(dest.chmod, 0o700)
        self.assert_import_fails(USAGE, "Permission denied", "--dest-dir", str(dest), source=source, dest=dest)

    def test_dest_dir_other_than_the_proxy_folder(self):
        source = self.write_source(codex_cli_auth())
        dest = self.root / "elsewhere"
        code, out, err = self.run_import("--dest-dir", str(dest))
        self.assertEqual(code, 0, err)
        self.assertEqual(dest.stat().st_mode & 0o777, 0o700)
        self.assertEqual((dest / "codex-dev@example.com-plus.json").stat().st_mode & 0o777, 0o600)
        self.assertIn(f"CLIProxyAPIPlus reads {self.cfg.layout.auths_dir}", err)
        self.assert_no_secrets(out, err, sources=(source,))

    def test_newer_existing_file_is_kept_unless_forced(self):
        newer = codex_file(self.cfg.layout.auths_dir, "dev@example.com", "plus", NOW + 20 * DAY)
        before = newer.read_bytes()
        source = self.write_source(codex_cli_auth(exp=NOW + 10 * DAY))
        code, out, err = self.run_import()
        self.assertEqual(code, CONFLICT)
        self.assertIn("already holds a newer token", err)
        self.assertIn("--force", err)
        self.assertEqual(newer.read_bytes(), before)
        self.assert_no_secrets(out, err, sources=(source,))
        code, out, err = self.run_import("--force")
        self.assertEqual(code, 0, err)
        self.assertIn("replaced the previous one", out)
        self.assertEqual(json.loads(newer.read_text())["access_token"], source["tokens"]["access_token"])

    def test_older_existing_file_is_replaced(self):
        older = codex_file(self.cfg.layout.auths_dir, "dev@example.com", "plus", NOW + DAY, mode=0o644)
        source = self.write_source(codex_cli_auth(exp=NOW + 10 * DAY))
        code, _, err = self.run_import()
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(older.read_text())["refresh_token"], source["tokens"]["refresh_token"])
        self.assertEqual(older.stat().st_mode & 0o777, 0o600)


# --------------------------------------------------------------------------- status

class StatusTest(SecretsMixin, TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        self.folder = self.cfg.layout.auths_dir

    def test_accounts_expiry_modes_and_warnings(self):
        codex_file(self.folder, "fine@example.com", "pro", NOW + 30 * DAY)
        codex_file(self.folder, "soon@example.com", "plus", NOW + 3 * DAY)
        codex_file(self.folder, "old@example.com", "free", NOW - 2 * DAY)
        codex_file(self.folder, "loose@example.com", "plus", NOW + 30 * DAY, mode=0o644)
        write_login_file(self.folder, "github-copilot-octocat.json",
                         {"access_token": "gho_" + "a" * 36, "username": "octocat", "type": "github-copilot"})
        (self.folder / "notes.json").write_text("[1, 2]")
        code, out, err = self.cli("auth", "status")
        self.assertEqual(code, 0, err)
        lines = {line.split()[-1]: line for line in out.splitlines()[1:] if line.strip()}
        self.assertRegex(lines["codex-fine@example.com-pro.json"],
                         r"codex\s+fine@example.com\s+pro\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+(29|30)d \d+h\s+0600\s+-\s+ok")
        self.assertRegex(lines["codex-old@example.com-free.json"], r"expired 1d 23h ago|expired 2d 0h ago")
        self.assertRegex(lines["github-copilot-octocat.json"], r"github-copilot\s+octocat\s+-\s+-\s+-\s+0644")
        self.assertIn("not running", out)
        self.assertIn("warning: codex-soon@example.com-plus.json: expires in 2d", err)
        self.assertRegex(err, r"warning: codex-old@example.com-free.json: expired (1d 23h|2d 0h) ago: log in again")
        self.assertIn("warning: codex-loose@example.com-plus.json: mode 0644, should be 0600", err)
        self.assertIn("warning: notes.json: not a JSON object", err)
        self.assert_no_secrets(out, err)

        code, out, _ = self.cli("auth", "status", "--json")
        accounts = {a["file"]: a for a in json.loads(out)["data"]["accounts"]}
        self.assertEqual(accounts["codex-fine@example.com-pro.json"]["level"], "ok")
        self.assertEqual(accounts["codex-soon@example.com-plus.json"]["level"], "warning")
        self.assertLess(accounts["codex-old@example.com-free.json"]["seconds_left"], 0)
        self.assertEqual(accounts["github-copilot-octocat.json"]["mode"], "0644")
        self.assert_no_secrets(out)

    def test_the_proxy_view(self):
        codex_file(self.folder, "live@example.com", "pro", NOW + 30 * DAY)
        codex_file(self.folder, "off@example.com", "plus", NOW + 30 * DAY)
        codex_file(self.folder, "new@example.com", "plus", NOW + 30 * DAY)
        listed = {"files": [
            {"name": "codex-live@example.com-pro.json", "status": "active"},
            {"name": "codex-off@example.com-plus.json", "status": "disabled", "disabled": True},
            {"name": "gemini-x.json", "provider": "gemini", "email": "x@example.com", "status": "active",
             "runtime_only": True},
            {"name": "codex-gone@example.com-plus.json", "provider": "codex", "email": "gone@example.com",
             "status": "active"}]}
        fake = mock.Mock()
        fake.get.return_value = listed
        with mock.patch.object(stack, "is_running", return_value=True), \
                mock.patch("llm_router.auth.status.Management", return_value=fake):
            code, out, err = self.cli("auth", "status", "--json")
            fake.get.side_effect = RouterError("CLIProxyAPIPlus rejected the management key (HTTP 401)")
            _, text, _ = self.cli("auth", "status")
        self.assertEqual(code, 0, err)
        report = json.loads(out)["data"]
        accounts = {a["file"]: a for a in report["accounts"]}
        self.assertEqual(report["proxy"], {"running": True, "error": None})
        self.assertEqual((accounts["codex-live@example.com-pro.json"]["proxy_status"],
                          accounts["codex-live@example.com-pro.json"]["problems"]), ("active", []))
        self.assertEqual(accounts["codex-off@example.com-plus.json"]["problems"], ["the proxy reports it disabled"])
        self.assertEqual(accounts["codex-new@example.com-plus.json"]["problems"], ["not loaded by the proxy"])
        self.assertEqual((accounts["gemini-x.json"]["account"], accounts["gemini-x.json"]["level"]),
                         ("x@example.com", "ok"))
        self.assertEqual(accounts["codex-gone@example.com-plus.json"]["problems"],
                         [f"listed by the proxy, not in {self.folder}"])
        self.assertIn("CLIProxyAPIPlus could not be asked: CLIProxyAPIPlus rejected the management key", text)

    def test_empty_folder_and_invoke_task(self):
        from tests.support import inv

        code, out, _ = self.cli("auth", "status")
        self.assertEqual(code, 0)
        self.assertIn("no accounts in", out)
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv("auth.status", "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["command"], "auth status")

    def test_task_listing(self):
        from tests.support import inv

        code, out, _ = inv("--list")
        for name in ("auth.codex-login", "auth.copilot-login", "auth.codex-import", "auth.status"):
            self.assertIn(name, out)


# --------------------------------------------------------------------------- poll loop (fake proxy, fake clock)

class FakeManagement:
    """Answers like the management API; `statuses` are returned in turn, `ok` after writing the auth file
    when `writes` is set."""

    def __init__(self, folder: Path, statuses: list[dict], writes: bool = True, state: str = "f00d"):
        self.folder, self.statuses, self.writes, self.state = folder, list(statuses), writes, state
        self.calls: list[tuple[str, str]] = []
        self.callbacks: list[dict] = []

    def request(self, method, path, params=None, body=None, allow=()):
        self.calls.append((method, path))
        if path == "oauth-callback":
            self.callbacks.append(body)
            self.statuses = [{"status": "ok"}]
            return 200, {"status": "ok"}
        return 200, self.get(path, **(params or {}))

    def get(self, path, **params):
        self.calls.append(("GET", path))
        if path == "auth-files":
            return {"files": []}
        if path == "codex-auth-url":
            return {"status": "ok", "url": "https://auth.openai.com/oauth/authorize?state=" + self.state,
                    "state": self.state}
        answer = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if answer["status"] == "ok" and self.writes:
            write_login_file(self.folder, "codex-fake@example.com-plus.json",
                             codex_auth_record("fake@example.com", "plus"))
        return answer


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class PollLoopTest(SecretsMixin, TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        self.folder = self.cfg.layout.auths_dir
        self.clock = FakeClock()
        self.messages: list[str] = []
        patcher = mock.patch.object(stack, "is_running", return_value=True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def login(self, fake: FakeManagement, **kwargs) -> dict:
        kwargs.setdefault("open_browser", False)
        with mock.patch.object(login_mod, "Management", return_value=fake):
            return auth.codex_login(self.cfg, timeout=10, poll_interval=2, notify=self.messages.append,
                                    sleep=self.clock.sleep, clock=self.clock, **kwargs)

    def test_waits_until_ok_and_fixes_the_mode(self):
        fake = FakeManagement(self.folder, [{"status": "wait"}, {"status": "wait"}, {"status": "ok"}])
        info = self.login(fake)
        self.assertEqual((info["email"], info["plan"], info["change"], info["mode"]),
                         ("fake@example.com", "plus", "added", "0600"))
        self.assertEqual(self.clock.sleeps, [2, 2])
        self.assertTrue(any("state=f00d" in m for m in self.messages))
        self.assertFalse(info["proxy_started"])

    def test_ok_without_a_new_file_is_not_success(self):
        fake = FakeManagement(self.folder, [{"status": "ok"}], writes=False)
        with self.assertRaises(RouterError) as caught:
            self.login(fake)
        self.assertEqual(caught.exception.exit_code, AUTH)
        self.assertIn("no new or updated codex auth file appeared", caught.exception.message)
        self.assertEqual(self.login_events()[-1]["result"], "failed")

    def test_timeout(self):
        fake = FakeManagement(self.folder, [{"status": "wait"}])
        with self.assertRaises(RouterError) as caught:
            self.login(fake)
        self.assertEqual(caught.exception.exit_code, UNAVAILABLE)
        self.assertIn("Codex login timed out after 10 s", caught.exception.message)
        self.assertEqual(sum(self.clock.sleeps), 10)
        self.assertEqual(self.login_events()[-1]["result"], "timeout")
        self.assertEqual(self.auth_names(), [])

    def test_error_status(self):
        fake = FakeManagement(self.folder, [{"status": "wait"}, {"status": "error", "error": "State code error"}])
        with self.assertRaises(RouterError) as caught:
            self.login(fake)
        self.assertEqual((caught.exception.exit_code, caught.exception.message),
                         (AUTH, "Codex login failed: State code error"))

    def test_interrupt(self):
        fake = FakeManagement(self.folder, [{"status": "wait"}])

        def interrupted(_):
            raise KeyboardInterrupt

        with mock.patch.object(login_mod, "Management", return_value=fake), self.assertRaises(RouterError) as caught:
            auth.codex_login(self.cfg, open_browser=False, notify=self.messages.append, sleep=interrupted,
                             clock=self.clock)
        self.assertEqual(caught.exception.exit_code, auth.INTERRUPTED)
        self.assertIn("interrupted: no account was added", caught.exception.message)
        self.assertEqual(self.login_events()[-1]["result"], "interrupted")

    def test_invalid_state_is_never_polled(self):
        fake = FakeManagement(self.folder, [{"status": "ok"}], state="")
        with self.assertRaises(RouterError) as caught:
            self.login(fake)
        self.assertEqual(caught.exception.exit_code, UNAVAILABLE)
        self.assertNotIn(("GET", "get-auth-status"), fake.calls)

    def test_pasted_redirect_url(self):
        fake = FakeManagement(self.folder, [{"status": "wait"}])
        pasted = iter(["garbage", "http://localhost:1455/auth/callback?code=c&state=other",
                       "  http://localhost:1455/auth/callback?code=c&state=f00d  "])
        info = self.login(fake, read_pasted=lambda: next(pasted, None))
        self.assertEqual(info["method"], "pasted")
        self.assertEqual(fake.callbacks, [{"provider": "codex",
                                           "redirect_url": "http://localhost:1455/auth/callback?code=c&state=f00d"}])
        text = "\n".join(self.messages)
        self.assertIn("paste the address the browser ends on", text)
        self.assertIn("that is not the redirect URL of a Codex login", text)
        self.assertIn("belongs to another login attempt", text)

    def test_browser_is_opened_only_through_the_opener(self):
        fake = FakeManagement(self.folder, [{"status": "ok"}])
        opened = []
        self.login(fake, open_browser=True, opener=lambda url: opened.append(url) or True)
        self.assertEqual(opened, ["https://auth.openai.com/oauth/authorize?state=f00d"])
        self.assertIn("Opened it in your browser.", self.messages)

    def test_bad_timing_values(self):
        with self.assertRaises(RouterError) as caught:
            auth.codex_login(self.cfg, timeout=0)
        self.assertEqual(caught.exception.exit_code, USAGE)


# --------------------------------------------------------------------------- logins against the stand-in

class LoginTest(SecretsMixin, StackRepo):
    def setUp(self):
        super().setUp()
        self.base_url = self.cfg.services[CP].base_url

    def start_proxy(self) -> int:
        outcome = stack.start(self.cfg, [CP])[0]
        self.remember_pids()
        return outcome.pid

    def when_pending(self, action) -> None:
        """Run `action(state)` in a thread once the proxy has a pending login."""
        def worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = []
                with contextlib.suppress(OSError, StandinError):
                    states = pending_oauth(self.base_url)
                if states:
                    action(states[0])
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)

    def login(self, *argv: str, env: dict | None = None):
        result = self.cli("auth", *argv, "--poll-interval", "0.1", env=env)
        self.remember_pids()
        return result

    def assert_no_auth_file(self):
        self.assertEqual([n for n in self.auth_names() if n.endswith((".json", ".tmp"))], [])

    # Codex

    def test_codex_login_starts_the_proxy_and_leaves_it_running(self):
        self.when_pending(lambda state: complete_oauth(self.base_url, state, email="dev@example.com", plan="pro"))
        code, out, err = self.login("codex", "login", "--no-browser", "--timeout", "60")
        self.assertEqual(code, 0, err)
        path = self.cfg.layout.auths_dir / "codex-dev@example.com-pro.json"
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)  # the proxy wrote it 0644
        self.assertIn("Codex login ok: dev@example.com, plan pro, expires", out)
        self.assertIn("started for this login and is still running", out)
        self.assertIn("llm-router service stop cliproxyapi_plus", out)
        self.assertIn("CLIProxyAPIPlus is not running; starting it", err)
        self.assertIn("https://auth.openai.com/oauth/authorize?", err)
        self.assertIn("--callback-url", err)
        self.assertTrue(stack.is_running(self.cfg, CP))
        events = self.login_events()
        self.assertEqual([(e["provider"], e["result"], e["detail"]["email"]) for e in events],
                         [("codex", "ok", "dev@example.com")])
        code, status_out, _ = self.cli("auth", "status")
        self.assertRegex(status_out, r"codex\s+dev@example.com\s+pro\s+.*0600\s+active\s+ok")
        self.assert_no_secrets(out, err, status_out)

    def test_codex_login_json_with_running_proxy_updates_the_file(self):
        self.start_proxy()
        existing = codex_file(self.cfg.layout.auths_dir, "dev@example.com", "plus", NOW + DAY)
        self.when_pending(lambda state: complete_oauth(self.base_url, state, email="dev@example.com", plan="plus"))
        code, out, err = self.login("codex", "login", "--no-browser", "--json")
        self.assertEqual(code, 0, err)
        envelope = json.loads(out)
        self.assertEqual((envelope["command"], envelope["data"]["change"], envelope["data"]["file"]),
                         ("auth codex login", "updated", existing.name))
        self.assertFalse(envelope["data"]["proxy_started"])
        self.assertNotIn("starting it", err)
        self.assert_no_secrets(out, err)

    def test_codex_error_status_stops_the_proxy_it_started(self):
        self.when_pending(lambda state: fail_oauth(self.base_url, state, "Token exchange failed with status 400"))
        code, out, err = self.login("codex", "login", "--no-browser", "--timeout", "60")
        self.assertEqual(code, AUTH)
        self.assertIn("error: Codex login failed: Token exchange failed with status 400", err)
        self.assertIn("Stopped CLIProxyAPIPlus again", err)
        self.assertFalse(stack.is_running(self.cfg, CP))
        self.assert_no_auth_file()
        self.assertEqual(self.login_events()[-1]["result"], "failed")
        self.assert_no_secrets(out, err)

    def test_codex_timeout_leaves_a_running_proxy_running(self):
        pid = self.start_proxy()
        code, out, err = self.login("codex", "login", "--no-browser", "--timeout", "1")
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("error: Codex login timed out after 1 s", err)
        self.assertIn("raise --timeout", err)
        self.assertEqual(stack.inspect(self.cfg, CP).pid, pid)
        self.assert_no_auth_file()
        self.assertEqual(self.login_events()[-1]["result"], "timeout")
        self.assert_no_secrets(out, err)

    def test_codex_ctrl_c_while_polling(self):
        pid = self.start_proxy()
        self.when_pending(lambda state: os.kill(os.getpid(), signal.SIGINT))
        code, out, err = self.login("codex", "login", "--no-browser", "--timeout", "60")
        self.assertEqual(code, auth.INTERRUPTED)
        self.assertIn("error: Codex login interrupted: no account was added", err)
        self.assertEqual(stack.inspect(self.cfg, CP).pid, pid)
        self.assert_no_auth_file()
        self.assertEqual(self.login_events()[-1]["result"], "interrupted")
        self.assert_no_secrets(out, err)

    def test_codex_callback_url_finishes_an_earlier_login(self):
        self.start_proxy()
        from llm_router.cliproxy import Management

        state = Management(self.cfg).get("codex-auth-url", is_webui="true")["state"]
        url = f"http://localhost:1455/auth/callback?code=abc123&state={state}"
        code, out, err = self.login("codex", "login", "--callback-url", url)
        self.assertEqual(code, 0, err)
        self.assertIn("Codex login ok: user@example.com, plan plus", out)
        self.assertEqual(self.login_events()[-1]["detail"]["method"], "callback-url")
        self.assertNotIn("abc123", out + err + self.cfg.layout.events_log.read_text())
        self.assert_no_secrets(out, err)

    def test_codex_callback_url_for_an_unknown_login(self):
        self.start_proxy()
        url = "http://localhost:1455/auth/callback?code=abc123&state=0123456789abcdef"
        code, out, err = self.login("codex", "login", "--callback-url", url)
        self.assertEqual(code, AUTH)
        self.assertIn("CLIProxyAPIPlus does not know this login (unknown or expired state)", err)
        self.assert_no_auth_file()
        code, _, err = self.login("codex", "login", "--callback-url", "http://localhost:1455/auth/callback?x=1")
        self.assertEqual(code, USAGE)
        self.assertIn("not the redirect URL of a Codex login", err)

    def test_management_key_rejected(self):
        self.start_proxy()
        wrong = "sk-wrong-" + secrets.token_hex(8)
        code, out, err = self.login("codex", "login", "--no-browser", env={keys.MANAGEMENT_KEY: wrong})
        self.assertEqual(code, AUTH)
        self.assertIn("CLIProxyAPIPlus rejected the management key (HTTP 401: invalid management key)", err)
        self.assertNotIn(wrong, out + err + self.cfg.layout.events_log.read_text())
        self.assertTrue(stack.is_running(self.cfg, CP))
        self.assert_no_auth_file()
        self.assert_no_secrets(out, err)

    def test_management_disabled(self):
        self.start_proxy()
        runtime = self.cfg.layout.cliproxy_runtime_config
        data = yaml.safe_load(runtime.read_text())
        data["remote-management"]["secret-key"] = ""
        runtime.write_text(yaml.safe_dump(data))
        deadline = time.monotonic() + 20
        while call("GET", self.base_url + "/v0/management/auth-files").status != 404:
            self.assertLess(time.monotonic(), deadline, "the stand-in did not reload its config")
            time.sleep(0.1)
        code, out, err = self.login("copilot", "login")
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("the CLIProxyAPIPlus management API is disabled (HTTP 404", err)
        self.assertIn("service restart cliproxyapi_plus", err)
        self.assertTrue(stack.is_running(self.cfg, CP))
        self.assert_no_auth_file()
        self.assert_no_secrets(out, err)

    def test_proxy_cannot_start(self):
        self.cfg.layout.cliproxy_binary.write_text("#!/bin/sh\necho 'CLIProxyAPI Version: 6.9.28-0-plus'\n"
                                                   "echo 'failed to load config: boom'\nexit 0\n")
        code, out, err = self.login("codex", "login", "--no-browser")
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("error: the Codex login needs CLIProxyAPIPlus, which could not be started: "
                      "cliproxyapi_plus exited during start-up", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())
        self.assertFalse(stack.is_running(self.cfg, CP))
        self.assert_no_auth_file()
        self.assertEqual(self.login_events()[-1]["result"], "failed")

    def test_proxy_not_installed(self):
        self.cfg.layout.cliproxy_binary.unlink()
        code, _, err = self.login("copilot", "login")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("which could not be started: CLIProxyAPIPlus is not installed", err)
        self.assertIn("bootstrap download", err)

    # GitHub Copilot

    def test_copilot_login_through_the_management_route(self):
        self.start_proxy()
        self.when_pending(lambda state: complete_oauth(self.base_url, state, login="octocat"))
        code, out, err = self.login("copilot", "login", "--timeout", "60")
        self.assertEqual(code, 0, err)
        self.assertIn("https://github.com/login/device", err)
        self.assertIn("code:  ABCD-1234", err)
        self.assertIn("GitHub Copilot login ok: octocat, no expiry", out)
        path = self.cfg.layout.auths_dir / "github-copilot-octocat.json"
        self.assertEqual(path.stat().st_mode & 0o777, 0o600)
        event = self.login_events()[-1]
        self.assertEqual((event["provider"], event["result"], event["detail"]["account"]),
                         ("github-copilot", "ok", "octocat"))
        self.assert_no_secrets(out, err)

    def device_flow_processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "-github-copilot-login" in cmdline and str(self.cfg.layout.cliproxy_runtime_config) in cmdline:
                found.append(proc)
        return found

    def fallback_env(self, flow: str) -> dict:
        return {"CLIPROXY_STANDIN_NO_GITHUB_AUTH_URL": "1", "CLIPROXY_STANDIN_DEVICE_FLOW": flow}

    def test_copilot_falls_back_to_the_binary_device_flow(self):
        code, out, err = self.login("copilot", "login", "--timeout", "60", env=self.fallback_env("approve:hubot"))
        self.assertEqual(code, 0, err)
        self.assertIn("has no GitHub login route; running its own device flow", err)
        self.assertIn("code:  ABCD-1234", err)
        self.assertIn("GitHub Copilot login ok: hubot", out)
        self.assertIn("started for this login and is still running", out)
        self.assertEqual((self.cfg.layout.auths_dir / "github-copilot-hubot.json").stat().st_mode & 0o777, 0o600)
        self.assertEqual(self.login_events()[-1]["detail"]["method"], "binary-device-flow")
        self.assertEqual(self.device_flow_processes(), [])
        self.assert_no_secrets(out, err)

    def test_copilot_device_flow_denied(self):
        code, out, err = self.login("copilot", "login", "--timeout", "60", env=self.fallback_env("deny"))
        self.assertEqual(code, AUTH)
        self.assertIn("GitHub Copilot login failed (the binary's device flow exited with status 1): "
                      "GitHub Copilot authentication failed: access_denied", err)
        self.assertFalse(stack.is_running(self.cfg, CP))  # started for the login, stopped again
        self.assert_no_auth_file()
        self.assert_no_secrets(out, err)

    def test_copilot_device_flow_timeout_kills_the_child(self):
        pid = self.start_proxy()
        code, out, err = self.login("copilot", "login", "--timeout", "2", env=self.fallback_env("hang"))
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("GitHub Copilot login timed out after 2 s", err)
        self.assertEqual(self.device_flow_processes(), [])
        self.assertEqual(stack.inspect(self.cfg, CP).pid, pid)
        self.assert_no_auth_file()
        self.assertEqual(self.login_events()[-1]["result"], "timeout")

    # import with a running proxy

    def test_import_is_confirmed_by_the_running_proxy(self):
        self.start_proxy()
        source = codex_cli_auth()
        path = self.root / "auth.json"
        path.write_text(json.dumps(source))
        code, out, err = self.cli("auth", "codex", "import-headless", "--source", str(path))
        self.assertEqual(code, 0, err)
        self.assertIn("CLIProxyAPIPlus picked it up.", out)
        code, status_out, _ = self.cli("auth", "status", "--json")
        account = json.loads(status_out)["data"]["accounts"][0]
        self.assertEqual((account["email"], account["proxy_status"], account["level"]),
                         ("dev@example.com", "active", "ok"))
        self.assert_no_secrets(out, err, status_out, sources=(source,))


if __name__ == "__main__":
    unittest.main()


class QuotaStatusTest(SecretsMixin, StackRepo):
    """`auth status --quota`: remaining Copilot quota where the running line tells it, "unknown" otherwise."""

    def test_quota_is_unknown_where_the_line_has_no_route_or_the_proxy_is_stopped(self):
        from llm_router.standin.cliproxy import write_copilot_login

        write_copilot_login(self.cfg.layout.auths_dir, "octocat").chmod(0o600)
        code, out, err = self.cli("auth", "status", "--quota")
        self.assertEqual(code, 0, out + err)
        self.assertIn("QUOTA", out)
        self.assertIn("quota: unknown (CLIProxyAPIPlus is not running)", out)
        self.assertEqual(stack.start(self.cfg, [CP])[0].result, "started")
        self.remember_pids()
        code, out, err = self.cli("auth", "status", "--quota", "--json")
        self.assertEqual(code, 0, out + err)
        data = json.loads(out)["data"]
        self.assertFalse(data["quota"]["available"])
        self.assertIn("has no /copilot-quota route", data["quota"]["reason"])  # the 6.9 line of the stand-in
        code, out, _ = self.cli("auth", "status", "--quota")
        copilot = next(line for line in out.splitlines() if line.startswith("github-copilot"))
        self.assertIn("unknown", copilot)
