"""Hostile state and hostile environments (issue 13, items 4, 7 and 8): garbage in the event log, JWT claims no
real token carries, malformed release JSON, a `-h` probe that hangs or leaves children, a banner that names
another version, conflicting checksum lines, temp folders of a killed download, read-only folders and full disks.

Each case asserts the one-line message, the exit code and that nothing was lost or left behind: the installed
binary and manifests byte-identical, no temp files, no auth file half-written, no process left running. Every
process a test starts is its own and is stopped by its pid in a cleanup.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

import psutil

from llm_router import bootstrap, cli, events
from llm_router import config as config_mod
from llm_router.errors import AUTH, CHECK_FAILED, NOT_FOUND, UNAVAILABLE, USAGE, RouterError, from_os_error
from tests.support import TempRepo, inv, patched_env, snapshot
from tests.test_auth import NOW, codex_cli_auth, jwt
from tests.test_bootstrap import LINUX, NEW, OLD, REPO_NAME, GitHubCase, binary_entry, entry, tar_gz

BANNER = f"CLIProxyAPI Version: {NEW}-plus, Commit: abc1234, BuiltAt: 2026-04-17T00:00:00Z"


def one_line_error(test: unittest.TestCase, err: str) -> str:
    """The `error:` line of stderr (warnings and a hint may surround it); no traceback anywhere."""
    test.assertNotIn("Traceback", err)
    test.assertNotIn("unexpected", err)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    test.assertEqual(len(lines), 1, err)
    return lines[0]


def inv_in(test: TempRepo, *argv: str) -> tuple[int, str, str]:
    """`inv ARGV` on the test's config."""
    with patched_env({"LLM_ROUTER_CONFIG": str(test.config_path)}):
        return inv(*argv)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def refuse_open(path: Path, code: int):
    """os.open failing with `code` for `path` only (a read-only or full file system under the event log)."""
    real_open = os.open

    def refuse(name, *args, **kwargs):
        if str(name) == str(path):
            raise OSError(code, os.strerror(code), str(name))
        return real_open(name, *args, **kwargs)

    return mock.patch.object(os, "open", refuse)


def kill_if_alive(pid: int) -> None:
    """Cleanup for a process this test started (its pid came from a file the test's own script wrote)."""
    with contextlib.suppress(OSError):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the event log

