"""routertool.yaml: loading, defaults, validation of bad input, legacy migration, config commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
from unittest import mock

from llm_router import config as config_mod
from llm_router.errors import RouterError
from tests.support import REPO, TempRepo, run_cli, snapshot

VALID = """\
config_version: 2
runtime_dir: .router/runtime
default_profile: balanced
bootstrap:
  cliproxy_repository: router-for-me/CLIProxyAPIPlus
  cliproxy_version: v6.9.28-0
  github_api_url: https://api.github.com
services:
  cliproxyapi_plus: {host: 127.0.0.1, port: 8317, config_file: config/cliproxyapi.yaml, readiness_path: /v1/models, startup_timeout: 30}
  litellm: {host: 127.0.0.1, port: 4000, readiness_path: /health/readiness, startup_timeout: 90}
providers:
  cliproxy: {type: cliproxyapi_plus}
  custom: {type: openai_compatible, api_base: https://api.example.com/v1, api_key_env: CUSTOM_API_KEY, tier: paid}
models:
  - name: coder
    deployments: [{provider: cliproxy, model: gpt-5-codex}, {provider: custom, model: gpt-4.1}]
secret_files: {}
"""

# (case name, replacement of one line or whole text, dotted path expected in the message)
BAD = [
    ("port not an integer", ("port: 4000,", 'port: "40o0",'), 'services.litellm.port: must be an integer between 1 and 65535, got "40o0"'),
    ("port zero", ("port: 4000,", "port: 0,"), "services.litellm.port"),
    ("port too large", ("port: 8317,", "port: 70000,"), "services.cliproxyapi_plus.port"),
    ("port boolean", ("port: 4000,", "port: true,"), "services.litellm.port"),
    ("two services one port", ("port: 4000,", "port: 8317,"), "services.litellm.port: port 8317 is already used"),
    ("unknown top key", ("default_profile: balanced", "default_profile: balanced\ndefualt_profile: x"), "defualt_profile: unknown key; did you mean 'default_profile'?"),
    ("unknown service key", ("startup_timeout: 90}", "startup_timeout: 90, readines_path: /x}"), "services.litellm.readines_path: unknown key; did you mean 'readiness_path'?"),
    ("unknown service", ("services:\n", "services:\n  litelm: {port: 1}\n"), "services.litelm: unknown key; did you mean 'litellm'?"),
    ("unknown provider key", ("tier: paid}", "tier: paid, api_kye_env: X}"), "providers.custom.api_kye_env: unknown key"),
    ("bad provider type", ("type: openai_compatible,", "type: openai,"), "providers.custom.type: must be one of"),
    ("bad tier", ("tier: paid}", "tier: gold}"), "providers.custom.tier"),
    ("missing api_base", ("api_base: https://api.example.com/v1, ", ""), "providers.custom.api_base"),
    ("bad api_key_env", ("api_key_env: CUSTOM_API_KEY", "api_key_env: 'custom key'"), "providers.custom.api_key_env"),
    ("cliproxy with api_base", ("cliproxy: {type: cliproxyapi_plus}", "cliproxy: {type: cliproxyapi_plus, api_base: http://x}"), "providers.cliproxy.api_base"),
    ("deployment unknown provider", ("{provider: custom, model: gpt-4.1}", "{provider: custon, model: gpt-4.1}"), "models[0].deployments[1].provider: unknown provider \"custon\""),
    ("empty model group", ("deployments: [{provider: cliproxy, model: gpt-5-codex}, {provider: custom, model: gpt-4.1}]", "deployments: []"), "models[0].deployments: must be a non-empty list"),
    ("duplicate model name", ("secret_files: {}", "  - name: coder\n    deployments: [{provider: custom, model: x}]\nsecret_files: {}"), "models[1].name: duplicate model name 'coder'"),
    ("model without name", ("  - name: coder\n", "  - nam: coder\n"), "models[0].name"),
    ("models not a list", None, "models: must be a list"),
    ("deployment without model", ("{provider: custom, model: gpt-4.1}", "{provider: custom}"), "models[0].deployments[1].model"),
    ("unsupported version", ("config_version: 2", "config_version: 7"), "config_version: unsupported version 7; supported versions: 1, 2"),
    ("bad startup timeout", ("startup_timeout: 30}", "startup_timeout: -5}"), "services.cliproxyapi_plus.startup_timeout"),
    ("readiness path without slash", ("readiness_path: /health/readiness", "readiness_path: health"), "services.litellm.readiness_path"),
    ("bad repository", ("cliproxy_repository: router-for-me/CLIProxyAPIPlus", "cliproxy_repository: not a repo"), "bootstrap.cliproxy_repository"),
    ("bad version tag", ("cliproxy_version: v6.9.28-0", "cliproxy_version: newest"), "bootstrap.cliproxy_version"),
    ("bad github url", ("github_api_url: https://api.github.com", "github_api_url: ftp://x"), "bootstrap.github_api_url"),
    ("services not a mapping", ("services:\n", "services: [1]\nservicesx:\n"), "services: must be a mapping"),
    ("secret_files bad name", ("secret_files: {}", "secret_files: {'my key': /tmp/x}"), "secret_files.my key"),
    ("runtime_dir empty", ("runtime_dir: .router/runtime", "runtime_dir: ''"), "runtime_dir: must be a non-empty string"),
    ("legacy and new key together", ("secret_files: {}", "secret_files: {}\nsecrets: {}"), "secrets: legacy key given together with secret_files"),
    ("bad default profile", ("default_profile: balanced", "default_profile: 'my profile'"), "default_profile"),
    ("bad litellm mode", ("startup_timeout: 90}", "startup_timeout: 90, mode: threads}"), "services.litellm.mode: must be one of gunicorn, uvicorn"),
    ("max_rss_mb too small", ("startup_timeout: 90}", "startup_timeout: 90, max_rss_mb: 10}"), "services.litellm.max_rss_mb"),
    ("bad worker boot timeout", ("startup_timeout: 90}", "startup_timeout: 90, worker_boot_timeout: fast}"), "services.litellm.worker_boot_timeout"),
    ("litellm key on cliproxy", ("startup_timeout: 30}", "startup_timeout: 30, mode: gunicorn}"), "services.cliproxyapi_plus.mode: unknown key"),
]


def mutate(change) -> str:
    if change is None:
        return VALID.replace("models:\n  - name: coder\n    deployments: [{provider: cliproxy, model: gpt-5-codex}, "
                             "{provider: custom, model: gpt-4.1}]\n", "models: {coder: 1}\n")
    old, new = change
    assert old in VALID, old
    return VALID.replace(old, new, 1)


class ValidConfigTest(TempRepo):
    def test_example_config_is_valid(self):
        self.write_config()
        code, out, err = self.cli("config", "check")
        self.assertEqual(code, 0, err)
        self.assertIn("config OK", out)

    def test_defaults_fill_everything_optional(self):
        self.write_config("config_version: 2\n")
        cfg = config_mod.load(self.config_path)
        self.assertEqual(cfg.services["litellm"].port, 4000)
        self.assertEqual(cfg.services["litellm"].host, "127.0.0.1")
        self.assertEqual(cfg.services["cliproxyapi_plus"].readiness_path, "/v1/models")
        self.assertEqual(cfg.services["litellm"].health_path, "/v1/models")
        self.assertEqual(cfg.default_profile, "balanced")
        self.assertEqual(cfg.runtime_dir, self.root / ".router" / "runtime")
        self.assertEqual(cfg.layout.auths_dir, self.root / ".router" / "auths")
        self.assertEqual(cfg.layout.secrets_dir, self.root / ".router" / "secrets")

    def test_health_path_is_the_readiness_fallback(self):
        self.write_config("config_version: 2\nservices:\n  cliproxyapi_plus: {health_path: /healthz}\n")
        cfg = config_mod.load(self.config_path)
        self.assertEqual(cfg.services["cliproxyapi_plus"].readiness_path, "/healthz")

    def test_relative_paths_resolve_against_repo_root_not_cwd(self):
        self.write_config(VALID)
        elsewhere = self.root / "sub"
        elsewhere.mkdir()
        cfg = config_mod.load(self.config_path, cwd=elsewhere)
        self.assertEqual(cfg.runtime_dir, self.root / ".router" / "runtime")
        self.assertEqual(cfg.services["cliproxyapi_plus"].config_file, self.root / "config" / "cliproxyapi.yaml")

    def test_release_pins_of_every_line_are_accepted(self):
        # mainline, Plus 6.x and the Plus forks' `-plus` tags (reference §9); anything else stays refused
        for pin in ("v7.2.140", "7.2.140", "v6.9.28-0", "v7.1.5-0-plus", "v7.1.5-plus", "latest"):
            with self.subTest(pin=pin):
                self.write_config(VALID.replace("cliproxy_version: v6.9.28-0", f"cliproxy_version: {pin}", 1))
                self.assertEqual(config_mod.load(self.config_path).bootstrap.cliproxy_version, pin)
        for pin in ("v7.1.5-beta", "v7.1", "7.1.5-0-plus-plus", "v7.1.5-0-plus\n"):
            with self.subTest(pin=pin):
                self.write_config(VALID.replace("cliproxy_version: v6.9.28-0", f"cliproxy_version: {pin!r}", 1))
                with self.assertRaises(RouterError) as caught:
                    config_mod.load(self.config_path)
                self.assertIn("bootstrap.cliproxy_version", " ".join([caught.exception.message, *caught.exception.details]))

    def test_json_config_is_accepted(self):
        data = {"config_version": 2, "services": {"litellm": {"port": 4100}}}
        self.config_path.write_text(json.dumps(data))
        self.assertEqual(config_mod.load(self.config_path).services["litellm"].port, 4100)

    def test_config_path_from_environment(self):
        self.write_config(VALID)

        code, out, err = run_cli("config", "check", env={"LLM_ROUTER_CONFIG": str(self.config_path)})
        self.assertEqual(code, 0, err)
        self.assertIn(str(self.config_path), out)


class BadConfigTest(TempRepo):
    """Every bad input: exit code 2, the dotted path in the message, no traceback, nothing written."""

    def test_bad_inputs(self):
        self.assertGreaterEqual(len(BAD), 25)
        for name, change, expected in BAD:
            with self.subTest(name):
                self.write_config(mutate(change))
                before = snapshot(self.root)
                code, out, err = self.cli("config", "check")
                self.assertEqual(code, 2, f"{name}: {err}")
                self.assertIn(expected, err, name)
                self.assertNotIn("Traceback", err + out)
                self.assertTrue(err.startswith("error: "), err)
                self.assertEqual(snapshot(self.root), before, f"{name}: something was written")

    def test_every_problem_is_reported_at_once_with_lines(self):
        text = VALID.replace("port: 4000,", 'port: "40o0",').replace("tier: paid}", "tier: gold}")
        self.write_config(text)
        code, _, err = self.cli("config", "check")
        self.assertEqual(code, 2)
        self.assertIn("(2 problems)", err)
        self.assertIn("line 10: services.litellm.port", err)
        self.assertIn("line 13: providers.custom.tier", err)

    def test_yaml_syntax_error_names_file_and_line(self):
        self.write_config("config_version: 2\nservices:\n  litellm: {port: 4000\n")
        code, _, err = self.cli("config", "check")
        self.assertEqual(code, 2)
        self.assertIn(f"{self.config_path}:", err)
        self.assertIn("not valid YAML", err)

    def test_missing_file_says_which_path_and_how_to_create_it(self):
        code, _, err = self.cli("config", "check")
        self.assertEqual(code, 2)
        self.assertIn(f"config file not found: {self.config_path}", err)
        self.assertIn("cp ", err)
        self.assertIn("config/examples/routertool.yaml", err)

    def test_empty_and_non_mapping_files(self):
        for text in ("", "- a\n- b\n", "just a string\n"):
            with self.subTest(text=text):
                self.write_config(text)
                code, _, err = self.cli("config", "check")
                self.assertEqual(code, 2)
                self.assertNotIn("Traceback", err)

    def test_no_traceback_at_process_level(self):
        self.write_config(mutate(BAD[0][1]))
        proc = subprocess.run([sys.executable, "-m", "llm_router", "--config", str(self.config_path),
                               "config", "check"], capture_output=True, text=True, cwd=self.root,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        self.assertEqual(proc.returncode, 2)
        self.assertNotIn("Traceback", proc.stderr)
        self.assertEqual(proc.stdout, "")

    def test_usage_errors_exit_2(self):
        code, _, err = self.cli("config", "frobnicate")
        self.assertEqual(code, 2)
        self.assertIn("error:", err)

    def test_json_envelope_on_error(self):
        self.write_config(mutate(BAD[0][1]))
        code, out, _ = self.cli("--json", "config", "check")
        self.assertEqual(code, 2)
        envelope = json.loads(out)
        self.assertEqual(envelope["schema"], 1)
        self.assertFalse(envelope["ok"])
        self.assertEqual(envelope["errors"][0]["exit_code"], 2)


LEGACY = """\
# my old config
runtime_dir: .router/runtime
services:
  cliproxyapi:   # the proxy
    port: 8400
secrets:
  CUSTOM_API_KEY: secrets/custom.key
"""


class MigrationTest(TempRepo):
    def test_legacy_keys_are_read_with_warnings(self):
        self.write_config(LEGACY)
        cfg = config_mod.load(self.config_path)
        self.assertEqual(cfg.services["cliproxyapi_plus"].port, 8400)
        self.assertEqual(cfg.secret_files["CUSTOM_API_KEY"], self.root / "secrets" / "custom.key")
        joined = "\n".join(cfg.warnings)
        self.assertIn("'secrets' was read as 'secret_files'", joined)
        self.assertIn("'services.cliproxyapi' was read as 'services.cliproxyapi_plus'", joined)
        self.assertIn("config_version", joined)

    def test_check_prints_one_line_per_deprecation_and_keeps_the_file(self):
        self.write_config(LEGACY)
        before = self.config_path.read_text()
        code, _, err = self.cli("config", "check")
        self.assertEqual(code, 0, err)
        self.assertEqual(err.count("warning: deprecated key"), 2)
        self.assertEqual(self.config_path.read_text(), before)

    def test_migrate_write_keeps_comments_and_a_backup(self):
        self.write_config(LEGACY)
        code, out, err = self.cli("config", "migrate")
        self.assertEqual(code, 0, err)
        self.assertIn("secret_files:", out)
        self.assertEqual(self.config_path.read_text(), LEGACY)  # not written without --write
        code, out, err = self.cli("config", "migrate", "--write")
        self.assertEqual(code, 0, err)
        text = self.config_path.read_text()
        self.assertIn("# my old config", text)
        self.assertIn("cliproxyapi_plus:   # the proxy", text)
        self.assertTrue(text.startswith("config_version: 2\n"))
        backups = list(self.config_path.parent.glob("routertool.yaml.bak-*"))
        self.assertEqual(len(backups), 1)
        self.assertEqual(backups[0].read_text(), LEGACY)
        cfg = config_mod.load(self.config_path)
        self.assertEqual(cfg.warnings, ())
        code, out, _ = self.cli("config", "migrate", "--write")
        self.assertIn("nothing to migrate", out)

    def test_migrate_json_file(self):
        self.config_path.write_text(json.dumps({"secrets": {"A_KEY": "a"}}))
        code, _, err = self.cli("config", "migrate", "--write")
        self.assertEqual(code, 0, err)
        data = json.loads(self.config_path.read_text())
        self.assertEqual(data, {"config_version": 2, "secret_files": {"A_KEY": "a"}})


class ShowTest(TempRepo):
    def test_show_never_prints_secret_values(self):
        secret = "sk-test-very-secret-value-123"
        key_file = self.root / "custom.key"
        key_file.write_text("file-secret-value-456\n")
        self.write_config(VALID.replace("secret_files: {}", f"secret_files: {{ROUTER_UPSTREAM_API_KEY: {key_file}}}"))
        for argv in (("config", "show"), ("--json", "config", "show")):
            code, out, err = self.cli(*argv, env={"CUSTOM_API_KEY": secret})
            self.assertEqual(code, 0, err)
            self.assertNotIn(secret, out + err)
            self.assertNotIn("file-secret-value-456", out + err)
        data = json.loads(out)["data"]
        self.assertEqual(data["secrets"]["CUSTOM_API_KEY"], "<set>")
        self.assertEqual(data["secrets"]["ROUTER_UPSTREAM_API_KEY"], "<set>")
        self.assertEqual(data["secrets"]["LITELLM_MASTER_KEY"], "<missing>")

    def test_secret_lookup_order(self):
        key_file = self.root / "k"
        key_file.write_text("from-file\n")
        self.write_config(VALID.replace("secret_files: {}", f"secret_files: {{CUSTOM_API_KEY: {key_file}}}"))
        cfg = config_mod.load(self.config_path)
        self.assertEqual(cfg.secret("CUSTOM_API_KEY", environ={}), "from-file")
        self.assertEqual(cfg.secret("CUSTOM_API_KEY", environ={"CUSTOM_API_KEY": "from-env"}), "from-env")
        self.assertEqual(cfg.secret_source("CUSTOM_API_KEY", environ={}), "file")


class ParseCacheTest(TempRepo):
    """`service start` keeps the config's parse as JSON so that `status` need not import PyYAML; only the very same
    text reuses it."""

    def setUp(self):
        super().setUp()
        self.write_config(VALID)
        self.cfg = config_mod.load(self.config_path)
        self.cache = self.cfg.layout.parse_cache

    def load_without_yaml(self):
        with mock.patch.object(config_mod, "parse_text", side_effect=AssertionError("PyYAML was used")):
            return config_mod.load(self.config_path)

    def test_the_same_text_is_loaded_from_the_cache(self):
        self.assertTrue(config_mod.remember_parse(self.cfg))
        self.assertEqual((self.cache.stat().st_mode & 0o777, self.cache.parent.stat().st_mode & 0o777),
                         (0o600, 0o700))
        self.assertEqual(self.load_without_yaml(), self.cfg)

    def test_edited_text_is_parsed_again(self):
        config_mod.remember_parse(self.cfg)
        self.write_config(VALID.replace("port: 4000", "port: 4100"))
        self.assertEqual(config_mod.load(self.config_path).services["litellm"].port, 4100)
        with self.assertRaises(AssertionError):
            self.load_without_yaml()

    def test_a_damaged_cache_is_ignored(self):
        config_mod.remember_parse(self.cfg)
        for damage in ("{not json", "[]", '{"path": 1}', json.dumps({"path": str(self.config_path.resolve()),
                                                                      "text": VALID, "data": [], "lines": {}})):
            self.cache.write_text(damage)
            self.assertEqual(config_mod.load(self.config_path), self.cfg, damage)

    def test_what_json_cannot_give_back_is_not_cached(self):
        import datetime

        for data in ({"note": datetime.date(2026, 11, 26)}, {"ports": {4000: "litellm"}}):  # a date; an int key
            with mock.patch.object(config_mod, "parse_text", return_value=(data, {})):
                self.assertFalse(config_mod.remember_parse(self.cfg), data)
            self.assertFalse(self.cache.exists())

    def test_a_custom_runtime_dir_is_not_cached(self):
        self.write_config(VALID.replace("runtime_dir: .router/runtime", "runtime_dir: state/runtime"))
        cfg = config_mod.load(self.config_path)
        self.assertFalse(config_mod.remember_parse(cfg))
        self.assertFalse(self.cache.exists())
        self.assertFalse(cfg.layout.parse_cache.exists())

    def test_status_imports_neither_yaml_nor_jinja2_nor_requests(self):
        config_mod.remember_parse(self.cfg)
        probe = ("import sys, contextlib, io\nfrom llm_router import cli\n"
                 "with contextlib.redirect_stdout(io.StringIO()):\n"
                 f"    code = cli.main(['--config', {str(self.config_path)!r}, 'status'])\n"
                 "print(code, sorted(m for m in ('yaml', 'jinja2', 'requests') if m in sys.modules))")
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=self.root)
        self.assertEqual(done.stdout.strip(), "0 []", done.stderr)


if __name__ == "__main__":
    unittest.main()
