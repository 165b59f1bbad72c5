"""bootstrap: release lookup, download and install, the GitHub faults, and the LiteLLM runner, against the GitHub
stand-in on 127.0.0.1 serving real stand-in archives (verification and safe extraction: test_bootstrap_verify.py;
status, rollback and the typed outcomes: test_bootstrap_outcomes.py).

Every bad input and fault asserts the message, the exit code, that the installed binary, its manifest and the
`.previous` pair are byte-for-byte untouched, and that no temp or staged file is left behind.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import unittest
import zipfile
from pathlib import Path
from unittest import mock

from llm_router import bootstrap, releases
from llm_router import config as config_mod
from llm_router.errors import AUTH, CHECK_FAILED, NOT_FOUND, UNAVAILABLE
from llm_router.layout import source_root
from llm_router.litellm import runner
from llm_router.standin.cliproxy import fake_binary_script, install_fake_binary
from llm_router.standin.github import GitHubServer, publish
from llm_router.standin.process import free_port
from tests.support import TempRepo, serve_github, snapshot

REPO_NAME = "router-for-me/CLIProxyAPIPlus"
OLD, NEW = "6.9.27-0", "6.9.28-0"
TOKEN = "ghp_testtoken_0123456789abcdef"
LINUX = bootstrap.asset_name(NEW, "linux", "amd64")
RELEASE = GitHubServer.release_path(REPO_NAME, f"v{NEW}")
DOWNLOAD = GitHubServer.download_path(REPO_NAME, f"v{NEW}", LINUX)


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
          link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o755
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def binary_entry(version: str = NEW) -> tuple[tarfile.TarInfo, bytes]:
    return entry("cli-proxy-api-plus", fake_binary_script(version).encode())




class GitHubCase(TempRepo):
    """A temp repo whose bootstrap points at a GitHub stand-in publishing v6.9.28-0 for linux and windows amd64."""

    platform = ("linux", "amd64")

    def setUp(self) -> None:
        super().setUp()
        self.server = serve_github(self)
        self.assets = Path(tempfile.mkdtemp(prefix="llm-router-assets-"))
        self.addCleanup(shutil.rmtree, self.assets, True)
        publish(self.server, REPO_NAME, NEW, self.assets, platforms=[("linux", "amd64"), ("windows", "amd64")])
        for patch in (mock.patch.object(releases, "BACKOFF", 0),
                      mock.patch.object(bootstrap, "platform_id", return_value=self.platform),
                      mock.patch.dict(os.environ, {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"})):
            patch.start()
            self.addCleanup(patch.stop)
        os.environ.pop("GITHUB_TOKEN", None)
        self.write_bootstrap_config()
        self.layout = config_mod.load(self.config_path).layout

    def write_bootstrap_config(self, **keys: str) -> None:
        keys = {"cliproxy_repository": REPO_NAME, "cliproxy_version": f"v{NEW}", "github_api_url": self.server.url,
                **keys}
        self.write_config("config_version: 2\nbootstrap:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items()))

    def release(self, files: dict[str, bytes], checksums: str | None = "auto", tag: str = f"v{NEW}",
                digests: bool = True) -> dict:
        """Replace the release `tag` with `files` (+ checksums.txt of all of them unless given or None)."""
        folder = Path(tempfile.mkdtemp(dir=self.assets))
        for name, data in files.items():
            (folder / name).write_bytes(data)
        if checksums == "auto":
            checksums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items())
        if checksums is not None:
            (folder / "checksums.txt").write_text(checksums)
        return self.server.add_release(REPO_NAME, tag, sorted(folder.iterdir()), digests=digests)

    def install_old(self) -> dict:
        """An installed v6.9.27-0 with its manifest and a `.previous` pair; returns the bin folder's snapshot."""
        layout = self.layout
        for binary, manifest, version in ((layout.cliproxy_binary, layout.bin_manifest, OLD),
                                          (layout.cliproxy_previous_binary, layout.bin_previous_manifest, "6.9.26-0")):
            install_fake_binary(binary, version)
            manifest.write_text(json.dumps({"version": f"v{version}", "sha256": "0" * 64,
                                            "binary_sha256": bootstrap.sha256_file(binary)}))
        return snapshot(layout.bin_dir)

    def download(self, *args: str, env: dict | None = None) -> tuple[int, str, str]:
        return self.cli("bootstrap", "download", *args, env=env)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.layout.events_log.read_text().splitlines()]

    def manifest(self) -> dict:
        return json.loads(self.layout.bin_manifest.read_text())

    def temp_files(self) -> list[Path]:
        tmp = self.layout.tmp_dir
        return list(tmp.iterdir()) if tmp.exists() else []

    def assert_fails(self, code: int, *needles: str, args: tuple[str, ...] = (), env: dict | None = None) -> str:
        before = self.install_old()
        rc, out, err = self.download(*args, env=env)
        self.assertEqual(rc, code, err)
        for needle in needles:
            self.assertIn(needle, err)
        self.assertTrue(err.startswith("error: "), err)
        self.assertNotIn("Traceback", out + err)
        self.assertEqual(snapshot(self.layout.bin_dir), before, "the installed binary or a manifest changed")
        self.assertEqual(self.temp_files(), [])
        last = self.events()[-1]
        self.assertEqual((last["event"], last["result"]), ("bootstrap_download", "error"))
        self.assertIn(last["detail"]["error"], err)
        return err


