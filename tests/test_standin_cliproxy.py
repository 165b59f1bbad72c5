"""The CLIProxyAPIPlus stand-in, run as a real process (and as an installed fake binary).

These run once, on the default line (6.9.28-0), and check what every line does alike. What a line changes
(banner, flags, routes, management 401/404 rules, Copilot) is in test_standin_lines.py, run on each line.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

from llm_router.standin.cliproxy import DEFAULT_VERSION, banner, build_release_archive, jwt_claims, write_checksums
from llm_router.standin.process import (
    Reply,
    StandinError,
    call,
    complete_oauth,
    fail_oauth,
    free_port,
    pending_oauth,
    reset,
    set_fault,
    start_cliproxy,
    stats,
)

BANNER = banner(DEFAULT_VERSION)  # the default line's; test_standin_lines.py checks every line's
CLIENT_KEY = "client-key"
SECRET = "management-plaintext"
VISIT = "Visit the following URL to continue authentication:"
CODEX_ONLY_MODEL = "gpt-5.1-codex-max"  # served by a Codex file on every line (Copilot files: per line)


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "llm_router.standin.cliproxy", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {})}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sse_payloads(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    lines = [line for event in body.decode().split("\n\n") for line in event.splitlines()]
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "standin-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/json\r\n\r\n"
    )
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def write_config(
    path: Path, auth_dir: Path, port: int | None = None, secret: str = "", api_keys: tuple[str, ...] = ()
) -> Path:
    lines = ["# stand-in test config", "host: 127.0.0.1", *([f"port: {port}"] if port else [])]
    lines += ["remote-management:", "  allow-remote: false", "  # keep this comment", f'  secret-key: "{secret}"']
    lines += ["  disable-control-panel: true", f'auth-dir: "{auth_dir}"']
    lines += ["api-keys:", *(f"  - {key}" for key in api_keys)] if api_keys else ["api-keys: []"]
    lines += [
        "debug: false",
        "openai-compatibility:",
        "  - name: local",
        "    base-url: http://127.0.0.1:9/v1",
        "    models:",
        "      - {name: upstream-model, alias: compat-model}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class TempDirCase(unittest.TestCase):
    @classmethod
    def make_temp_dir(cls) -> Path:
        temp = tempfile.TemporaryDirectory(prefix="standin-test-")
        cls.addClassCleanup(temp.cleanup)
        return Path(temp.name)


class CommandLineTest(TempDirCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = cls.make_temp_dir()
        cls.auth_dir = cls.dir / "auths"
        cls.config = write_config(cls.dir / "config.yaml", cls.auth_dir, port=free_port())

    def test_help_spellings_print_banner_first_and_exit_zero(self) -> None:
        for flag in ("-h", "--help", "-help"):
            result = run_cli(flag)
            self.assertEqual(result.returncode, 0)
            self.assertEqual(result.stdout.splitlines()[0], BANNER)
            self.assertIn("-config string", result.stderr)

    def test_unknown_flag_exits_2_like_go(self) -> None:
        result = run_cli("-nope")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout.splitlines()[0], BANNER)
        self.assertIn("flag provided but not defined: -nope", result.stderr)
        self.assertEqual(run_cli("-config").returncode, 2)

    def test_missing_config_logs_and_exits_zero_without_serving(self) -> None:
        result = run_cli("-config", str(self.dir / "missing.yaml"))
        self.assertEqual(result.returncode, 0)
        self.assertIn("[error] failed to load config", result.stdout)
        self.assertNotIn("API server started", result.stdout)

    def test_default_config_is_config_yaml_in_cwd(self) -> None:
        empty = self.make_temp_dir()
        self.assertIn(f"open {empty / 'config.yaml'}", run_cli(cwd=empty).stdout)

    def test_invalid_config_exits_zero(self) -> None:
        bad = self.dir / "bad.yaml"
        bad.write_text("- just\n- a list\n")
        result = run_cli("-config", str(bad))
        self.assertEqual(result.returncode, 0)
        self.assertIn("[error] failed to load config", result.stdout)

    def test_busy_port_logs_and_exits_zero(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            config = write_config(self.dir / "busy.yaml", self.auth_dir, port=busy.getsockname()[1])
            result = run_cli("-config", str(config))
        self.assertEqual(result.returncode, 0)
        self.assertIn("address already in use", result.stdout)

    def test_start_cliproxy_reports_a_failed_start(self) -> None:
        with self.assertRaises(StandinError) as caught:
            start_cliproxy(self.dir / "missing.yaml")
        self.assertIn("failed to load config", str(caught.exception))

    # -github-copilot-login exists on the Plus lines only (its approval on each line: test_standin_lines.py)

    def test_github_copilot_login_deny_exits_1(self) -> None:
        flow = {"CLIPROXY_STANDIN_DEVICE_FLOW": "deny"}
        result = run_cli("--github-copilot-login", "--config", str(self.config), env=flow)
        self.assertEqual(result.returncode, 1)
        self.assertIn("authentication failed", result.stdout)

    def test_login_hang_waits_until_terminated(self) -> None:
        env = {**os.environ, "CLIPROXY_STANDIN_DEVICE_FLOW": "hang"}
        command = cli_command("-github-copilot-login", "-config", str(self.config))
        login = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.addCleanup(login.wait)
        self.addCleanup(login.kill)
        self.addCleanup(login.stdout.close)
        self.assertTrue(any("And enter the code" in line for line in iter(login.stdout.readline, "")))
        self.assertIsNone(login.poll())
        login.terminate()
        self.assertNotEqual(login.wait(timeout=30), 0)

    def test_codex_login_approve(self) -> None:
        flow = {"CLIPROXY_STANDIN_DEVICE_FLOW": "approve:cli@example.com:pro"}
        result = run_cli("-codex-login", "-no-browser", f"-config={self.config}", env=flow)
        self.assertEqual(result.returncode, 0, result.stdout)
        lines = result.stdout.splitlines()
        self.assertTrue(lines[lines.index(VISIT) + 1].startswith("https://auth.openai.com/oauth/authorize?"))
        record = json.loads((self.auth_dir / "codex-cli@example.com-pro.json").read_text())
        self.assertEqual(record["email"], "cli@example.com")


class ProxyClient:
    """Calls to a running stand-in at `self.url` with CLIENT_KEY and SECRET (mixed into TestCases)."""

    url: str
    auth_dir: Path

    def client(self, method: str, path: str, body: Any = None) -> Reply:
        return call(method, self.url + path, body, {"Authorization": f"Bearer {CLIENT_KEY}"})

    def chat(self, model: str, **fields: Any) -> Reply:
        return self.client("POST", "/v1/chat/completions", {"model": model, **fields})

    def manage(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {SECRET}", **(headers or {})}
        return call(method, f"{self.url}/v0/management{path}", body, headers)

    def model_ids(self) -> list[str]:
        return [model["id"] for model in self.client("GET", "/v1/models").json()["data"]]

    def forget_later(self, name: str) -> None:
        """Delete an auth file after the test through the API, which drops it from the registry at once."""
        self.addCleanup(self.manage, "DELETE", f"/auth-files?name={quote(name)}")

    def upload(self, name: str, record: dict[str, Any]) -> None:
        self.forget_later(name)
        self.assertEqual(self.manage("POST", f"/auth-files?name={name}", json.dumps(record).encode()).status, 200)

    def start_login(self, path: str) -> str:
        reply = self.manage("GET", path)
        self.assertEqual(reply.status, 200)
        return reply.json()["state"]

    def auth_status(self, state: str) -> dict[str, str]:
        return self.manage("GET", f"/get-auth-status?state={state}").json()


class ServerTest(ProxyClient, TempDirCase):
    """One stand-in with a client key, a management secret and an openai-compatibility model."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = cls.make_temp_dir()
        cls.auth_dir = cls.dir / "auths"
        cls.config = write_config(
            cls.dir / "config.yaml", cls.auth_dir, port=free_port(), secret=SECRET, api_keys=(CLIENT_KEY,)
        )
        cls.proxy = start_cliproxy(cls.config)
        cls.addClassCleanup(cls.proxy.stop)
        cls.url = cls.proxy.base_url

    def setUp(self) -> None:
        reset(self.url)

    # public routes (/ and /healthz: test_standin_lines.py)

    def test_client_key_errors_and_sources(self) -> None:
        missing = call("GET", self.url + "/v1/models")
        self.assertEqual((missing.status, missing.json()), (401, {"error": "Missing API key"}))
        invalid = call("GET", self.url + "/v1/models", headers={"Authorization": "Bearer wrong"})
        self.assertEqual((invalid.status, invalid.json()), (401, {"error": "Invalid API key"}))
        for headers in ({"Authorization": CLIENT_KEY}, {"X-Api-Key": CLIENT_KEY}):
            self.assertEqual(call("GET", self.url + "/v1/models", headers=headers).status, 200)
        self.assertEqual(call("GET", f"{self.url}/v1/models?key={CLIENT_KEY}").status, 200)

    def test_api_keys_reload_live(self) -> None:
        def added_key_status() -> int:
            return call("GET", self.url + "/v1/models", headers={"X-Api-Key": "added-key"}).status

        text = self.config.read_text()
        self.config.write_text(text.replace(f"  - {CLIENT_KEY}\n", f"  - {CLIENT_KEY}\n  - added-key\n"))
        wait_until(lambda: added_key_status() == 200, "the added api key to be accepted")
        self.config.write_text(text)
        wait_until(lambda: added_key_status() == 401, "the removed api key to be refused")

    def test_secret_key_is_hashed_in_the_file_and_plaintext_still_works(self) -> None:
        text = self.config.read_text()
        self.assertNotIn(SECRET, text)
        self.assertIn('secret-key: "$2a$10$', text)
        self.assertIn("# keep this comment", text)
        self.assertEqual(self.manage("GET", "/api-keys").json(), {"api-keys": [CLIENT_KEY]})

    def test_models_follow_auth_files_in_auth_dir(self) -> None:
        self.assertNotIn(CODEX_ONLY_MODEL, self.model_ids())
        self.assertIn("compat-model", self.model_ids())
        path = self.auth_dir / "codex-dropped@example.com-plus.json"
        self.forget_later(path.name)
        path.write_text(json.dumps({"type": "codex", "email": "dropped@example.com"}))
        wait_until(lambda: CODEX_ONLY_MODEL in self.model_ids(), "a dropped auth file to be picked up")
        owners = {model["id"]: model["owned_by"] for model in self.client("GET", "/v1/models").json()["data"]}
        self.assertEqual(owners[CODEX_ONLY_MODEL], "openai")
        path.unlink()
        wait_until(lambda: CODEX_ONLY_MODEL not in self.model_ids(), "a removed auth file to be dropped")

    def test_files_without_type_are_ignored(self) -> None:
        self.upload("no-type.json", {"email": "x@example.com"})
        self.assertEqual(self.manage("GET", "/auth-files").json()["files"], [])

    # inference

    def test_chat_without_credential_is_raw_400(self) -> None:
        reply = self.chat("raptor-mini")
        self.assertEqual((reply.status, reply.text), (400, "unknown provider for model raptor-mini"))

    def test_chat_and_streaming(self) -> None:
        reply = self.chat("compat-model", messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["x-standin-server"], "cliproxy")
        self.assertEqual(reply.json()["choices"][0]["message"]["content"], "standin cliproxy model compat-model")
        payloads = sse_payloads(self.chat("compat-model", stream=True, max_tokens=3).body)
        self.assertEqual(payloads[-1], "[DONE]")
        chunks = [json.loads(payload) for payload in payloads[:-1]]
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
        self.assertEqual(text, "standin cliproxy model")
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(stats(self.url), {"requests": {"compat-model": 2}, "total": 2})

    def test_responses_api(self) -> None:
        reply = self.client("POST", "/v1/responses", {"model": "compat-model", "input": "hello"})
        self.assertEqual(reply.json()["output"][0]["content"][0]["text"], "standin cliproxy model compat-model")

    def test_429_fault_is_a_model_cooldown(self) -> None:
        self.upload("codex-fault@example.com-plus.json", {"type": "codex", "email": "fault@example.com"})
        set_fault(self.url, "gpt-5", status=429, retry_after=7, count=1)
        reply = self.chat("gpt-5")
        self.assertEqual(reply.status, 429)
        self.assertEqual(reply.headers["Retry-After"], "7")
        error = reply.json()["error"]
        self.assertEqual(error["code"], "model_cooldown")
        self.assertEqual(error["message"], "All credentials for model gpt-5 are cooling down via provider codex")
        self.assertEqual((error["model"], error["provider"], error["reset_seconds"]), ("gpt-5", "codex", 7))
        self.assertIn("reset_time", error)
        self.assertEqual(self.chat("gpt-5").status, 200)

    def test_500_fault_expires_after_count(self) -> None:
        set_fault(self.url, "*", status=500, count=2)
        self.assertEqual([self.chat("compat-model").status for _ in range(3)], [500, 500, 200])

    def test_delay_fault(self) -> None:
        set_fault(self.url, "compat-model", delay=0.3, count=1)
        started = time.monotonic()
        self.assertEqual(self.chat("compat-model").status, 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_drop_stream_fault(self) -> None:
        set_fault(self.url, "compat-model", drop_stream=True, count=1)
        with self.assertRaises(http.client.IncompleteRead) as caught:
            self.chat("compat-model", stream=True)
        self.assertEqual(len(sse_payloads(caught.exception.partial)), 2)
        self.assertEqual(self.chat("compat-model", stream=True).status, 200)

    # management API (key errors, X-CPA-VERSION, /usage, /latest-version, OAuth states, /github-auth-url:
    # test_standin_lines.py)

    def test_auth_files_get_post_delete(self) -> None:
        codex, copilot = "codex-up@example.com-plus.json", "github-copilot-up.json"
        self.forget_later(codex)
        self.forget_later(copilot)
        record = {"type": "codex", "email": "up@example.com", "last_refresh": "2026-04-17T00:00:00Z"}
        body, headers = multipart(codex, json.dumps(record).encode())
        self.assertEqual(self.manage("POST", "/auth-files", body, headers).json(), {"status": "ok"})
        raw = json.dumps({"type": "github-copilot", "username": "up"}).encode()
        self.assertEqual(self.manage("POST", f"/auth-files?name={copilot}", raw).status, 200)
        for name in (codex, copilot):
            self.assertEqual(stat.S_IMODE((self.auth_dir / name).stat().st_mode), 0o600)
        self.assertIn(CODEX_ONLY_MODEL, self.model_ids())  # registered at once, no poll needed
        entry = {item["name"]: item for item in self.manage("GET", "/auth-files").json()["files"]}[codex]
        fields = ("type", "provider", "email", "source", "account_type", "last_refresh")
        self.assertEqual(
            [entry[key] for key in fields],
            ["codex", "codex", "up@example.com", "file", "oauth", "2026-04-17T00:00:00Z"]
        )
        self.assertEqual(self.manage("POST", "/auth-files?name=bad.json", b"not json").status, 400)
        self.assertEqual(self.manage("POST", "/auth-files?name=bad.txt", b"{}").status, 400)
        self.assertEqual(self.manage("DELETE", f"/auth-files?name={copilot}").json(), {"status": "ok"})
        self.assertEqual(self.manage("DELETE", f"/auth-files?name={copilot}").status, 404)
        self.assertEqual(self.manage("DELETE", "/auth-files?all=true").json(), {"status": "ok", "deleted": 1})
        self.assertEqual(self.manage("GET", "/auth-files").json(), {"files": []})

    def test_codex_login_through_management(self) -> None:
        reply = self.manage("GET", "/codex-auth-url?is_webui=true").json()
        state = reply["state"]
        query = parse_qs(urlsplit(reply["url"]).query)
        self.assertEqual(query["client_id"], ["app_EMoamEEZ73f0CkXaXp7hrann"])
        self.assertEqual(query["redirect_uri"], ["http://localhost:1455/auth/callback"])
        self.assertEqual(query["state"], [state])
        self.assertIn(state, pending_oauth(self.url))
        self.assertEqual(self.auth_status(state), {"status": "wait"})
        path = self.auth_dir / "codex-new@example.com-plus.json"
        self.forget_later(path.name)
        self.assertEqual(complete_oauth(self.url, state, email="new@example.com", plan="plus")["name"], path.name)
        self.assertEqual(self.auth_status(state), {"status": "ok"})
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o644)
        record = json.loads(path.read_text())
        fields = ["id_token", "access_token", "refresh_token", "account_id", "last_refresh", "email", "type", "expired"]
        self.assertEqual(list(record), fields)
        self.assertEqual((record["type"], record["email"]), ("codex", "new@example.com"))
        claims = jwt_claims(record["id_token"])
        self.assertEqual(claims["email"], "new@example.com")
        self.assertEqual(claims["https://api.openai.com/auth"]["chatgpt_account_id"], record["account_id"])
        self.assertEqual(claims["https://api.openai.com/auth"]["chatgpt_plan_type"], "plus")
        self.assertGreater(jwt_claims(record["access_token"])["exp"], time.time())
        self.assertIn("gpt-5.3-codex-spark", self.model_ids())

    def test_oauth_callback_completes_or_404s(self) -> None:
        state = self.start_login("/codex-auth-url")
        self.forget_later("codex-user@example.com-plus.json")
        redirect = f"http://localhost:1455/auth/callback?code=abc&state={state}"
        reply = self.manage("POST", "/oauth-callback", {"provider": "codex", "redirect_url": redirect})
        self.assertEqual(reply.json(), {"status": "ok"})
        self.assertEqual(self.auth_status(state), {"status": "ok"})
        self.assertTrue((self.auth_dir / "codex-user@example.com-plus.json").is_file())
        unknown = self.manage("POST", "/oauth-callback", {"provider": "codex", "code": "abc", "state": state})
        self.assertEqual((unknown.status, unknown.json()), (404, {"error": "unknown or expired state"}))
        denied = self.start_login("/codex-auth-url")
        self.manage("POST", "/oauth-callback", {"provider": "codex", "state": denied, "error": "access_denied"})
        self.assertEqual(self.auth_status(denied), {"status": "error", "error": "Bad Request"})

    def test_oauth_fail_marks_error(self) -> None:
        state = self.start_login("/codex-auth-url")
        fail_oauth(self.url, state)
        failed = {"status": "error", "error": "Token exchange failed with status 400"}
        self.assertEqual(self.auth_status(state), failed)
        self.assertNotIn(state, pending_oauth(self.url))