class EventLogTest(TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config("config_version: 2\n")
        self.layout = config_mod.load(self.config_path).layout
        self.log = self.layout.events_log
        self.log.parent.mkdir(parents=True)
        events.take_warnings()

    GARBAGE = [
        '{"event": 5, "timestamp": "2026-01-01T00:00:00Z"}',
        '{"event": "x", "service": ["a"], "timestamp": "2026-01-01T00:00:00Z"}',
        '{"event": "x", "timestamp": {"nested": 1}}',
        '{"event": "x", "result": 3.5}',
        '{"event": null}',
        "[1, 2, 3]",
        '"just a string"',
        "null",
        "42",
        "{not json",
        "[" * 100000 + "]" * 100000,
        "\x00\x01binary",
    ]

    def write_lines(self) -> None:
        good = [events.record("service_start", service="litellm", result="ok", detail={"pid": 1}),
                events.record("profile_set", profile="balanced", result="ok", detail="a\nb")]
        lines = [json.dumps(good[0]), *self.GARBAGE, json.dumps(good[1]), ""]
        self.log.write_text("\n".join(lines) + "\n")

    def test_bad_lines_are_skipped_and_counted(self):
        self.write_lines()
        before = self.log.read_bytes()
        code, out, err = self.cli("events")
        self.assertEqual(code, 0, err)
        self.assertIn("service_start", out)
        self.assertIn("profile_set", out)
        self.assertIn(f"warning: skipped {len(self.GARBAGE)} unreadable line(s) in {self.log}", err)
        self.assertNotIn("Traceback", out + err)
        code, out, err = self.cli("events", "--json")
        self.assertEqual(code, 0, err)
        envelope = json.loads(out)
        self.assertEqual([e["event"] for e in envelope["data"]["events"]], ["service_start", "profile_set"])
        self.assertEqual(envelope["warnings"], [f"skipped {len(self.GARBAGE)} unreadable line(s) in {self.log}"])
        code, out, err = inv_in(self, "events")
        self.assertEqual(code, 0, err)
        self.assertIn("profile_set", out)
        self.assertEqual(self.log.read_bytes(), before, "reading changed the log")

    def test_follow_skips_them_too(self):
        import threading

        log = events.EventLog(self.log)
        self.write_lines()
        done = threading.Event()
        deadline = time.monotonic() + 60

        def writer():  # until the follower has seen one: it starts at the end of the file whenever it opens it
            while not done.wait(0.1):
                with self.log.open("a") as handle:
                    handle.write("\n".join(self.GARBAGE[:5]) + "\n" + json.dumps(events.record("late")) + "\n")

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(done.set)
        stream = log.follow(poll=0.01, stop=lambda: time.monotonic() > deadline)
        self.assertEqual(next(stream)["event"], "late")
        stream.close()

    def append_failing(self, code: int):
        return refuse_open(self.log, code)

    def test_append_never_raises_and_is_reported_once(self):
        log = events.EventLog(self.log)
        for code in (errno.EROFS, errno.ENOSPC, errno.EACCES):
            with self.subTest(errno.errorcode[code]), self.append_failing(code):
                entry = log.append("x", result="ok")
                log.append("x", result="ok")
                self.assertEqual(entry["event"], "x")
                self.assertEqual(events.take_warnings(),
                                 [f"event 'x' not recorded in {self.log}: {os.strerror(code)}"])
                self.assertEqual(events.take_warnings(), [])
        log.append("cyclic", detail=(cyclic := []).append(cyclic) or cyclic)  # not JSON-serialisable
        self.assertEqual(len(events.take_warnings()), 1)
        self.assertFalse(self.log.exists())

    def test_the_error_path_survives_a_read_only_log(self):
        """`bootstrap rollback` with nothing to roll back appends an error event: the error stays the error."""
        for code in (errno.EROFS, errno.ENOSPC):
            with self.subTest(errno.errorcode[code]), self.append_failing(code):
                rc, out, err = self.cli("bootstrap", "rollback")
                self.assertEqual(rc, NOT_FOUND, err)
                self.assertEqual(one_line_error(self, err), "error: no previous CLIProxyAPIPlus binary to roll back to")
                self.assertIn(f"warning: event 'bootstrap_rollback' not recorded in {self.log}: "
                              f"{os.strerror(code)}", err)
                rc, out, err = inv_in(self, "bootstrap.rollback")
                self.assertEqual(rc, NOT_FOUND, err)
                self.assertIn("warning: event 'bootstrap_rollback' not recorded", err)
                one_line_error(self, err)

    def test_real_file_system_failures_under_the_log(self):
        """No mock: the log is a folder (EISDIR), then the runtime folder is a file (ENOTDIR), which even root
        cannot write through."""
        self.log.mkdir()
        rc, out, err = self.cli("bootstrap", "rollback")
        self.assertEqual(rc, NOT_FOUND, err)
        one_line_error(self, err)
        self.assertIn(f"warning: event 'bootstrap_rollback' not recorded in {self.log}: Is a directory", err)
        self.log.rmdir()
        runtime = self.layout.runtime_dir
        runtime.rmdir()
        runtime.write_text("not a folder")
        for argv in (("bootstrap", "rollback"), ("events",), ("auth", "status")):
            with self.subTest(argv=argv):
                rc, out, err = self.cli(*argv)
                self.assertIn(rc, (0, NOT_FOUND, USAGE), err)
                self.assertNotIn("Traceback", out + err)
                self.assertNotIn("unexpected", err)
        self.assertEqual(runtime.read_text(), "not a folder")

    def test_a_finished_action_is_not_reported_as_failed(self):
        layout = self.layout
        layout.bin_dir.mkdir(parents=True)
        layout.cliproxy_binary.write_text("new")
        layout.cliproxy_previous_binary.write_text("old")
        with self.append_failing(errno.EROFS):
            rc, out, err = self.cli("bootstrap", "rollback")
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: event 'bootstrap_rollback' not recorded", err)
        self.assertEqual(layout.cliproxy_binary.read_text(), "old")


# --------------------------------------------------------------------------- the front ends' error path

class FrontEndErrorPathTest(TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config("config_version: 2\n")
        events.take_warnings()

    def raising(self, exc: BaseException):
        return mock.patch("llm_router.commands.events.show", side_effect=exc)

    CASES = [
        (OSError(errno.EROFS, os.strerror(errno.EROFS), "/x/events.log"), USAGE,
         "error: Read-only file system (EROFS): /x/events.log"),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/y"), USAGE,
         "error: No space left on device (ENOSPC): /x/y"),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/x/a\nb"), USAGE,
         "error: Permission denied (EACCES): /x/a?b"),
        (FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/gone"), NOT_FOUND,
         "error: No such file or directory (ENOENT): /gone"),
        (ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED)), UNAVAILABLE,
         "error: Connection refused (ECONNREFUSED)"),
    ]

    def test_os_errors_become_one_line_with_a_stable_code_in_both_front_ends(self):
        for exc, code, line in self.CASES:
            with self.subTest(line):
                with self.raising(exc):
                    rc, out, err = self.cli("events")
                self.assertEqual(rc, code, err)
                self.assertEqual(one_line_error(self, err), line)
                self.assertIn("hint: ", err)
                with self.raising(exc):
                    rc, out, err = self.cli("events", "--json")
                self.assertEqual(rc, code)
                self.assertEqual(json.loads(out)["errors"][0]["exit_code"], code)
                with self.raising(exc):
                    rc, out, err = inv_in(self, "events")
                self.assertEqual(rc, code, err)
                self.assertEqual(one_line_error(self, err), line)

    def test_a_bug_is_still_one_line_exit_1(self):
        with self.raising(ValueError("bad\nvalue")):
            rc, out, err = self.cli("events")
        self.assertEqual(rc, 1)
        self.assertIn("error: unexpected ValueError: bad value\n", err)
        self.assertNotIn("Traceback", err)

    def test_the_error_path_itself_cannot_crash(self):
        class Broken(io.StringIO):
            def write(self, text):
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        for exc in (RouterError("boom", exit_code=5), OSError(errno.EIO, "I/O error"), KeyError("k")):
            with self.subTest(repr(exc)), mock.patch.object(sys, "stderr", Broken()), \
                    mock.patch.object(sys, "stdout", Broken()):
                code = cli.fail("events", exc, as_json=False, warnings=["w"])
                self.assertEqual(code, {RouterError: 5, OSError: USAGE, KeyError: 1}[type(exc)])
                self.assertEqual(cli.fail("events", exc, as_json=True), code)
        with mock.patch.object(sys, "stdout", Broken()), mock.patch.object(sys, "stderr", Broken()):
            self.assertEqual(cli.main(["--config", str(self.config_path), "events"]), USAGE)  # EPIPE on output

    def test_from_os_error_is_one_printable_line(self):
        error = from_os_error(OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "a\x00b" * 500))
        self.assertEqual(error.exit_code, USAGE)
        self.assertTrue(error.message.isprintable())
        self.assertLessEqual(len(error.message), 400)


