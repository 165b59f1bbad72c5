"""services.redis and services.litellm.workers: config validation, the rendered redis.conf and LiteLLM settings,
a real redis-server launched through the supervisor (process identity, readiness by AUTH + PING), health, doctor
and the security check. No LiteLLM is started here (tests/test_integration_scale.py does that)."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import unittest

import psutil

from llm_router import config as config_mod
from llm_router import profiles, redis_service, stack
from llm_router.checks import doctor, security
from llm_router.commands import status as status_cmd
from llm_router.errors import CONFLICT, USAGE, RouterError
from llm_router.standin.process import free_port
from llm_router.supervisor import process
from tests.support import TempRepo

HAVE_REDIS = shutil.which("redis-server") is not None
BASE = """\
config_version: 2
services:
  cliproxyapi_plus: {{port: {cp}}}
  litellm: {{port: {ll}{litellm}}}
{redis}
providers:
  cliproxy: {{type: cliproxyapi_plus}}
models:
  - name: coder
    deployments: [{{provider: cliproxy, model: gpt-5-codex{limits}}}]
{extra}"""


class RedisRepo(TempRepo):
    def setUp(self):
        super().setUp()
        self.redis_port = free_port()

    def configure(self, redis: str = "", litellm: str = "", limits: str = "", extra: str = ""):
        self.config_path.write_text(BASE.format(cp=free_port(), ll=free_port(), redis=redis, litellm=litellm,
                                                limits=limits, extra=extra))
        return config_mod.load(self.config_path)

    def managed(self, more: str = "") -> config_mod.RouterConfig:
        return self.configure(f"  redis: {{enabled: true, port: {self.redis_port}{more}}}")


class ConfigTest(RedisRepo):
    def problems(self, **kw) -> list[str]:
        with self.assertRaises(RouterError) as caught:
            self.configure(**kw)
        self.assertEqual(caught.exception.exit_code, USAGE)
        return caught.exception.details

    def test_off_by_default_and_when_disabled(self):
        for redis in ("", "  redis: {enabled: false}"):
            cfg = self.configure(redis)
            self.assertIsNone(cfg.redis)
            self.assertNotIn("redis", cfg.services)
            self.assertNotIn("REDIS_PASSWORD", cfg.secret_names())
            self.assertEqual(stack.expand("all", cfg), ["cliproxyapi_plus", "litellm"])
        with self.assertRaises(RouterError) as caught:
            stack.expand("redis", cfg)
        self.assertIn("not enabled", caught.exception.message)
        self.assertIn("services.redis.enabled", caught.exception.hint)

    def test_managed(self):
        cfg = self.managed(", persistence: aof")
        self.assertTrue(cfg.redis.managed)
        self.assertEqual((cfg.redis.host, cfg.redis.port, cfg.redis.persistence), ("127.0.0.1", self.redis_port, "aof"))
        self.assertEqual(stack.expand("all", cfg), ["redis", "cliproxyapi_plus", "litellm"])
        self.assertIn("REDIS_PASSWORD", cfg.secret_names())
        self.assertEqual(cfg.warnings, ())

    def test_external_url(self):
        cfg = self.configure('  redis: {url: "rediss://cache.internal:6380/2"}')
        self.assertFalse(cfg.redis.managed)
        self.assertTrue(cfg.redis.tls)
        self.assertEqual((cfg.redis.host, cfg.redis.port), ("cache.internal", 6380))
        self.assertNotIn("redis", cfg.services)  # nothing for llm-router to run
        cfg = self.configure('  redis: {url: "redis://10.1.2.3:6379"}')
        self.assertTrue(any("unencrypted" in w for w in cfg.warnings), cfg.warnings)

    def test_non_loopback_host_warns(self):
        cfg = self.managed(", host: 0.0.0.0")
        self.assertTrue(any("reachable from other machines" in w for w in cfg.warnings), cfg.warnings)

    def test_every_problem_with_line_and_path(self):
        details = self.problems(redis='  redis: {enabled: "yes"}')
        self.assertEqual(details, ['line 5: services.redis.enabled: must be true or false, got "yes"'])
        details = self.problems(redis="  redis: {enabled: true, port: 70000, persistence: rdb, colour: red}",
                                litellm=", workers: 0")
        text = "\n".join(details)
        for expected in ("line 5: services.redis.colour: unknown key",
                         "line 5: services.redis.port: must be an integer between 1 and 65535, got 70000",
                         "line 5: services.redis.persistence: must be one of off, aof",
                         "line 4: services.litellm.workers: must be a whole number of workers between 1 and 16"):
            self.assertIn(expected, text)

    def test_url_with_a_password_is_refused_without_showing_it(self):
        details = self.problems(redis='  redis: {url: "redis://:hunter2secret@127.0.0.1:6379/0"}')
        self.assertEqual(len(details), 1)
        self.assertIn("services.redis.url: must not hold a user or password", details[0])
        self.assertNotIn("hunter2secret", details[0])
        details = self.problems(redis='  redis: {url: "http://127.0.0.1:6379", port: 1}')
        self.assertTrue(any("services.redis.url: must look like redis://" in d for d in details), details)
        self.assertTrue(any("services.redis.port: applies to the Redis llm-router runs" in d for d in details))

    def test_port_clash_with_litellm(self):
        self.config_path.write_text(BASE.format(cp=free_port(), ll=7001, litellm="", limits="", extra="",
                                                redis="  redis: {enabled: true, port: 7001}"))
        with self.assertRaises(RouterError) as caught:
            config_mod.load(self.config_path)
        self.assertIn("services.redis.port: port 7001 is already used by services.litellm", caught.exception.details[0])

    def test_workers_need_gunicorn_and_rpm_limits(self):
        details = self.problems(litellm=", mode: uvicorn, workers: 2")
        self.assertIn("services.litellm.workers: needs mode: gunicorn", details[0])
        cfg = self.configure(litellm=", workers: 3", limits=", rpm: 100, tpm: 5000")
        self.assertEqual(cfg.services["litellm"].workers, 3)
        self.assertEqual((cfg.models[0].deployments[0].rpm, cfg.models[0].deployments[0].tpm), (100, 5000))
        details = self.problems(limits=", rpm: 0")
        self.assertIn("models[0].deployments[0].rpm: must be a whole number of requests per minute", details[0])


class RenderTest(RedisRepo):
    def test_redis_conf_is_private_loopback_protected_and_password_only_in_the_file(self):
        cfg = self.managed()
        argv = redis_service.prepare_argv(cfg) if HAVE_REDIS else [None, str(redis_service.write_config(cfg))]
        secret = cfg.secret("REDIS_PASSWORD")
        self.assertTrue(secret and not secret.startswith("sk-"))
        path = cfg.layout.redis_config
        self.assertEqual(argv[1:], [str(path)])
        self.assertFalse(any(secret in a for a in argv if a))
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(cfg.layout.secret_file("REDIS_PASSWORD").stat().st_mode), 0o600)
        text = path.read_text()
        for line in ("bind 127.0.0.1", f"port {self.redis_port}", "protected-mode yes", f'requirepass "{secret}"',
                     "set-proc-title no", 'save ""', "appendonly no", "daemonize no"):
            self.assertIn(line + "\n", text)
        self.assertIn("appendonly yes\n", redis_service.render_config(self.managed(", persistence: aof"), "pw"))
        self.assertIn('requirepass "a\\"b\\\\c"', redis_service.render_config(cfg, 'a"b\\c'))

    def test_profiles_render_the_redis_settings_as_references(self):
        cfg = self.managed()
        os.environ["REDIS_PASSWORD"] = "pw-from-env-0123456789"
        self.addCleanup(os.environ.pop, "REDIS_PASSWORD", None)
        for name in ("balanced", "cost", "reliability"):
            text = profiles.render(cfg, name)
            self.assertIn('  redis_host: "127.0.0.1"\n', text)
            self.assertIn(f"  redis_port: {self.redis_port}\n", text)
            self.assertIn('  redis_password: "os.environ/REDIS_PASSWORD"\n', text)
            self.assertNotIn("pw-from-env", text)
            import yaml

            settings = yaml.safe_load(text)["router_settings"]  # the lines belong to the profile's block
            self.assertEqual(settings["redis_port"], self.redis_port)
            self.assertIn("cooldown_time", settings)
        cfg = self.configure('  redis: {url: "rediss://cache.internal:6380/2"}')
        text = profiles.render(cfg, "balanced")
        self.assertIn('  redis_host: "cache.internal"\n  redis_port: 6380\n', text)
        self.assertIn('  cache_kwargs: {"db": 2, "ssl": true}', text)
        self.assertNotIn("redis_url", text)
        self.assertNotIn("redis_", profiles.render(self.configure(), "balanced"))

    def test_deployment_rpm_is_rendered(self):
        cfg = self.configure(limits=", rpm: 42")
        text = profiles.render(cfg, "balanced")
        self.assertIn("      rpm: 42", text)
        self.assertNotIn("tpm:", text)


class StatusLinesTest(unittest.TestCase):
    def test_each_worker_has_a_line(self):
        st = stack.ServiceStatus(name="litellm", state=stack.RUNNING, host="127.0.0.1", port=4000, log="l",
                                    pid=10, uptime=5, rss_bytes=2 << 20, mode="gunicorn", workers=[
                                        {"pid": 11, "uptime": 4.0, "rss_bytes": 1 << 20, "serving": True},
                                        {"pid": 12, "uptime": 0.5, "rss_bytes": 1 << 20, "serving": False}])
        self.assertIn("workers 1/2 serving", status_cmd.status_line(st)[2])
        lines = status_cmd.worker_lines(st)
        self.assertEqual([line[:2] for line in lines], [["  worker 11", "SERVING"], ["  worker 12", "BOOTING"]])


class SecurityTest(RedisRepo):
    def findings(self, cfg):
        return [f for f in security.redis_findings(cfg) if f.status == "fail"]

    def test_exposed_host_plain_remote_url_and_a_tampered_conf(self):
        self.assertEqual(self.findings(self.managed()), [])
        self.assertEqual([f.check for f in self.findings(self.managed(", host: 0.0.0.0"))], ["redis-exposed"])
        self.assertEqual([f.check for f in self.findings(self.configure('  redis: {url: "redis://10.0.0.5:6379"}'))],
                         ["redis-exposed"])
        self.assertEqual(self.findings(self.configure('  redis: {url: "rediss://10.0.0.5:6379"}')), [])
        cfg = self.managed()
        redis_service.write_config(cfg)
        conf = cfg.layout.redis_config
        conf.write_text(conf.read_text().replace("bind 127.0.0.1", "bind 0.0.0.0").replace(
            "protected-mode yes", "protected-mode no"))
        found = self.findings(cfg)
        self.assertEqual(len(found), 1)
        self.assertIn("bind 0.0.0.0", found[0].detail)
        self.assertIn("protected-mode no", found[0].detail)
        self.assertNotIn(cfg.secret("REDIS_PASSWORD"), found[0].detail)

    def test_a_rendered_config_holding_the_password(self):
        cfg = self.managed()
        cfg.layout.litellm_dir.mkdir(parents=True)
        (cfg.layout.litellm_dir / "active.yaml").write_text("router_settings:\n  redis_password: hunter2\n")
        self.assertEqual([f.check for f in self.findings(cfg)], ["redis-password-in-config"])
        (cfg.layout.litellm_dir / "active.yaml").write_text(
            'router_settings:\n  redis_password: "os.environ/REDIS_PASSWORD"\n')
        self.assertEqual(self.findings(cfg), [])


class DoctorTest(RedisRepo):
    def test_external_redis_without_a_password(self):
        cfg = self.configure(f'  redis: {{url: "redis://127.0.0.1:{self.redis_port}"}}')
        found = {f.check: f for f in doctor.check_redis(cfg)}
        self.assertEqual(found["redis-password"].status, "fail")
        self.assertFalse(cfg.layout.secret_file("REDIS_PASSWORD").exists(), "doctor generates nothing")

    def test_managed_and_stopped(self):
        cfg = self.managed()
        found = {f.check: f for f in doctor.check_redis(cfg)}
        self.assertEqual(found["redis"].status, "ok")
        self.assertIn("not running", found["redis"].detail)
        self.assertEqual(doctor.check_redis(self.configure()), [])


@unittest.skipUnless(HAVE_REDIS, "redis-server is not installed (.ci/run installs Debian's redis-server)")
class ManagedRedisTest(RedisRepo):
    """A real redis-server started and stopped by the supervisor (about a second each)."""

    def setUp(self):
        super().setUp()
        self.cfg = self.managed()
        self.addCleanup(self._stop)

    def _stop(self):
        record, _ = process.read_record(self.cfg.layout, "redis")
        stack.stop(self.cfg, "redis")
        if record is not None and psutil.pid_exists(record.pid):
            with self.assertRaises(psutil.NoSuchProcess):
                proc = psutil.Process(record.pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    raise AssertionError(f"redis pid {record.pid} left running")
                raise psutil.NoSuchProcess(record.pid)

    def test_start_identity_readiness_health_stop(self):
        outcome = stack.start(self.cfg, "redis")[0]
        self.assertEqual(outcome.result, "started")
        record, _ = process.read_record(self.cfg.layout, "redis")
        self.assertTrue(record.launch_id and record.boot_id == process.boot_id())
        self.assertIsNotNone(process.owned_leader(record), "the launch marker survives (set-proc-title no)")
        self.assertTrue(process.listens_on(record, self.redis_port))
        secret = self.cfg.secret("REDIS_PASSWORD")
        self.assertFalse(any(secret in part for part in psutil.Process(record.pid).cmdline()))
        st = stack.status(self.cfg, "redis")[0]
        self.assertEqual(st.state, stack.RUNNING)
        self.assertRegex(st.version or "", r"^\d+\.\d+")
        self.assertEqual(stack.start(self.cfg, "redis")[0].result, "already running")
        health = stack.health_check(self.cfg, "redis")[0]
        self.assertTrue(health["ready"], health)
        self.assertEqual(redis_service.call("127.0.0.1", self.redis_port, secret, ("SET", "k", "v"), ("GET", "k")),
                         ["OK", "v"])
        wrong = redis_service.probe("127.0.0.1", self.redis_port, "not-the-password")
        self.assertFalse(wrong.ready)
        self.assertIn("refused", wrong.error)
        self.assertFalse(redis_service.probe("127.0.0.1", self.redis_port, None).ready, "a password always")
        found = {f.check: f for f in doctor.check_redis(self.cfg)}
        self.assertEqual(found["redis"].status, "ok")
        self.assertEqual(stack.stop(self.cfg, "redis")[0].result, "stopped")
        self.assertEqual(stack.status(self.cfg, "redis")[0].state, stack.STOPPED)
        self.assertFalse(stack.health_check(self.cfg, "redis")[0]["ready"])

    def test_a_busy_port_is_a_conflict(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", self.redis_port))
            sock.listen()
            with self.assertRaises(RouterError) as caught:
                stack.start(self.cfg, "redis")
        self.assertEqual(caught.exception.exit_code, CONFLICT)
        self.assertFalse(self.cfg.layout.pid_file("redis").exists())

    def test_stop_all_order_and_status_signals_nothing(self):
        stack.start(self.cfg, "redis")
        record, _ = process.read_record(self.cfg.layout, "redis")
        before = psutil.Process(record.pid).create_time()
        stack.status(self.cfg)
        stack.health_check(self.cfg)
        doctor.check_redis(self.cfg)
        self.assertEqual(psutil.Process(record.pid).create_time(), before)
        outcomes = stack.stop(self.cfg, "all")
        self.assertEqual([o.service for o in outcomes], ["litellm", "cliproxyapi_plus", "redis"])


if __name__ == "__main__":
    unittest.main()