class InstallTest(GitHubCase):
    def test_download_installs_verifies_and_records(self):
        before = self.install_old()
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertIn(f"installed CLIProxyAPIPlus v{NEW} ({NEW}-plus) from {REPO_NAME}", out)
        layout = self.layout
        self.assertEqual(bootstrap.binary_version(layout.cliproxy_binary), f"{NEW}-plus")
        self.assertEqual(layout.cliproxy_binary.stat().st_mode & 0o777, 0o755)
        manifest = self.manifest()
        archive = self.assets / NEW / LINUX
        self.assertEqual(manifest["sha256"], hashlib.sha256(archive.read_bytes()).hexdigest())
        self.assertEqual((manifest["version"], manifest["repository"], manifest["asset"]),
                         (f"v{NEW}", REPO_NAME, LINUX))
        self.assertTrue(manifest["verified"])
        self.assertTrue(manifest["installed_at"])
        self.assertEqual(manifest["binary_sha256"], bootstrap.sha256_file(layout.cliproxy_binary))
        # the replaced pair is kept for rollback
        self.assertEqual(layout.cliproxy_previous_binary.read_bytes(), before["CLIProxyAPIPlus"][1])
        self.assertEqual(layout.bin_previous_manifest.read_bytes(), before["manifest.json"][1])
        self.assertTrue(os.access(layout.litellm_runner, os.X_OK))
        self.assertEqual(self.temp_files(), [])
        self.assertEqual(sorted(p.name for p in layout.bin_dir.iterdir()),
                         ["CLIProxyAPIPlus", "CLIProxyAPIPlus.previous", "litellm", "manifest.json",
                          "manifest.previous.json"])
        event = self.events()[-1]
        self.assertEqual((event["event"], event["service"], event["result"]),
                         ("bootstrap_download", "cliproxyapi_plus", "installed"))
        self.assertEqual((event["detail"]["version"], event["detail"]["sha256"]), (f"v{NEW}", manifest["sha256"]))

    def test_first_install_has_no_previous(self):
        code, _, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertFalse(self.layout.cliproxy_previous_binary.exists())
        self.assertFalse(self.layout.bin_previous_manifest.exists())

    def test_same_version_and_sha_does_nothing_unless_forced(self):
        self.assertEqual(self.download()[0], 0)
        installed = snapshot(self.layout.bin_dir)
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertIn("is already installed", out)
        self.assertEqual(self.server.hits(DOWNLOAD), 1)  # the archive was not fetched again
        self.assertEqual(snapshot(self.layout.bin_dir), installed)
        self.assertEqual(self.events()[-1]["result"], "unchanged")
        code, out, err = self.download("--force")
        self.assertEqual(code, 0, err)
        self.assertIn("installed CLIProxyAPIPlus", out)
        self.assertEqual(self.server.hits(DOWNLOAD), 2)

    def test_a_modified_binary_is_reinstalled(self):
        self.assertEqual(self.download()[0], 0)
        self.layout.cliproxy_binary.write_text("#!/bin/sh\necho tampered\n")
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertIn("installed CLIProxyAPIPlus", out)
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{NEW}-plus")

    def test_latest_resolves_through_the_api(self):
        publish(self.server, REPO_NAME, "6.9.29-0", self.assets, platforms=[("linux", "amd64")])
        code, out, err = self.download("--cliproxy-version", "latest")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.manifest()["version"], "v6.9.29-0")
        self.assertEqual(self.server.hits(GitHubServer.release_path(REPO_NAME, "latest")), 1)

    def test_tag_without_v_and_other_repository(self):
        publish(self.server, "someone/fork", "6.9.30-1", self.assets, platforms=[("linux", "amd64")])
        code, _, err = self.download("--repository", "someone/fork", "--cliproxy-version", "6.9.30-1")
        self.assertEqual(code, 0, err)
        self.assertEqual((self.manifest()["version"], self.manifest()["repository"]), ("v6.9.30-1", "someone/fork"))

    def test_github_token_is_sent_and_never_logged(self):
        code, out, err = self.download("--json", env={"GITHUB_TOKEN": TOKEN})
        self.assertEqual(code, 0, err)
        self.assertTrue(self.server.requests)
        self.assertEqual({r["authorization"] for r in self.server.requests}, {f"Bearer {TOKEN}"})
        self.server.rate_limit(RELEASE)
        code, out2, err2 = self.download("--force", env={"GITHUB_TOKEN": TOKEN})
        self.assertEqual(code, UNAVAILABLE)
        for text in (out, err, out2, err2, self.layout.events_log.read_text(), self.layout.bin_manifest.read_text()):
            self.assertNotIn(TOKEN, text)

    def test_json_output_and_no_progress_bar_without_a_terminal(self):
        code, out, err = self.download("--json")
        self.assertEqual(code, 0, err)
        envelope = json.loads(out)
        self.assertEqual((envelope["command"], envelope["ok"], envelope["data"]["result"]),
                         ("bootstrap download", True, "installed"))
        self.assertEqual(envelope["data"]["sha256"], self.manifest()["sha256"])
        self.assertNotIn("\r", err)
        self.assertNotIn("MiB/s", err)

    def test_insecure_skip_checksum_installs_but_shouts(self):
        self.release({LINUX: (self.assets / NEW / LINUX).read_bytes()}, checksums=None, digests=False)
        code, out, err = self.download("--insecure-skip-checksum")
        self.assertEqual(code, 0, err)
        self.assertIn("warning: --insecure-skip-checksum", err)
        self.assertIn("NOT verified at all", err)
        self.assertFalse(self.manifest()["verified"])
        code, out, _ = self.cli("bootstrap", "status")
        self.assertIn("NOT verified", out)

    def test_runtime_group_missing_is_a_warning_with_the_sync_hint(self):
        with mock.patch.object(runner.importlib.metadata, "version",
                               side_effect=importlib.metadata.PackageNotFoundError("litellm")):
            code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertIn("uv sync --group runtime", err)
        self.assertIn("LiteLLM not installed", out)