# --------------------------------------------------------------------------- JWT claims

class HostileClaimsTest(TempRepo):
    def setUp(self):
        super().setUp()
        self.write_config()
        self.cfg = config_mod.load(self.config_path)
        self.source = self.root / "codex-home" / "auth.json"
        self.source.parent.mkdir()
        self.folder = self.cfg.layout.auths_dir
        events.take_warnings()

    def import_(self, data: dict) -> tuple[int, str, str]:
        self.source.write_text(json.dumps(data))
        return self.cli("auth", "codex", "import-headless", "--source", str(self.source))

    def with_access_exp(self, exp) -> dict:
        data = codex_cli_auth()
        claims = {"exp": exp, "iat": NOW, "https://api.openai.com/profile": {"email": "dev@example.com"}}
        data["tokens"]["access_token"] = jwt(claims)  # json.dumps writes NaN / Infinity as JSON's extensions
        return data

    def assert_nothing_written(self):
        files = sorted(p.name for p in self.folder.iterdir()) if self.folder.is_dir() else []
        self.assertEqual(files, [])

    def test_absurd_exp_claims_are_refused_on_import(self):
        for exp in (1e20, -1e20, math.nan, math.inf, -math.inf, 10 ** 30, 10 ** 400, -10 ** 400, -1):
            with self.subTest(exp=exp):
                code, out, err = self.import_(self.with_access_exp(exp))
                self.assertEqual(code, AUTH, err)
                self.assertIn("the access_token's exp (expiry) claim is not a valid time", one_line_error(self, err))
                self.assert_nothing_written()
        for exp in ("2030-01-01", None, [1], {"a": 1}, True):
            with self.subTest(exp=exp):
                code, out, err = self.import_(self.with_access_exp(exp))
                self.assertEqual(code, AUTH, err)
                self.assertIn("the access_token has no exp (expiry) claim", one_line_error(self, err))
                self.assert_nothing_written()

    def test_hostile_email_claims_are_refused_on_import(self):
        for email, shown in (("dev\x00@example.com", "dev?@example.com"), ("dev\n@example.com", "dev?@example.com"),
                             ("a" * 290 + "@example.com", "a" * 37 + "..."), ("../../@x", "../../@x"),
                             ("no-at-sign", "no-at-sign")):
            with self.subTest(email=email[:20]):
                code, out, err = self.import_(codex_cli_auth(email=email))
                self.assertEqual(code, AUTH, err)
                line = one_line_error(self, err)
                self.assertIn("the id_token's email claim is not a usable email address", line)
                self.assertIn(repr(shown), line)
                self.assertNotIn("\x00", out + err)
                self.assert_nothing_written()

    def test_a_plan_claim_that_cannot_be_a_file_name(self):
        code, out, err = self.import_(codex_cli_auth(plan="x\x00y"))
        self.assertEqual(code, AUTH, err)
        self.assertIn("cannot be used in a file name", one_line_error(self, err))
        self.assert_nothing_written()

    def test_status_shows_hostile_files_sanitized(self):
        self.folder.mkdir(parents=True, mode=0o700)
        cases = {
            "codex-a.json": {"type": "codex", "email": "evil\x00\x1b[31m@example.com", "expired": 1e20,
                             "access_token": jwt({"exp": math.nan})},
            "codex-b.json": {"type": "codex", "email": "b" * 300 + "@example.com", "expired": -1e20},
            "codex-c.json": {"type": "codex", "email": {"not": "a string"}, "expired": "9999-12-31T23:59:59-12:00",
                             "access_token": jwt({"exp": math.inf})},
            "codex-d.json": {"type": ["codex"], "email": 5, "expired": [1]},
            "codex-f.json": {"type": "codex", "email": "f@example.com", "expired": 10 ** 400},
            "copilot-e.json": {"type": "github-copilot", "username": "x\u2028y", "expires_at": "not a time"},
        }
        for name, data in cases.items():
            (self.folder / name).write_text(json.dumps(data))
            (self.folder / name).chmod(0o600)
        before = snapshot(self.folder)
        code, out, err = self.cli("auth", "status")
        self.assertEqual(code, 0, err)
        self.assertNotIn("Traceback", out + err)
        for bad in ("\x00", "\x1b", "\u2028", "b" * 81):
            self.assertNotIn(bad, out + err)
        self.assertIn("evil??[31m@example.com", out)
        code, out, err = self.cli("auth", "status", "--json")
        self.assertEqual(code, 0, err)
        accounts = {a["file"]: a for a in json.loads(out)["data"]["accounts"]}
        self.assertEqual(accounts["codex-a.json"]["expires_at"], None)
        self.assertEqual(accounts["codex-b.json"]["email"], "b" * 77 + "...")
        self.assertEqual((accounts["codex-c.json"]["email"], accounts["codex-c.json"]["expires_at"]), (None, None))
        self.assertEqual((accounts["codex-d.json"]["provider"], accounts["codex-d.json"]["email"]), (None, None))
        self.assertEqual(accounts["copilot-e.json"]["account"], "x?y")
        self.assertEqual((accounts["codex-f.json"]["email"], accounts["codex-f.json"]["expires_at"]),
                         ("f@example.com", None))
        code, out, err = self.cli("doctor")
        self.assertNotIn("Traceback", out + err)
        self.assertEqual(snapshot(self.folder), before, "reading changed an auth file")

    def test_import_into_a_read_only_or_full_folder(self):
        """The auth file cannot be written and neither can the event that says so: one line, exit 2."""
        import tempfile

        real_mkstemp = tempfile.mkstemp
        for code in (errno.EROFS, errno.ENOSPC):
            def refuse(*args, dir=None, **kwargs):
                if dir is not None and Path(dir) == self.folder:
                    raise OSError(code, os.strerror(code))
                return real_mkstemp(*args, dir=dir, **kwargs)

            with self.subTest(errno.errorcode[code]), mock.patch.object(tempfile, "mkstemp", refuse), \
                    refuse_open(self.cfg.layout.events_log, code):
                rc, out, err = self.import_(codex_cli_auth())
                self.assertEqual(rc, USAGE, err)
                self.assertIn(f"cannot write {self.folder}/codex-dev@example.com-plus.json: {os.strerror(code)}",
                              one_line_error(self, err))
                self.assertIn("warning: event 'oauth_login' not recorded", err)
                self.assert_nothing_written()

    def test_an_os_error_before_the_write_is_one_line(self):
        with mock.patch("llm_router.auth.codex_import.private_folder",
                        side_effect=OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.folder))):
            rc, out, err = self.import_(codex_cli_auth())
        self.assertEqual(rc, USAGE, err)
        self.assertEqual(one_line_error(self, err), f"error: Read-only file system (EROFS): {self.folder}")
        events_ = [json.loads(line) for line in self.cfg.layout.events_log.read_text().splitlines()]
        self.assertEqual((events_[-1]["event"], events_[-1]["result"]), ("oauth_login", "failed"))

    def test_an_import_that_wrote_its_file_reports_success(self):
        """The event append and the proxy check fail after the file is written: exit 0, the file, warnings."""
        with refuse_open(self.cfg.layout.events_log, errno.ENOSPC), \
                mock.patch("llm_router.auth.codex_import.stack.is_running",
                           side_effect=OSError(errno.EIO, "Input/output error")):
            rc, out, err = self.import_(codex_cli_auth())
        self.assertEqual(rc, 0, err)
        self.assertIn("Imported Codex account: dev@example.com", out)
        self.assertIn("warning: event 'oauth_login' not recorded", err)
        self.assertIn("warning: cannot tell whether CLIProxyAPIPlus runs", err)
        self.assertEqual(sorted(p.name for p in self.folder.iterdir()), ["codex-dev@example.com-plus.json"])


