"""`llm-router connect` and `run` (unit level: no stack, fake client executables). The real clients against a
real stack are in test_integration_clients.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import unittest
from pathlib import Path

import yaml

from llm_router import config as config_mod
from llm_router import connect as lib
from llm_router.errors import USAGE, RouterError

from .support import REPO, TempRepo, inv, snapshot

KEY = "sk-unit-test-master-key-4242"
CONFIG = """\
config_version: 2
services:
  cliproxyapi_plus: {port: 18317}
  litellm: {host: 127.0.0.1, port: 14000}
providers:
  cliproxy: {type: cliproxyapi_plus}
models:
  - name: coder
    deployments: [{provider: cliproxy, model: gpt-5-codex}]
  - name: chat
    deployments: [{provider: cliproxy, model: gpt-5}]
"""


class ConnectCase(TempRepo):
    def setUp(self) -> None:
        super().setUp()
        self.write_config(CONFIG)
        self.home = self.root / "home"
        self.home.mkdir()
        self.env = {"HOME": str(self.home), "CODEX_HOME": None, "CLAUDE_CONFIG_DIR": None, "LLM_USER_PATH": None,
                    "XDG_CONFIG_HOME": None, "LITELLM_MASTER_KEY": None}
        self.key_file = self.root / ".router" / "secrets" / "LITELLM_MASTER_KEY"

    def generate_key(self) -> None:
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key_file.write_text(KEY + "\n")

    def connect(self, *argv: str, env: dict | None = None) -> tuple[int, str, str]:
        return self.cli("connect", *argv, env={**self.env, **(env or {})})


class PrintTest(ConnectCase):
    def test_every_client_prints_its_configuration_and_never_the_key(self):
        self.generate_key()
        for client in lib.CLIENTS:
            with self.subTest(client=client):
                code, out, err = self.connect(client)
                self.assertEqual(code, 0, err)
                self.assertNotIn(KEY, out + err)
                self.assertIn("http://127.0.0.1:14000", out)
                self.assertIn(str(self.key_file), out)

    def test_codex_block_parses_and_has_the_provider(self):
        code, out, _ = self.connect("codex", "--json")
        self.assertEqual(code, 0)
        data = json.loads(out)["data"]
        doc = tomllib.loads(data["files"][0]["text"])
        self.assertEqual(doc["model"], "coder")
        self.assertEqual(doc["model_provider"], "llm-router")
        self.assertEqual(doc["model_providers"]["llm-router"],
                         {"name": "llm-router", "base_url": "http://127.0.0.1:14000/v1",
                          "env_key": "LITELLM_MASTER_KEY", "wire_api": "responses"})
        self.assertEqual(doc["analytics"], {"enabled": False})
        self.assertEqual(data["files"][0]["path"], str(self.home / ".codex" / "config.toml"))

    def test_claude_env_has_no_v1_and_every_model_variable(self):
        code, out, _ = self.connect("claude", "--model", "chat", "--json")
        self.assertEqual(code, 0)
        env = {v["name"]: v["value"] for v in json.loads(out)["data"]["env"]}
        self.assertEqual(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:14000")
        for name in lib.CLAUDE_MODEL_VARS:
            self.assertEqual(env[name], "chat")
        self.assertEqual(env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1")
        self.assertEqual(env["DISABLE_AUTOUPDATER"], "1")
        self.assertIn("ANTHROPIC_AUTH_TOKEN", env)

    def test_env_output_evals_to_the_key(self):
        self.generate_key()
        for client, var in (("openai", "OPENAI_API_KEY"), ("claude", "ANTHROPIC_AUTH_TOKEN"),
                            ("aider", "OPENAI_API_KEY"), ("codex", "LITELLM_MASTER_KEY")):
            with self.subTest(client=client):
                code, out, _ = self.connect(client, "--env")
                self.assertEqual(code, 0)
                self.assertNotIn(KEY, out)
                shown = subprocess.run(["bash", "-c", f'eval "$1"; printf %s "${var}"', "_", out],
                                       capture_output=True, text=True, check=True).stdout
                self.assertEqual(shown, KEY)

    def test_key_from_the_environment_is_referenced_by_name(self):
        code, out, _ = self.connect("openai", "--env", env={"LITELLM_MASTER_KEY": KEY})
        self.assertEqual(code, 0)
        self.assertIn('export OPENAI_API_KEY="$LITELLM_MASTER_KEY"', out)
        self.assertNotIn(KEY, out)
        code, out, _ = self.connect("codex", "--env", env={"LITELLM_MASTER_KEY": KEY})
        self.assertEqual(out.strip(), "")  # Codex reads $LITELLM_MASTER_KEY itself

    def test_llm_entry(self):
        code, out, _ = self.connect("llm", "--json", env={"LLM_USER_PATH": str(self.root / "llmdir")})
        data = json.loads(out)["data"]
        self.assertEqual(yaml.safe_load(data["files"][0]["text"]),
                         [{"model_id": "coder", "model_name": "coder", "api_base": "http://127.0.0.1:14000/v1",
                           "api_key_name": "llm-router"}])
        self.assertEqual(data["files"][0]["path"], str(self.root / "llmdir" / "extra-openai-models.yaml"))

    def test_stopped_stack_still_prints_and_warns(self):
        code, out, err = self.connect("openai")
        self.assertEqual(code, 0)
        self.assertIn("OPENAI_BASE_URL", out)
        self.assertIn("the stack is not running", err)
        code, out, _ = self.connect("openai", "--json")
        self.assertTrue(any("not running" in w for w in json.loads(out)["warnings"]))

    def test_unknown_client_lists_the_known_ones(self):
        before = snapshot(self.root)
        code, out, err = self.connect("emacs")
        self.assertEqual(code, USAGE)
        self.assertIn("known clients: codex, claude, openai, llm, aider", err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(snapshot(self.root), before)

    def test_unknown_model(self):
        code, _, err = self.connect("codex", "--model", "gpt-9")
        self.assertEqual(code, USAGE)
        self.assertIn("coder, chat", err)

    def test_printing_writes_nothing(self):
        before = snapshot(self.root)
        for client in lib.CLIENTS:
            self.connect(client)
        self.assertEqual(snapshot(self.root), before)

    def test_invoke_task(self):
        code, out, _ = inv("connect.show", "--client", "openai", "--env")
        self.assertIn(code, (0, 2))  # the repo's own config may be missing; the task must exist and run


class WriteTest(ConnectCase):
    def codex_file(self) -> Path:
        return self.home / ".codex" / "config.toml"

    def test_codex_write_keeps_the_rest_and_backs_up(self):
        path = self.codex_file()
        path.parent.mkdir()
        original = textwrap.dedent("""\
            # mine
            model = "o3"
            approval_policy = "never"

            [features]
            web_search = true

            [model_providers.other]
            name = "other"
            base_url = "http://example.invalid/v1"
            """)
        path.write_text(original)
        code, out, err = self.connect("codex", "--write")
        self.assertEqual(code, 0, err)
        doc = tomllib.loads(path.read_text())
        self.assertEqual(doc["model"], "coder")
        self.assertEqual(doc["approval_policy"], "never")
        self.assertEqual(doc["features"], {"web_search": True, "plugins": False})
        self.assertEqual(doc["model_providers"]["other"]["name"], "other")
        self.assertEqual(doc["model_providers"]["llm-router"]["wire_api"], "responses")
        self.assertIn("# mine", path.read_text())
        backups = list(path.parent.glob("config.toml.bak-*"))
        self.assertEqual(len(backups), 1)
        self.assertEqual(backups[0].read_text(), original)
        # a second write changes nothing and makes no second backup
        code, out, _ = self.connect("codex", "--write")
        self.assertIn("nothing changed", out)
        self.assertEqual(len(list(path.parent.glob("config.toml.bak-*"))), 1)

    def test_codex_write_creates_the_file(self):
        code, out, err = self.connect("codex", "--write", "--model", "chat")
        self.assertEqual(code, 0, err)
        doc = tomllib.loads(self.codex_file().read_text())
        self.assertEqual(doc["model"], "chat")
        self.assertIn("created", out)

    def test_codex_home_is_honoured(self):
        home = self.root / "codexhome"
        code, _, err = self.connect("codex", "--write", env={"CODEX_HOME": str(home)})
        self.assertEqual(code, 0, err)
        self.assertTrue((home / "config.toml").is_file())

    def test_malformed_files_change_nothing_and_name_the_line(self):
        cases = [("codex", self.codex_file(), 'approval_policy = "never"\nmodel = \n', ":2:"),
                 ("claude", self.home / ".claude" / "settings.json", '{\n  "env": {\n    "A": 1,\n  }\n}\n', ":4:"),
                 ("llm", self.home / ".config" / "io.datasette.llm" / "extra-openai-models.yaml",
                  "- model_id: a\n  model_name: [b\n", ":")]
        for client, path, text, where in cases:
            with self.subTest(client=client):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                before = snapshot(path.parent)
                code, _, err = self.connect(client, "--write")
                self.assertEqual(code, USAGE)
                self.assertIn(f"{path}{where}", err)
                self.assertIn("nothing was changed", err)
                self.assertEqual(snapshot(path.parent), before)

    def test_unreadable_file(self):
        self.codex_file().mkdir(parents=True)  # a folder where the file should be: unreadable as a file
        code, _, err = self.connect("codex", "--write")
        self.assertEqual(code, USAGE)
        self.assertIn(f"cannot read {self.codex_file()}", err)

    def test_inline_table_is_refused(self):
        path = self.codex_file()
        path.parent.mkdir()
        path.write_text('model_providers = { llm-router = { name = "mine" } }\n')
        code, _, err = self.connect("codex", "--write")
        self.assertEqual(code, USAGE)
        self.assertIn("cannot add the llm-router settings safely", err)
        self.assertEqual(path.read_text(), 'model_providers = { llm-router = { name = "mine" } }\n')

    def test_claude_write_merges_env_and_uses_a_key_helper(self):
        self.generate_key()
        path = self.home / ".claude" / "settings.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"theme": "dark", "env": {"MINE": "1", "ANTHROPIC_AUTH_TOKEN": "old"}}))
        code, _, err = self.connect("claude", "--write")
        self.assertEqual(code, 0, err)
        data = json.loads(path.read_text())
        self.assertEqual(data["theme"], "dark")
        self.assertEqual(data["env"]["MINE"], "1")
        self.assertNotIn("ANTHROPIC_AUTH_TOKEN", data["env"])
        self.assertEqual(data["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:14000")
        self.assertNotIn(KEY, path.read_text())
        helper = subprocess.run(["sh", "-c", data["apiKeyHelper"]], capture_output=True, text=True).stdout
        self.assertEqual(helper.strip(), KEY)

    def test_llm_write_appends_and_replaces_our_entry(self):
        path = self.root / "llmdir" / "extra-openai-models.yaml"
        path.parent.mkdir()
        path.write_text("# mine\n- model_id: other\n  model_name: other\n")
        env = {"LLM_USER_PATH": str(path.parent)}
        self.assertEqual(self.connect("llm", "--write", env=env)[0], 0)
        self.assertIn("# mine", path.read_text())
        self.assertEqual([m["model_id"] for m in yaml.safe_load(path.read_text())], ["other", "coder"])
        self.assertEqual(self.connect("llm", "--write", "--model", "chat", env=env)[0], 0)
        self.assertEqual([m["model_id"] for m in yaml.safe_load(path.read_text())], ["other", "coder", "chat"])

    def test_env_only_clients_refuse_write(self):
        code, _, err = self.connect("openai", "--write")
        self.assertEqual(code, USAGE)
        self.assertIn("--env", err)


class TomlEditTest(unittest.TestCase):
    def test_quoted_header_and_existing_keys_are_replaced_in_place(self):
        text = '[model_providers."llm-router"]\nname = "old"\nrequest_max_retries = 2\n'
        cfg_path = Path("/x/config.toml")
        new, _ = lib.codex_toml(text, [("model_providers.llm-router", "name", "llm-router")], cfg_path)
        self.assertEqual(tomllib.loads(new)["model_providers"]["llm-router"],
                         {"name": "llm-router", "request_max_retries": 2})
        self.assertEqual(new.count("[model_providers"), 1)


FAKE_CLIENT = """\
import json, os, signal, sys, time
out = os.environ["FAKE_OUT"]
def done(signum, frame):
    open(out + ".signal", "w").write(str(signum)); sys.exit(7)