class OpenServerTest(TempDirCase):
    """No port, no api-keys and no secret-key in the config."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = cls.make_temp_dir()
        cls.auth_dir = cls.dir / "not-yet" / "auths"
        cls.proxy = start_cliproxy(write_config(cls.dir / "config.yaml", cls.auth_dir))
        cls.addClassCleanup(cls.proxy.stop)

    def test_binds_a_random_port_and_prints_it(self) -> None:
        self.assertGreater(self.proxy.port, 0)
        self.assertIn(f"API server started successfully on: 127.0.0.1:{self.proxy.port}", self.proxy.output())
        self.assertEqual(self.proxy.output().splitlines()[0], BANNER)

    def test_empty_api_keys_means_open_access(self) -> None:
        self.assertEqual(call("GET", self.proxy.base_url + "/v1/models").status, 200)

    def test_auth_dir_is_created(self) -> None:
        self.assertTrue(self.auth_dir.is_dir())

    def test_sigterm_exits_zero(self) -> None:
        proxy = start_cliproxy(write_config(self.dir / "second.yaml", self.auth_dir))
        self.addCleanup(proxy.stop)
        self.assertEqual(proxy.stop(), 0)


class RestartTest(TempDirCase):
    def test_a_restart_reads_the_hashed_secret_and_accepts_the_plaintext(self) -> None:
        directory = self.make_temp_dir()
        config = write_config(directory / "config.yaml", directory / "auths", secret=SECRET)
        for _ in range(2):
            with start_cliproxy(config) as proxy:
                reply = call("GET", f"{proxy.base_url}/v0/management/api-keys", headers={"X-Management-Key": SECRET})
                self.assertEqual(reply.status, 200)
            self.assertNotIn(SECRET, config.read_text())


class EnvironmentControlTest(TempDirCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = cls.make_temp_dir()
        config = write_config(cls.dir / "config.yaml", cls.dir / "auths", secret=SECRET)
        env = {"CLIPROXY_STANDIN_NO_GITHUB_AUTH_URL": "1", "CLIPROXY_STANDIN_OAUTH_TIMEOUT": "0.5"}
        cls.proxy = start_cliproxy(config, env=env)
        cls.addClassCleanup(cls.proxy.stop)

    def manage(self, method: str, path: str, body: Any = None) -> Reply:
        return call(method, f"{self.proxy.base_url}/v0/management{path}", body, {"X-Management-Key": SECRET})

    def test_github_auth_url_can_be_switched_off(self) -> None:
        self.assertEqual(self.manage("GET", "/github-auth-url").status, 404)

    def test_pending_login_times_out(self) -> None:
        state = self.manage("GET", "/codex-auth-url").json()["state"]
        timed_out = {"status": "error", "error": "Timeout waiting for OAuth callback"}
        status = f"/get-auth-status?state={state}"
        wait_until(lambda: self.manage("GET", status).json() == timed_out, "the login to time out")
        self.assertEqual(self.manage("POST", "/oauth-callback", {"code": "x", "state": state}).status, 404)


class ReleaseArchiveTest(TempDirCase):
    """(Each line's archive names and contents: test_standin_lines.py.)"""

    def test_checksums_file_is_goreleaser_format(self) -> None:
        directory = self.make_temp_dir()
        platforms = (("windows", "arm64"), ("linux", "arm64"))
        archives = [build_release_archive(directory, "6.9.28-0", os_name, arch) for os_name, arch in platforms]
        lines = write_checksums(directory, archives).read_text().splitlines()
        self.assertEqual([line.split("  ")[1] for line in lines], sorted(archive.name for archive in archives))
        self.assertTrue(all(len(line.split("  ")[0]) == 64 for line in lines))


if __name__ == "__main__":
    unittest.main()