# --------------------------------------------------------------------------- bootstrap

def script_entry(body: str) -> tuple[tarfile.TarInfo, bytes]:
    return entry("cli-proxy-api-plus", ("#!/bin/sh\n" + textwrap.dedent(body)).encode())


class HostileReleaseTest(GitHubCase):
    def mangle(self, change) -> None:
        release = self.server.releases[(REPO_NAME, f"v{NEW}")]
        change(release)

    def asset(self, release: dict, name: str) -> dict:
        return next(a for a in release["assets"] if a["name"] == name)

    def test_malformed_release_json(self):
        cases = {
            "asset without browser_download_url": lambda r: self.asset(r, LINUX).pop("browser_download_url"),
            "checksums without browser_download_url":
                lambda r: self.asset(r, "checksums.txt").pop("browser_download_url"),
            "file:// URL": lambda r: self.asset(r, LINUX).update(browser_download_url="file:///etc/passwd"),
            "null URL": lambda r: self.asset(r, LINUX).update(browser_download_url=None),
            "numeric URL": lambda r: self.asset(r, LINUX).update(browser_download_url=12345),
            "plain http to another host":
                lambda r: self.asset(r, LINUX).update(browser_download_url="http://example.com/x.tar.gz"),
            "a URL with no host": lambda r: self.asset(r, "checksums.txt").update(browser_download_url="https:///x"),
            "assets is a dict": lambda r: r.update(assets={"a": 1}),
            "assets is a string": lambda r: r.update(assets="CLIProxyAPIPlus"),
            "an asset that is a string": lambda r: r["assets"].append("x"),
            "an asset without a name": lambda r: r["assets"].append({"browser_download_url": "https://x/y"}),
            "no tag_name": lambda r: r.pop("tag_name"),
            "a numeric tag_name": lambda r: r.update(tag_name=6.9),
            "a tag_name with a path": lambda r: r.update(tag_name="../../etc"),
        }
        key = (REPO_NAME, f"v{NEW}")
        saved = json.dumps(self.server.releases[key])
        for label, change in cases.items():
            with self.subTest(label):
                self.server.releases[key] = json.loads(saved)
                self.mangle(change)
                err = self.assert_fails(UNAVAILABLE, "did not answer a usable GitHub release")
                one_line_error(self, err)

    def test_a_release_that_is_not_an_object(self):
        for body in ([], "x", 5):
            with self.subTest(body=body):
                self.server.releases[(REPO_NAME, f"v{NEW}")] = body
                err = self.assert_fails(UNAVAILABLE, "did not answer a usable GitHub release")
                one_line_error(self, err)

    def test_conflicting_duplicate_checksum_lines_are_refused(self):
        data = tar_gz(binary_entry())
        good = hashlib.sha256(data).hexdigest()
        for label, checksums in (("the asset twice", f"{good}  {LINUX}\n{'0' * 64}  {LINUX}\n"),
                                 ("the forged line last", f"{'0' * 64}  {LINUX}\n{good}  {LINUX}\n"),
                                 ("another file twice", f"{good}  {LINUX}\n{'1' * 64}  x.zip\n{'2' * 64}  *x.zip\n")):
            with self.subTest(label):
                self.release({LINUX: data}, checksums=checksums, digests=False)
                err = self.assert_fails(CHECK_FAILED, "twice with different sha256 hashes: refusing it")
                one_line_error(self, err)
        self.release({LINUX: data}, checksums=f"{good}  {LINUX}\n{good.upper()}  *{LINUX}\n", digests=False)
        code, out, err = self.download()
        self.assertEqual(code, 0, err)  # the same hash twice is harmless

    def test_a_banner_naming_another_version_is_refused(self):
        self.release({LINUX: tar_gz(binary_entry(OLD))})
        err = self.assert_fails(CHECK_FAILED, f"says it is version '{OLD}-plus', not {NEW}: refusing to install it")
        one_line_error(self, err)

    def test_a_probe_that_exits_as_the_real_binary_would_not_is_refused(self):
        self.release({LINUX: tar_gz(script_entry(f"echo '{BANNER}'\nexit 2\n"))})
        err = self.assert_fails(CHECK_FAILED, "printed its banner but `-h` exited 2 (the real binary exits 0)")
        one_line_error(self, err)

    def test_a_banner_without_plus_and_the_real_shape_are_accepted(self):
        self.release({LINUX: tar_gz(script_entry(f"echo 'CLIProxyAPI Version: {NEW}, Commit: x, BuiltAt: y'\n"))})
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.manifest()["binary_version"], NEW)

    def pid_file(self, name: str) -> Path:
        return self.root / name

    def watch_pids(self, *files: Path) -> list[int]:
        pids = []
        for file in files:
            for _ in range(200):
                if file.exists() and file.read_text().strip():
                    break
                time.sleep(0.05)
            pid = int(file.read_text().strip())
            self.addCleanup(kill_if_alive, pid)
            pids.append(pid)
        return pids

    def wait_gone(self, pids: list[int]) -> list[int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        return [p for p in pids if alive(p)]

    def test_a_hanging_probe_is_stopped_with_everything_it_started(self):
        leader, child = self.pid_file("leader.pid"), self.pid_file("child.pid")
        self.release({LINUX: tar_gz(script_entry(f"""\
            echo '{BANNER}'
            sleep 600 &
            echo $! > {child}
            echo $$ > {leader}
            exec sleep 600
            """))})
        with mock.patch.object(bootstrap, "RUN_CHECK_TIMEOUT", 3.0):
            err = self.assert_fails(CHECK_FAILED, "did not exit within 3 s of `-h`; it was stopped")
        one_line_error(self, err)
        pids = self.watch_pids(leader, child)
        self.assertEqual(self.wait_gone(pids), [], "the probe or its child is still running")

    def test_a_probe_that_exits_but_leaves_a_child_holding_its_output(self):
        child = self.pid_file("child.pid")
        self.release({LINUX: tar_gz(script_entry(f"""\
            echo '{BANNER}'
            sleep 600 &
            echo $! > {child}
            exit 0
            """))})
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.wait_gone(self.watch_pids(child)), [], "the probe's child is still running")
        self.assertEqual(self.temp_files(), [])

    def test_ctrl_c_during_the_probe_stops_it(self):
        leader = self.pid_file("leader.pid")
        script = self.root / "hang.sh"
        script.write_text(f"#!/bin/sh\necho $$ > {leader}\nexec sleep 600\n")
        script.chmod(0o755)
        real_select = bootstrap.selectors.DefaultSelector.select
        calls = []

        def interrupt(selector, timeout=None):
            calls.append(timeout)
            if leader.exists() and leader.read_text().strip():
                raise KeyboardInterrupt
            return real_select(selector, 0.05)

        with mock.patch.object(bootstrap.selectors.DefaultSelector, "select", interrupt), \
                self.assertRaises(KeyboardInterrupt):
            bootstrap.probe(script, timeout=60)
        self.assertEqual(self.wait_gone(self.watch_pids(leader)), [])

    def test_a_probe_that_floods_its_output_is_stopped(self):
        self.release({LINUX: tar_gz(script_entry(f"echo '{BANNER}'\nexec cat /dev/zero\n"))})
        err = self.assert_fails(CHECK_FAILED, "printed more than 1024 KiB for `-h`; it was stopped")
        one_line_error(self, err)