signal.signal(signal.SIGTERM, done)
json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
           if k.startswith(("ANTHROPIC", "OPENAI", "LITELLM", "CLAUDE"))}}, open(out, "w"))
if "--sleep" in sys.argv:
    open(out + ".ready", "w").write("1")
    time.sleep(60)
sys.exit(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 0)
"""


class RunTest(ConnectCase):
    def setUp(self) -> None:
        super().setUp()
        self.generate_key()
        self.bin = self.root / "bin"
        self.bin.mkdir()
        script = self.root / "fake_client.py"
        script.write_text(FAKE_CLIENT)
        for name in ("codex", "claude", "aider", "llm"):
            exe = self.bin / name
            exe.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
            exe.chmod(0o755)
        self.out = self.root / "fake.json"
        self.run_env = {"PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "FAKE_OUT": str(self.out)}

    def seen(self) -> dict:
        return json.loads(self.out.read_text())

    def test_exit_code_passes_through_and_codex_gets_overrides(self):
        code, out, err = self.cli("run", "codex", "--", "exec", "--json", "3", env={**self.env, **self.run_env})
        self.assertEqual(code, 3, err)
        self.assertEqual(out, "")  # `--json` after `--` is the client's, not ours
        seen = self.seen()
        self.assertEqual(seen["argv"][-3:], ["exec", "--json", "3"])
        self.assertIn('model_providers.llm-router.base_url="http://127.0.0.1:14000/v1"', seen["argv"])
        self.assertIn('model_provider="llm-router"', seen["argv"])
        self.assertEqual(seen["env"]["LITELLM_MASTER_KEY"], KEY)
        self.assertFalse((self.home / ".codex").exists())  # the user's config is not touched

    def test_claude_gets_its_environment(self):
        code, _, err = self.cli("run", "claude", "--model", "chat", "--", "-p", "hi",
                                env={**self.env, **self.run_env, "ANTHROPIC_API_KEY": "sk-ant-other"})
        self.assertEqual(code, 0, err)
        env = self.seen()["env"]
        self.assertEqual(env["ANTHROPIC_AUTH_TOKEN"], KEY)
        self.assertEqual(env["ANTHROPIC_MODEL"], "chat")
        self.assertEqual(env["ANTHROPIC_BASE_URL"], "http://127.0.0.1:14000")
        self.assertNotIn("ANTHROPIC_API_KEY", env)

    def test_openai_runs_any_command(self):
        code, _, err = self.cli("run", "openai", "--", sys.executable, str(self.root / "fake_client.py"), "5",
                                env={**self.env, **self.run_env})
        self.assertEqual(code, 5, err)
        self.assertEqual(self.seen()["env"]["OPENAI_BASE_URL"], "http://127.0.0.1:14000/v1")
        self.assertEqual(self.seen()["env"]["OPENAI_API_KEY"], KEY)

    def test_missing_executable(self):
        code, _, err = self.cli("run", "codex", "--", "exec", env={**self.env, "PATH": str(self.root / "none")})
        self.assertEqual(code, 4)
        self.assertIn("codex is not on PATH", err)

    def test_sigterm_is_forwarded_and_the_client_never_outlives_run(self):
        env = {**os.environ, **{k: v for k, v in self.env.items() if v is not None}, **self.run_env,
               "PYTHONPATH": str(REPO / "src")}
        env.pop("LITELLM_MASTER_KEY", None)
        proc = subprocess.Popen([sys.executable, "-m", "llm_router", "--config", str(self.config_path), "run",
                                 "codex", "--", "exec", "--sleep"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        deadline = time.monotonic() + 60
        while not Path(str(self.out) + ".ready").exists():
            self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
            self.assertLess(time.monotonic(), deadline, "the fake client never started")
            time.sleep(0.1)
        child_pid = self._child_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(60), 7)
        self.assertEqual(Path(str(self.out) + ".signal").read_text(), str(int(signal.SIGTERM)))
        self.assertFalse(_alive(child_pid))

    def _child_of(self, pid: int) -> int | None:
        import psutil

        children = psutil.Process(pid).children(recursive=True)
        return children[-1].pid if children else None


def _alive(pid: int | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ClientPinsTest(unittest.TestCase):
    def test_ci_installs_the_pins_the_tests_use(self):
        from .client_support import PINS

        ci = (REPO / ".ci" / "run").read_text()
        for package, version in PINS.values():
            self.assertIn(f'"{package}@{version}"', ci)


class LibraryTest(ConnectCase):
    def test_setup_is_typed_data(self):
        cfg = config_mod.load(self.config_path)
        s = lib.setup(cfg, "claude-code", environ={"HOME": str(self.home)}, home=self.home)
        self.assertIsInstance(s, lib.ClientSetup)
        self.assertEqual(s.client, "claude")
        self.assertIsInstance(s.endpoint.key, lib.KeyRef)
        with self.assertRaises(RouterError) as caught:
            lib.setup(cfg, "vim")
        self.assertEqual(caught.exception.exit_code, USAGE)


if __name__ == "__main__":
    unittest.main()
