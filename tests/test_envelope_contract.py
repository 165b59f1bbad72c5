"""The contract of the JSON envelope of every command, pinned before the architecture refactor (issue #14).

Every command the front ends offer runs here with `--json`, and its envelope is checked against
tests/fixtures/envelope_contract.json: the top-level keys (schema, command, ok, data, errors, warnings), schema 1,
the `command` string, `ok` and the exit code, and the SHAPE of `data` and `errors`: the keys of every dict
(recursively; for a list, the shape of its items) and the JSON type of every leaf. Values are not pinned, only
their shape: a field that may be null or a number depending on timing is pinned as the union `float|null`.

A pinned shape is a type name (`str`, `int`, `float`, `bool`, `null`, a union like `int|null`, or `any`), a dict
of shapes (exactly these keys), a list `[item shape]` (`[]`: only ever seen empty), or `{"$or": [shapes]}` (items
of one list, or values of one field, that take several forms). An event's `detail` (free-form per event type) is
pinned as `dict`. `LLM_ROUTER_RECORD_ENVELOPES=1` merges what a run
sees into the fixture instead of checking it (for a deliberate change of the contract; review the diff).

One class-level sandbox (the CLIProxyAPIPlus stand-in and the real LiteLLM) serves every command that needs a
running stack; `demo` and `smoke --standin` bring up their own; the rest runs on a temporary repo. A handful of
commands also run through the invoke tasks, which must give the same envelope as `llm-router`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from tests.support import REPO, STACK_CONFIG, TempRepo, inv, patched_env, run_cli, serve_github

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "envelope_contract.json"
RECORD = os.environ.get("LLM_ROUTER_RECORD_ENVELOPES") == "1"
TOP_KEYS = ["schema", "command", "ok", "data", "errors", "warnings"]
LEAVES = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str"}
NO_ENV = {"STARTUP_TIMEOUT": None, "PROFILE": None, "LLM_ROUTER_CONFIG": None}
_recorded: dict[str, dict] = {}


# --------------------------------------------------------------------------- shapes

def shape(value):
    """The shape of a JSON value: the keys of every dict, one merged item shape per list, a type name per leaf."""
    if isinstance(value, dict):
        return {key: "dict" if key == "detail" and isinstance(item, dict) else shape(item)
                for key, item in sorted(value.items())}
    if isinstance(value, list):
        merged = None
        for item in value:
            merged = shape(item) if merged is None else merge(merged, shape(item))
        return [] if merged is None else [merged]
    return LEAVES[type(value)]


def _alternatives(pinned) -> list:
    return list(pinned["$or"]) if isinstance(pinned, dict) and "$or" in pinned else [pinned]


def _kind(pinned) -> str:
    return "leaf" if isinstance(pinned, str) else "list" if isinstance(pinned, list) else "dict"


def merge(a, b):
    """One shape that both `a` and `b` conform to (leaf types become unions, lists merge their item shapes,
    dicts with the same keys merge per key, anything else becomes an `$or`)."""
    result = _alternatives(a)
    for alt in _alternatives(b):
        for i, have in enumerate(result):
            if _kind(have) != _kind(alt):
                continue
            if isinstance(have, str):
                result[i] = "|".join(sorted(set(have.split("|")) | set(alt.split("|"))))
            elif isinstance(have, list):
                result[i] = have or alt if not (have and alt) else [merge(have[0], alt[0])]
            elif set(have) == set(alt):
                result[i] = {key: merge(have[key], alt[key]) for key in sorted(have)}
            else:
                continue
            break
        else:
            result.append(alt)
    return result[0] if len(result) == 1 else {"$or": result}


def conforms(value, pinned, path: str = "data") -> list[str]:
    """Every way in which `value` departs from the pinned shape (empty: it conforms)."""
    alts = _alternatives(pinned)
    leaves = {t for alt in alts if isinstance(alt, str) for t in alt.split("|")}
    if "any" in leaves:
        return []
    if isinstance(value, dict):
        if "dict" in leaves:
            return []
        dicts = [alt for alt in alts if isinstance(alt, dict)]
        same = [alt for alt in dicts if set(alt) == set(value)]
        if not same:
            if not dicts:
                return [f"{path}: a dict, pinned as {pinned}"]
            return [f"{path}: keys {sorted(value)}, pinned " + " or ".join(str(sorted(d)) for d in dicts)]
        return [p for key in sorted(value) for p in conforms(value[key], same[0][key], f"{path}.{key}")]
    if isinstance(value, list):
        if "list" in leaves:
            return []
        lists = [alt for alt in alts if isinstance(alt, list)]
        if not lists:
            return [f"{path}: a list, pinned as {pinned}"]
        if value and not lists[0]:
            return [f"{path}: a list of {len(value)} item(s), pinned as only ever empty"]
        return [p for i, item in enumerate(value) for p in conforms(item, lists[0][0], f"{path}[{i}]")][:20]
    if LEAVES[type(value)] not in leaves:
        return [f"{path}: a {LEAVES[type(value)]} ({value!r:.60}), pinned as {pinned}"]
    return []


def _load_fixture() -> dict:
    return json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {"cases": {}}


def tearDownModule():  # noqa: N802 - unittest's name
    if RECORD and _recorded:
        fixture = _load_fixture()
        for name, entry in _recorded.items():
            old = fixture["cases"].get(name)
            if old and old.get("exit_code") == entry["exit_code"]:
                for part in ("data", "errors"):
                    entry[part] = merge(old[part], entry[part])
            fixture["cases"][name] = entry
        fixture["cases"] = dict(sorted(fixture["cases"].items()))
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")


def command_paths() -> set[str]:
    """Every leaf command of `llm-router` (`config check`, `auth codex login`, `cooldown reset`, `up`, ...)."""
    from llm_router.cli import build_parser

    found = set()

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.add(" ".join(prefix))
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, [*prefix, name])

    walk(build_parser(), [])
    return found


# --------------------------------------------------------------------------- the contract check

class ContractCase(unittest.TestCase):
    config_path: Path
    fixture = _load_fixture()

    def envelope(self, case: str, *argv: str, env: dict | None = None) -> dict:
        """Run `llm-router --json --config CONFIG ARGV` in-process and check its envelope against the pin."""
        with mock.patch.dict(os.environ, {}):
            code, out, err = run_cli("--json", "--config", str(self.config_path), *argv, env={**NO_ENV, **(env or {})})
        return self.check(case, list(argv), code, out, err)

    def check(self, case: str, argv: list[str], code: int, out: str, err: str) -> dict:
        self.assertNotIn("Traceback", err)
        try:
            envelope = json.loads(out)
        except ValueError:
            self.fail(f"{case}: stdout is not one JSON envelope (exit {code}):\n{out[:2000]}\n{err[-2000:]}")
        self.assertEqual(list(envelope), TOP_KEYS, case)
        self.assertEqual(envelope["schema"], 1, case)
        self.assertIsInstance(envelope["command"], str, case)
        self.assertIsInstance(envelope["ok"], bool, case)
        self.assertIsInstance(envelope["errors"], list, case)
        self.assertIsInstance(envelope["warnings"], list, case)
        self.assertTrue(all(isinstance(w, str) for w in envelope["warnings"]), case)
        self.assertEqual(envelope["ok"], code == 0, f"{case}: ok {envelope['ok']} with exit code {code}")
        if envelope["errors"]:  # the error envelope: no data, and the exit code is the error's
            self.assertIsNone(envelope["data"], case)
            self.assertEqual(code, envelope["errors"][0]["exit_code"], case)
        entry = {"argv": ["PATH" if os.sep in a else a for a in argv], "command": envelope["command"],
                 "ok": envelope["ok"],
                 "exit_code": code, "data": shape(envelope["data"]), "errors": shape(envelope["errors"])}
        if RECORD:
            _recorded[case] = entry if case not in _recorded else {
                **entry, "data": merge(_recorded[case]["data"], entry["data"]),
                "errors": merge(_recorded[case]["errors"], entry["errors"])}
            return envelope
        pinned = self.fixture["cases"].get(case)
        self.assertIsNotNone(pinned, f"{case} is not pinned in {FIXTURE.name}")
        detail = f"{case}: {json.dumps(envelope)[:3000]}\n{err[-1500:]}"
        self.assertEqual((envelope["command"], envelope["ok"], code),
                         (pinned["command"], pinned["ok"], pinned["exit_code"]), detail)
        problems = conforms(envelope["data"], pinned["data"]) + conforms(envelope["errors"], pinned["errors"],
                                                                         "errors")
        self.assertEqual(problems, [], detail)
        return envelope

    def run_cases(self, cases: list[tuple], env: dict | None = None) -> dict[str, dict]:
        """`(case name, argv...)` tuples, each in a subTest; returns the envelopes by case name."""
        seen = {}
        for case, *argv in cases:
            with self.subTest(case):
                seen[case] = self.envelope(case, *argv, env=env)
        return seen

    def same_through_invoke(self, case: str, *task_argv: str) -> None:
        """`inv TASK --json` gives the envelope pinned for `case` (the argparse front end's)."""
        with self.subTest(f"inv {' '.join(task_argv)}"), patched_env({**NO_ENV,
                                                                      "LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv(*task_argv, "--json")
            if RECORD:
                return
            self.check(case, [], code, out, err)


# --------------------------------------------------------------------------- without a running stack

class CoverageTest(unittest.TestCase):
    def test_every_command_of_the_parser_is_pinned(self):
        if RECORD:
            self.skipTest("recording")
        pinned = [" ".join(a for a in entry["argv"] if not a.startswith("-"))
                  for entry in _load_fixture()["cases"].values()]
        missing = sorted(path for path in command_paths()
                         if not any(f"{argv} ".startswith(f"{path} ") for argv in pinned))
        self.assertEqual(missing, [], "commands without a pinned envelope")

    def test_shape_and_conforms(self):
        value = {"a": [{"x": 1}, {"x": None}, {"y": "s"}], "b": [], "c": 1.5}
        pinned = shape(value)
        self.assertEqual(pinned, {"a": [{"$or": [{"x": "int|null"}, {"y": "str"}]}], "b": [], "c": "float"})
        self.assertEqual(conforms(value, pinned), [])
        self.assertEqual(conforms({"a": [], "b": [], "c": 2.0}, pinned), [])
        self.assertEqual(len(conforms({"a": [{"z": 1}], "b": [1], "c": "x", "d": 1}, pinned)), 1)  # keys differ
        self.assertEqual(len(conforms({"a": [{"z": 1}], "b": [1], "c": "x"}, pinned)), 3)


class OfflineContractTest(ContractCase, TempRepo):
    """A repo with CLIProxyAPIPlus and LiteLLM on free ports, nothing running, no binary installed."""

    def setUp(self):
        super().setUp()
        from llm_router.standin.process import free_port

        self.write_config(STACK_CONFIG.format(cliproxy_port=free_port(), litellm_port=free_port()))
        self.home = self.root / "home"
        self.home.mkdir()
        self.env = {"HOME": str(self.home), "CODEX_HOME": str(self.home / ".codex"), "CLAUDE_CONFIG_DIR": None,
                    "LLM_USER_PATH": None, "XDG_CONFIG_HOME": None, "LITELLM_MASTER_KEY": None}

    def test_config(self):
        self.run_cases([("config check", "config", "check"), ("config show", "config", "show"),
                        ("config migrate (current)", "config", "migrate")])
        from tests.test_config import LEGACY

        self.write_config(LEGACY)
        self.run_cases([("config check (legacy)", "config", "check"),
                        ("config migrate (legacy)", "config", "migrate"),
                        ("config migrate --write", "config", "migrate", "--write")])
        self.config_path = self.root / "missing.yaml"
        self.run_cases([("config check (missing file)", "config", "check")])

    def test_services_not_running(self):
        unit_dir = str(self.root / "units")
        self.run_cases([
            ("status (stopped)", "status"), ("service status (stopped)", "service", "status"),
            ("health (stopped)", "health"), ("service stop (stopped)", "service", "stop"),
            ("down (stopped)", "down"), ("service logs (no log)", "service", "logs", "litellm"),
            ("service start (unknown name)", "service", "start", "nosuch"),
            ("service restart (unknown name)", "service", "restart", "nosuch"),
            ("service watch (bad interval)", "service", "watch", "--interval", "0"),
            ("service install", "service", "install", "--systemd", "--unit-dir", unit_dir),
            ("service uninstall", "service", "uninstall", "--systemd", "--unit-dir", unit_dir),
            ("cooldown reset (stopped)", "cooldown", "reset", "--all"),
            ("cooldown reset (no target)", "cooldown", "reset"),
        ])
        from llm_router import config as config_mod
        from llm_router.standin.cliproxy import install_fake_binary

        install_fake_binary(config_mod.load(self.config_path).layout.cliproxy_binary)  # else `up` downloads it
        self.run_cases([("up (unknown profile)", "up", "--profile", "nosuch")])

    def test_checks(self):
        self.run_cases([("check security", "check", "security"), ("check doctor", "check", "doctor"),
                        ("doctor", "doctor"), ("smoke (doctor fails)", "smoke"),
                        ("check smoke (doctor fails)", "check", "smoke")])

    def test_bootstrap_without_a_binary(self):
        self.run_cases([("bootstrap status (not installed)", "bootstrap", "status"),
                        ("bootstrap rollback (no previous)", "bootstrap", "rollback"),
                        ("bootstrap download (bad options)", "bootstrap", "download", "--checksums", "x")])

    def test_auth(self):
        from tests.test_auth import codex_cli_auth

        source = self.root / "codex-auth.json"
        source.write_text(json.dumps(codex_cli_auth()))
        self.run_cases([
            ("auth status (no accounts)", "auth", "status"),
            ("auth codex import-headless", "auth", "codex", "import-headless", "--source", str(source)),
            ("auth status", "auth", "status"),
            ("auth codex import-headless (missing source)", "auth", "codex", "import-headless", "--source",
             str(self.root / "none.json")),
            ("auth codex login (bad timeout)", "auth", "codex", "login", "--timeout", "0", "--no-browser"),
            ("auth copilot login (bad timeout)", "auth", "copilot", "login", "--timeout", "0"),
        ], env=self.env)

    def test_profiles(self):
        self.run_cases([
            ("profile list (none active)", "profile", "list"), ("profile show", "profile", "show"),
            ("profile diff", "profile", "diff", "balanced", "cost"),
            ("profile set (stopped)", "profile", "set", "balanced"),
            ("profile list", "profile", "list"),
            ("profile show (unknown)", "profile", "show", "nosuch"),
            ("profile set (unknown)", "profile", "set", "nosuch"),
            ("profile prove (unknown)", "profile", "prove", "nosuch"),
            ("events", "events", "-n", "5"), ("events (filtered, none)", "events", "--event", "nosuch"),
        ])

    def test_clients_usage_and_models(self):
        script = "import sys; sys.exit(3)"
        self.run_cases([
            ("connect openai (stopped)", "connect", "openai"), ("connect codex --env", "connect", "codex", "--env"),
            ("connect codex --write", "connect", "codex", "--write"),
            ("connect (unknown client)", "connect", "nosuch"),
            ("run (no master key)", "run", "openai", "--", sys.executable, "-c", script),
            ("run (unknown client)", "run", "nosuch", "--", "true"),
            ("usage (empty store)", "usage"), ("usage (bad --since)", "usage", "--since", "soon"),
            ("models (stopped)", "models"),
        ], env=self.env)
        self.run_cases([("run openai (exit 3)", "run", "openai", "--", sys.executable, "-c", script),
                        ("run openai", "run", "openai", "--", sys.executable, "-c", "pass")],
                       env={**self.env, "LITELLM_MASTER_KEY": "sk-contract-test-key"})

    def test_demo_without_litellm(self):
        with mock.patch("llm_router.litellm.runner.litellm_available", return_value=(False, None)):
            self.run_cases([("demo (no LiteLLM)", "demo")])

    def test_invoke_gives_the_same_envelopes(self):
        for case, *task in (("config check", "config.check"), ("config show", "config.show"),
                            ("profile list (none active)", "profile.list"), ("doctor", "check.doctor"),
                            ("bootstrap status (not installed)", "bootstrap.status"),
                            ("bootstrap rollback (no previous)", "bootstrap.rollback"),
                            ("status (stopped)", "service.status"), ("health (stopped)", "service.health"),
                            ("usage (empty store)", "usage.show"), ("models (stopped)", "usage.models"),
                            ("profile show (unknown)", "profile.show", "--name", "nosuch"),
                            ("events", "events.tail", "-n", "5")):
            self.same_through_invoke(case, *task)


class BootstrapContractTest(ContractCase, TempRepo):
    """bootstrap download/status/rollback against the local GitHub stand-in (as tests/test_bootstrap.py)."""

    def setUp(self):
        super().setUp()
        from llm_router import bootstrap
        from llm_router.standin.github import publish

        self.server = serve_github(self)
        assets = Path(tempfile.mkdtemp(prefix="llm-router-assets-"))
        self.addCleanup(shutil.rmtree, assets, True)
        self.repo_name = "router-for-me/CLIProxyAPIPlus"
        publish(self.server, self.repo_name, "6.9.27-0", assets, platforms=[("linux", "amd64")], latest=False)
        publish(self.server, self.repo_name, "6.9.28-0", assets, platforms=[("linux", "amd64")])
        for patch in (mock.patch.object(bootstrap, "BACKOFF", 0),
                      mock.patch.object(bootstrap, "platform_id", return_value=("linux", "amd64")),
                      mock.patch.dict(os.environ, {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1",
                                                   "GITHUB_TOKEN": ""})):
            patch.start()
            self.addCleanup(patch.stop)
        os.environ.pop("GITHUB_TOKEN", None)
        self.write_config(f"config_version: 2\nbootstrap:\n  cliproxy_repository: {self.repo_name}\n"
                          f"  cliproxy_version: v6.9.28-0\n  github_api_url: {self.server.url}\n")

    def test_download_status_rollback(self):
        self.run_cases([
            ("bootstrap download (old)", "bootstrap", "download", "--cliproxy-version", "v6.9.27-0"),
            ("bootstrap download", "bootstrap", "download"),
            ("bootstrap download (unchanged)", "bootstrap", "download"),
            ("bootstrap status", "bootstrap", "status"),
            ("bootstrap rollback", "bootstrap", "rollback"),
            ("bootstrap status (after rollback)", "bootstrap", "status"),
            ("bootstrap download (unknown release)", "bootstrap", "download", "--cliproxy-version", "v0.0.1-0"),
        ])
        self.same_through_invoke("bootstrap status (after rollback)", "bootstrap.status")


# --------------------------------------------------------------------------- against a running stack

def _litellm_installed() -> bool:
    from tests.litellm_support import litellm_installed

    return litellm_installed()


@unittest.skipUnless(_litellm_installed(), "LiteLLM not installed: uv sync --group runtime")
class RunningStackContractTest(ContractCase):
    """One sandbox for the class: the CLIProxyAPIPlus stand-in, the real LiteLLM (uvicorn), profile balanced, one
    chat request recorded in the usage store."""

    @classmethod
    def setUpClass(cls):
        import httpx

        from llm_router.config import MASTER_KEY_ENV
        from tests.litellm_support import class_sandbox

        super().setUpClass()
        cls.box = box = class_sandbox(cls, "llm-router-contract-", {"cliproxy": {"type": "cliproxyapi_plus"}},
                                      {"coder": [("cliproxy", "gpt-5-codex"), ("cliproxy", "claude-sonnet-4.5")]},
                                      "balanced")
        cls.config_path = box.config_path
        with httpx.Client(trust_env=False, timeout=120) as http:
            response = http.post(box.litellm_url + "/v1/chat/completions",
                                 json={"model": "coder", "messages": [{"role": "user", "content": "hi"}]},
                                 headers={"Authorization": f"Bearer {box.cfg.secret(MASTER_KEY_ENV)}"})
        assert response.status_code == 200, response.text[:500]
        cls.wait_for_the_usage_row()

    @classmethod
    def wait_for_the_usage_row(cls, timeout: float = 120.0) -> None:
        """The usage hook writes in the background: wait until the request is in the store."""
        import time

        from llm_router import usage

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(sqlite3.DatabaseError), usage.Reader(cls.box.cfg.layout.usage_dir) as reader:
                if reader.exists and reader.requests(0.0) and reader.workers():
                    return
            time.sleep(0.5)
        raise AssertionError(f"the request did not reach the usage store within {timeout:.0f} s")

    def test_read_only_commands(self):
        self.run_cases([
            ("status (running)", "status"), ("service status (running)", "service", "status"),
            ("health (running)", "health"), ("service start (running)", "service", "start"),
            ("up (running)", "up"), ("service logs (running)", "service", "logs", "cliproxyapi_plus", "-n", "3"),
            ("models (running)", "models"), ("models --quota (running)", "models", "--quota"),
            ("usage (one request)", "usage", "--since", "all"),
            ("usage --by model (one request)", "usage", "--by", "model"),
            ("auth status (running)", "auth", "status"), ("auth status --quota (running)", "auth", "status", "--quota"),
            ("connect openai (running)", "connect", "openai"), ("profile list (running)", "profile", "list"),
            ("profile prove", "profile", "prove", "balanced"),
            ("cooldown reset (unknown deployment)", "cooldown", "reset", "nosuch"),
            ("cooldown reset", "cooldown", "reset", "--all"),
            ("events (running)", "events", "-n", "50"),
        ])
        for case, *task in (("status (running)", "service.status"), ("health (running)", "service.health"),
                            ("models (running)", "usage.models")):
            self.same_through_invoke(case, *task)

    def test_restart_the_proxy(self):
        self.run_cases([("service restart (running)", "service", "restart", "cliproxyapi_plus")])


@unittest.skipUnless(_litellm_installed(), "LiteLLM not installed: uv sync --group runtime")
class ThrowawayStackContractTest(ContractCase, TempRepo):
    """`demo` and `smoke --standin`, each in the temporary stack it brings up and removes."""

    def test_demo(self):
        self.config_path = self.root / "unused.yaml"  # demo reads no config
        self.run_cases([("demo", "demo")])

    def test_smoke_standin(self):
        self.write_config((REPO / "config" / "examples" / "routertool.yaml").read_text())
        (self.root / "config" / "cliproxyapi.yaml").write_text("debug: false\n")
        self.run_cases([("smoke --standin", "smoke", "--standin")], env={"CUSTOM_API_KEY": None})


if __name__ == "__main__":
    unittest.main()