class StaleDownloadTest(GitHubCase):
    def killed_run(self, age: float = 3600) -> Path:
        """A temp folder as a `bootstrap download` killed with SIGKILL mid-download leaves it."""
        tmp = self.layout.tmp_dir
        tmp.mkdir(parents=True, exist_ok=True)
        code = textwrap.dedent(f"""\
            import fcntl, os, sys, tempfile, time
            work = tempfile.mkdtemp(prefix="bootstrap-", dir={str(tmp)!r})
            fd = os.open(os.path.join(work, ".owner.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            open(os.path.join(work, {LINUX!r}), "wb").write(b"partial" * 1000)
            print(work, flush=True)
            time.sleep(600)
            """)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.addCleanup(proc.wait)
        work = Path(proc.stdout.readline().strip())
        proc.stdout.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        os.utime(work, (time.time() - age, time.time() - age))
        return work

    def test_a_killed_download_is_reported_by_doctor_then_cleaned(self):
        work = self.killed_run()
        self.assertTrue(work.is_dir())
        code, out, err = self.cli("doctor", "--json")
        findings = [f for f in json.loads(out)["data"]["findings"] if f["check"] == "temp-files"]
        self.assertEqual(len(findings), 1, out)
        self.assertEqual(findings[0]["status"], "warn")
        self.assertIn(work.name, findings[0]["detail"])
        self.assertTrue(work.is_dir(), "doctor must not remove anything")
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertIn(f"removed 1 temp folder(s) left by an interrupted download: {work.name}", err)
        self.assertEqual(self.temp_files(), [])
        code, out, err = self.cli("doctor", "--json")
        self.assertEqual([f for f in json.loads(out)["data"]["findings"] if f["check"] == "temp-files"], [])

    def test_a_live_or_young_folder_is_left_alone(self):
        tmp = self.layout.tmp_dir
        live = tmp / "bootstrap-live"
        live.mkdir(parents=True)
        fd = os.open(live / ".owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.utime(live, (time.time() - 3600, time.time() - 3600))
        young = tmp / "bootstrap-young"
        young.mkdir()
        other = tmp / "prove-xyz"  # not ours to clean
        other.mkdir()
        os.utime(other, (time.time() - 3600, time.time() - 3600))
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertNotIn("removed", err)
        self.assertEqual(sorted(p.name for p in tmp.iterdir()), ["bootstrap-live", "bootstrap-young", "prove-xyz"])


if __name__ == "__main__":
    unittest.main()
