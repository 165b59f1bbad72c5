"""`llm-router doctor`: each check, and the bad inputs of the issue (missing config, empty runtime, a port held by
a foreign process, a world-readable auth file, missing secrets). Doctor must write nothing and never print a
secret's value."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import unittest
from unittest import mock

import psutil

from llm_router import config as config_mod
from llm_router.checks import FAIL, OK, WARN, doctor
from llm_router.standin.cliproxy import install_fake_binary, write_codex_login, write_copilot_login
from llm_router.standin.process import free_port
from llm_router.supervisor import process
from tests.support import TempRepo, snapshot

SECRET_VALUE = "sk-doctor-test-" + "x7" * 12
CONFIG = """\
config_version: 2
services:
  cliproxyapi_plus: {{host: 127.0.0.1, port: {cliproxy_port}}}
  litellm: {{host: {litellm_host}, port: {litellm_port}}}
providers:
  cliproxy: {{type: cliproxyapi_plus}}
  custom: {{type: openai_compatible, api_base: "http://127.0.0.1:9/v1", api_key_env: DOCTOR_TEST_KEY}}
models:
  - name: coder
    deployments: [{{provider: cliproxy, model: gpt-5-codex}}, {{provider: custom, model: m}}]
  - name: sonnet
    deployments: [{{provider: cliproxy, model: claude-sonnet-4.5}}]
{extra}"""


class DoctorCase(TempRepo):
    def setUp(self):
        super().setUp()
        self.ports = {"cliproxy_port": free_port(), "litellm_port": free_port()}
        self.env = {"DOCTOR_TEST_KEY": SECRET_VALUE, "LITELLM_MASTER_KEY": None, "ROUTER_UPSTREAM_API_KEY": None}
        self.configure()

    def configure(self, extra: str = "", litellm_host: str = "127.0.0.1"):
        self.write_config(CONFIG.format(extra=extra, litellm_host=litellm_host, **self.ports))
        self.cfg = config_mod.load(self.config_path)

    def make_ready(self):
        """The binary, a Codex and a Copilot account (0600), and the provider key: nothing should fail."""
        install_fake_binary(self.cfg.layout.cliproxy_binary)
        for path in (write_codex_login(self.cfg.layout.auths_dir, "dev@example.com", "plus"),
                     write_copilot_login(self.cfg.layout.auths_dir, "octocat")):
            path.chmod(0o600)

    def doctor(self, env: dict | None = None) -> tuple[int, dict, str]:
        code, out, err = self.cli("doctor", "--json", env={**self.env, **(env or {})})
        envelope = json.loads(out)
        self.assertNotIn(SECRET_VALUE, out + err)
        return code, envelope, out + err

    def findings(self, envelope: dict, check: str) -> list[dict]:
        return [f for f in envelope["data"]["findings"] if f["check"] == check]

    def status_of(self, envelope: dict, check: str) -> set[str]:
        return {f["status"] for f in self.findings(envelope, check)}


class DoctorBadInputTest(DoctorCase):
    def test_missing_config(self):
        self.config_path.unlink()
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 1)
        config = self.findings(envelope, "config")
        self.assertEqual(config[0]["status"], FAIL)
        self.assertIn("config file not found", config[0]["detail"])
        self.assertIn("cp ", config[0]["fix"])
        self.assertIn("litellm-runtime", {f["check"] for f in envelope["data"]["findings"]})
        code, out, err = self.cli("doctor")
        self.assertEqual(code, 1)
        self.assertIn("FAIL    config", out)
        self.assertNotIn("Traceback", out + err)

    def test_invalid_config_lists_problems(self):
        self.write_config("config_version: 2\nservices: {litellm: {port: 0}}\n")
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 1)
        self.assertIn("services.litellm.port", self.findings(envelope, "config")[0]["detail"])

    def test_empty_runtime_fails_on_the_binary_and_writes_nothing(self):
        before = snapshot(self.root)
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 1)
        self.assertEqual(snapshot(self.root), before)
        self.assertFalse((self.root / ".router").exists())
        binary = self.findings(envelope, "cliproxy-binary")[0]
        self.assertEqual((binary["status"], binary["fix"]), (FAIL, "llm-router bootstrap download"))
        folders = self.findings(envelope, "runtime-folders")[0]
        self.assertEqual(folders["status"], OK)
        self.assertIn("created on first use", folders["detail"])
        self.assertEqual(self.status_of(envelope, "secrets"), {OK})
        self.assertIn("generated at first start", self.findings(envelope, "secrets")[0]["detail"])
        accounts = self.findings(envelope, "accounts")
        self.assertEqual({f["status"] for f in accounts}, {FAIL})
        self.assertTrue(all("auth" in f["fix"] for f in accounts))

    def test_port_held_by_a_foreign_process(self):
        self.make_ready()
        holder = subprocess.Popen([sys.executable, "-c", "import socket,sys,time; s=socket.socket(); "
                                   f"s.bind(('127.0.0.1', {self.ports['litellm_port']})); s.listen(); "
                                   "print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), b"ok")
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 1)
        failed = [f for f in self.findings(envelope, "ports") if f["status"] == FAIL]
        self.assertEqual(len(failed), 1)
        self.assertIn(f"port {self.ports['litellm_port']}", failed[0]["detail"])
        self.assertIn(f"pid {holder.pid}", failed[0]["detail"])
        self.assertIn("services.litellm.port", failed[0]["fix"])

    def test_world_readable_auth_file(self):
        self.make_ready()
        loose = write_codex_login(self.cfg.layout.auths_dir, "loose@example.com", "pro")  # 0644, like a first login
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 1)
        failed = [f for f in self.findings(envelope, "permissions") if f["status"] == FAIL]
        self.assertEqual([f["path"] for f in failed], [str(loose)])
        self.assertIn(f"chmod 600 {loose}", failed[0]["fix"])
        self.assertEqual(loose.stat().st_mode & 0o777, 0o644)  # reported, not repaired

    def test_missing_secrets(self):
        self.make_ready()
        code, envelope, _ = self.doctor(env={"DOCTOR_TEST_KEY": None})
        self.assertEqual(code, 1)
        failed = [f for f in self.findings(envelope, "secrets") if f["status"] == FAIL]
        self.assertEqual(len(failed), 1)
        self.assertIn("DOCTOR_TEST_KEY (provider custom) is not set", failed[0]["detail"])
        self.assertIn("export DOCTOR_TEST_KEY=", failed[0]["fix"])
        # a secret_files entry that points nowhere is named in the detail
        self.configure("secret_files: {DOCTOR_TEST_KEY: config/missing.key}\n")
        code, envelope, _ = self.doctor(env={"DOCTOR_TEST_KEY": None})
        failed = [f for f in self.findings(envelope, "secrets") if f["status"] == FAIL]
        self.assertIn("missing.key is missing or empty", failed[0]["detail"])
        # set: reported by source, never by value
        code, envelope, text = self.doctor()
        self.assertEqual(self.status_of(envelope, "secrets"), {OK})
        self.assertIn("DOCTOR_TEST_KEY (env)", self.findings(envelope, "secrets")[0]["detail"])


class DoctorChecksTest(DoctorCase):
    def test_ready_setup_passes_with_text_output(self):
        self.make_ready()
        code, envelope, _ = self.doctor()
        self.assertEqual(code, 0, [f for f in envelope["data"]["findings"] if f["status"] == FAIL])
        self.assertEqual(envelope["data"]["summary"]["fail"], 0)
        checks = {f["check"] for f in envelope["data"]["findings"]}
        for name in ("config", "runtime-folders", "cliproxy-binary", "litellm-runtime", "litellm-runner", "ports",
                     "stale-pids", "profile", "secrets", "permissions", "loopback", "oauth-callback-port",
                     "accounts", "disk-space"):
            self.assertIn(name, checks)
        accounts = " ".join(f["detail"] for f in self.findings(envelope, "accounts"))
        self.assertIn("codex: 1 usable: dev@example.com (expires in 9d", accounts)
        self.assertIn("github-copilot: 1 usable: octocat", accounts)
        code, out, err = self.cli("doctor", env=self.env)
        self.assertEqual(code, 0)
        self.assertRegex(out, r"doctor: ready: \d+ ok, \d+ warning\(s\), 0 failed")
        self.assertNotIn(SECRET_VALUE, out + err)

    def test_port_held_by_our_own_recorded_process_is_ok(self):
        from llm_router.supervisor import process

        launch_id = process.new_launch_id()
        holder = subprocess.Popen(
            [sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
             f"s.bind(('127.0.0.1', {self.ports['litellm_port']})); s.listen(); print('ok', flush=True); "
             "time.sleep(60)"], stdout=subprocess.PIPE, text=True, env={**os.environ, process.LAUNCH_ENV: launch_id})
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), "ok")
        proc = psutil.Process(holder.pid)
        process.ProcessRecord(service="litellm", pid=holder.pid, create_time=proc.create_time(),
                               cmdline=proc.cmdline(), port=self.ports["litellm_port"], started_at=time.time(),
                               log="-", launch_id=launch_id, boot_id=process.boot_id()).save(self.cfg.layout)
        found = doctor.check_ports(self.cfg)
        self.assertEqual({f.status for f in found}, {OK})
        self.assertIn(f"held by our own litellm (pid {holder.pid})", " ".join(f.detail for f in found))

    def test_stale_pid_file_is_reported_not_removed(self):
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        process.ProcessRecord(service="cliproxyapi_plus", pid=gone.pid, create_time=time.time() - 100,
                               cmdline=["x"], port=1, started_at=time.time(), log="-").save(self.cfg.layout)
        found = doctor.check_stale_pids(self.cfg)
        self.assertEqual([f.status for f in found], [WARN])
        self.assertIn(f"pid {gone.pid}", found[0].detail)
        self.assertEqual(found[0].fix, "llm-router status  (removes stale pid files)")
        self.assertTrue(self.cfg.layout.pid_file("cliproxyapi_plus").exists())
        self.cfg.layout.pid_file("litellm").write_text("{not json")
        self.assertEqual(len(doctor.check_stale_pids(self.cfg)), 2)

    def test_binary_checks(self):
        self.configure("bootstrap: {cliproxy_version: v6.9.28-0}\n")  # the default pin is "latest"
        binary = self.cfg.layout.cliproxy_binary
        install_fake_binary(binary, version="6.9.27-0")
        found = doctor.check_binary(self.cfg)
        self.assertEqual([f.status for f in found], [WARN, WARN])
        self.assertIn("6.9.27-0-plus is installed but v6.9.28-0 is pinned", found[0].detail)
        self.assertIn("no manifest.json", found[1].detail)
        install_fake_binary(binary)
        self.assertEqual(doctor.check_binary(self.cfg)[0].status, OK)
        binary.chmod(0o644)
        found = doctor.check_binary(self.cfg)
        self.assertEqual((found[0].status, found[0].fix), (FAIL, f"chmod 755 {binary}"))
        binary.write_text("#!/bin/sh\necho hello\n")
        binary.chmod(0o755)
        self.assertEqual(doctor.check_binary(self.cfg)[0].status, FAIL)  # no version banner

    def test_litellm_runtime_and_runner(self):
        found = doctor.check_litellm(self.cfg)
        self.assertEqual([f.status for f in found], [OK, OK])
        self.assertIn("not generated yet", found[1].detail)
        runner = self.cfg.layout.litellm_runner
        runner.parent.mkdir(parents=True)
        runner.write_text("#!/bin/sh\nexec /nonexistent/venv/bin/litellm \"$@\"\n")
        runner.chmod(0o755)
        found = doctor.check_litellm(self.cfg)[1]
        self.assertEqual(found.status, FAIL)
        self.assertIn("/nonexistent/venv/bin/litellm, which does not exist", found.detail)
        from llm_router.litellm.runner import ensure_litellm_runner

        ensure_litellm_runner(self.cfg.layout)
        self.assertEqual(doctor.check_litellm(self.cfg)[1].status, OK)
        with mock.patch("llm_router.litellm.runner.litellm_available", return_value=(False, None)):
            found = doctor.check_litellm(self.cfg)[0]
        self.assertEqual((found.status, found.fix), (FAIL, "uv sync --group runtime"))

    def test_loopback_and_remote_management(self):
        self.configure(litellm_host="0.0.0.0")
        found = doctor.check_exposure(self.cfg)
        self.assertEqual([f.status for f in found], [FAIL])
        self.assertIn("services.litellm.host is 0.0.0.0", found[0].detail)
        self.configure("  \n")
        user = self.root / "config" / "cliproxyapi.yaml"
        user.write_text("remote-management:\n  allow-remote: true\n")
        found = doctor.check_exposure(self.cfg)
        self.assertEqual([f.status for f in found], [WARN])
        user.write_text("debug: false\n")
        runtime = self.cfg.layout.cliproxy_runtime_config
        runtime.parent.mkdir(parents=True)
        runtime.write_text("host: 0.0.0.0\nremote-management: {allow-remote: true}\n")
        found = doctor.check_exposure(self.cfg)
        self.assertEqual([f.status for f in found], [FAIL])
        self.assertIn("service restart cliproxyapi_plus", found[0].fix)

    def test_codex_callback_port(self):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", doctor.CODEX_CALLBACK_PORT))
                sock.listen()
            except OSError:
                pass  # already held by something else: the check must warn either way
            found = doctor.check_callback_port(self.cfg)
        self.assertEqual([f.status for f in found], [WARN])
        self.assertIn("1455", found[0].detail)
        self.assertIn("auth codex", found[0].fix)

    def test_accounts(self):
        auths = self.cfg.layout.auths_dir
        found = doctor.check_accounts(self.cfg)
        self.assertEqual(len(found), 2)  # codex-or-copilot models, and the copilot-only model
        self.assertEqual({f.status for f in found}, {FAIL})
        codex = write_codex_login(auths, "old@example.com", "plus")
        data = json.loads(codex.read_text())
        data["expired"] = "2020-01-01T00:00:00Z"
        codex.write_text(json.dumps(data))
        codex.chmod(0o600)
        found = doctor.check_accounts(self.cfg)
        self.assertIn("expired", " ".join(f.detail for f in found if f.status == WARN))
        self.assertEqual(len([f for f in found if f.status == FAIL]), 2)  # an expired account is not usable
        write_copilot_login(auths, "octocat").chmod(0o600)
        found = doctor.check_accounts(self.cfg)
        self.assertNotIn(FAIL, {f.status for f in found})  # Copilot serves gpt-5-codex and claude-sonnet-4.5

    def test_accounts_not_needed_for_openai_compatibility_models(self):
        self.configure()
        (self.root / "config" / "cliproxyapi.yaml").write_text(
            "openai-compatibility:\n  - name: x\n    base-url: http://127.0.0.1:9/v1\n"
            "    models: [{name: gpt-5-codex}, {name: y, alias: claude-sonnet-4.5}]\n")
        found = doctor.check_accounts(self.cfg)
        self.assertEqual([f.status for f in found], [OK])

    def test_profile_checks(self):
        found, text = doctor.check_profile(self.cfg)
        self.assertEqual(found[0].status, OK)
        self.assertIn("model_list", text)
        self.configure("default_profile: nosuch\n")
        found, text = doctor.check_profile(self.cfg)
        self.assertEqual(found[0].status, FAIL)
        self.assertIn("unknown profile 'nosuch'", found[0].detail)
        self.assertIsNone(text)

    def test_runtime_folder_that_is_a_file(self):
        self.cfg.layout.state_dir.mkdir()
        self.cfg.layout.runtime_dir.write_text("oops")
        found = doctor.check_folders(self.cfg)
        self.assertEqual([f.status for f in found], [FAIL])
        self.assertIn("is a file, not a folder", found[0].detail)

    def test_disk_space(self):
        usage = mock.Mock(free=100 * 2**20)
        with mock.patch("shutil.disk_usage", return_value=usage):
            self.assertEqual(doctor.check_disk(self.cfg)[0].status, FAIL)
        usage.free = 700 * 2**20
        with mock.patch("shutil.disk_usage", return_value=usage):
            self.assertEqual(doctor.check_disk(self.cfg)[0].status, WARN)
        self.assertEqual(doctor.check_disk(self.cfg)[0].status, OK)

    def test_legacy_config_warns_with_the_migrate_command(self):
        text = self.config_path.read_text().replace("config_version: 2\n", "")
        self.config_path.write_text(text)
        code, envelope, _ = self.doctor()
        warned = [f for f in self.findings(envelope, "config") if f["status"] == WARN]
        self.assertEqual(warned[0]["fix"], "llm-router config migrate --write")

    def test_invoke_task(self):
        from tests.support import inv, patched_env

        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path), **self.env}):
            code, out, err = inv("check.doctor", "--json")
        self.assertEqual(code, 1)  # the binary is missing
        self.assertEqual(json.loads(out)["command"], "doctor")


if __name__ == "__main__":
    unittest.main()