class WindowsTest(GitHubCase):
    platform = ("windows", "amd64")

    def test_windows_takes_the_zip_and_its_exe(self):
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.manifest()["asset"], f"CLIProxyAPIPlus_{NEW}_windows_amd64.zip")
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{NEW}-plus")

    def _zip(self, *members: tuple[str, bytes, int]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data, mode in members:
                info = zipfile.ZipInfo(name)
                info.external_attr = mode << 16
                archive.writestr(info, data)
        return buffer.getvalue()

    def test_unsafe_zip_entries_are_refused(self):
        exe = ("cli-proxy-api-plus.exe", fake_binary_script(NEW).encode(), 0o100755)
        name = f"CLIProxyAPIPlus_{NEW}_windows_amd64.zip"
        for label, bad, needle in (("dotdot", ("../evil.exe", b"x", 0o100644), "a path with '..'"),
                                   ("absolute", ("C:/Windows/evil.exe", b"x", 0o100644), "an absolute path"),
                                   ("symlink", ("link", b"/etc/passwd", 0o120777), "is a link")):
            with self.subTest(label):
                self.release({name: self._zip(exe, bad)})
                self.assert_fails(CHECK_FAILED, "unsafe archive", needle)

    def test_zip_without_the_exe_is_refused(self):
        self.release({f"CLIProxyAPIPlus_{NEW}_windows_amd64.zip":
                      self._zip(("cli-proxy-api-plus", fake_binary_script(NEW).encode(), 0o100755))})
        self.assert_fails(CHECK_FAILED, "does not contain cli-proxy-api-plus.exe")


class GitHubFaultTest(GitHubCase):
    def test_repository_gone(self):
        self.write_bootstrap_config(cliproxy_repository="router-for-me/Gone")
        err = self.assert_fails(NOT_FOUND, "not found (HTTP 404", "repository may be gone",
                                "bootstrap.cliproxy_repository", "--archive")
        self.assertIn("router-for-me/Gone", err)

    def test_tag_not_found(self):
        self.assert_fails(NOT_FOUND, "release v9.9.9-0 of router-for-me/CLIProxyAPIPlus not found (HTTP 404",
                          "bootstrap.cliproxy_repository", args=("--cliproxy-version", "v9.9.9-0"))

    def test_rate_limit_403_says_when_it_resets_and_suggests_a_token(self):
        self.server.rate_limit(RELEASE, reset_at=time.time() + 1200)
        err = self.assert_fails(UNAVAILABLE, "GitHub API rate limit reached (HTTP 403)", "resets at", "UTC (in 20 min)",
                                "GITHUB_TOKEN")
        self.assertIn("--archive", err)
        self.assertEqual(self.server.hits(RELEASE), 1)  # not retried: it cannot help

    def test_rate_limit_429(self):
        self.server.rate_limit(RELEASE, reset_at=time.time() + 300, status=429)
        self.assert_fails(UNAVAILABLE, "rate limit reached (HTTP 429)", "resets at", "GITHUB_TOKEN")

    def test_bad_credentials(self):
        self.server.set_fault(RELEASE, status=401)
        self.assert_fails(AUTH, "GitHub refused the request", "GITHUB_TOKEN", env={"GITHUB_TOKEN": TOKEN})

    def test_server_errors_are_retried_then_succeed(self):
        self.server.set_fault(RELEASE, status=500, count=2)
        self.server.set_fault(DOWNLOAD, status=502, count=1)
        code, out, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertEqual((self.server.hits(RELEASE), self.server.hits(DOWNLOAD)), (3, 2))

    def test_server_errors_that_persist(self):
        self.server.set_fault(RELEASE, status=503)
        self.assert_fails(UNAVAILABLE, "HTTP 503 (after 4 attempts)")
        self.assertEqual(self.server.hits(RELEASE), bootstrap.ATTEMPTS)

    def test_connection_refused(self):
        self.write_bootstrap_config(github_api_url=f"http://127.0.0.1:{free_port()}")
        self.assert_fails(UNAVAILABLE, "Connection refused", "after 4 attempts", "--archive")

    def test_connection_reset_is_retried(self):
        self.server.set_fault(DOWNLOAD, reset=True, count=1)
        code, _, err = self.download()
        self.assertEqual(code, 0, err)
        self.assertEqual(self.server.hits(DOWNLOAD), 2)

    def test_connection_reset_that_persists(self):
        self.server.set_fault(RELEASE, reset=True)
        self.assert_fails(UNAVAILABLE, "Connection reset by peer (after 4 attempts)")

    def test_truncated_download(self):
        self.server.set_fault(DOWNLOAD, truncate=True)
        self.assert_fails(UNAVAILABLE, "closed before the download finished", "after 4 attempts")
        self.assertEqual(self.server.hits(DOWNLOAD), bootstrap.ATTEMPTS)

    def test_truncated_once_is_retried(self):
        self.server.set_fault(DOWNLOAD, truncate=True, count=1)
        code, _, err = self.download()
        self.assertEqual(code, 0, err)

    def test_no_asset_for_this_platform_lists_what_exists(self):
        with mock.patch.object(bootstrap, "platform_id", return_value=("freebsd", "riscv64")):
            self.assert_fails(NOT_FOUND, "has no asset for freebsd/riscv64",
                              f"CLIProxyAPIPlus_{NEW}_freebsd_riscv64.tar.gz", LINUX,
                              f"CLIProxyAPIPlus_{NEW}_windows_amd64.zip", "checksums.txt")


class RunnerTest(TempRepo):
    def setUp(self) -> None:
        super().setUp()
        self.write_config("config_version: 2\n")
        self.layout = config_mod.load(self.config_path).layout

    def fake(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{text} $*"\n')
        path.chmod(0o755)
        return path

    def test_runner_execs_the_launcher_with_the_venv_python(self):
        venv = self.root / "venv"
        self.fake(venv / "bin" / "litellm", "venv litellm")
        self.fake(venv / "bin" / "python", "venv python")
        with mock.patch.object(runner.sys, "prefix", str(venv)):
            path = runner.ensure_litellm_runner(self.layout)
        self.assertEqual(path, self.layout.litellm_runner)
        self.assertEqual(path.stat().st_mode & 0o777, 0o755)
        out = subprocess.run([str(path), "--port", "4000", "two words"], capture_output=True, text=True).stdout
        self.assertEqual(out.strip(), "venv python -P -m llm_router.litellm.launch --port 4000 two words")

    def test_runner_falls_back_to_uv_run_the_runtime_group(self):
        uv = self.fake(self.root / "tools" / "uv", "uv")
        with mock.patch.object(runner.sys, "prefix", str(self.root / "no-venv")), \
                mock.patch.object(runner.shutil, "which", return_value=str(uv)):
            path = runner.ensure_litellm_runner(self.layout)
        out = subprocess.run([str(path), "--port", "4000"], capture_output=True, text=True).stdout
        project = source_root() or self.layout.root
        self.assertEqual(out.strip(), f"uv run --project {project} --group runtime --frozen python -P -m "
                                      "llm_router.litellm.launch --port 4000")

    def test_litellm_available_reads_metadata_only(self):
        with mock.patch.object(runner.importlib.metadata, "version", return_value="1.2.3"):
            self.assertEqual(runner.litellm_available(), (True, "1.2.3"))
        with mock.patch.object(runner.importlib.metadata, "version",
                               side_effect=importlib.metadata.PackageNotFoundError("litellm")):
            self.assertEqual(runner.litellm_available(), (False, None))


if __name__ == "__main__":
    unittest.main()
