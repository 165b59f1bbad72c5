"""bootstrap: release lookup, download, verification, safe extraction, install, status, rollback and the LiteLLM
runner, against the GitHub stand-in on 127.0.0.1 serving real stand-in archives.

Every bad input and fault asserts the message, the exit code, that the installed binary, its manifest and the
`.previous` pair are byte-for-byte untouched, and that no temp or staged file is left behind.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
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


from llm_router import bootstrap, runner
from llm_router import config as config_mod
from llm_router.commands.bootstrap import ProgressBar
from llm_router.errors import AUTH, CHECK_FAILED, NOT_FOUND, UNAVAILABLE, USAGE
from llm_router.layout import source_root
from llm_router.standin.cliproxy import fake_binary_script, install_fake_binary
from llm_router.standin.github import GitHubServer, publish
from llm_router.standin.process import free_port
from tests.support import TempRepo, patched_env, inv, serve_github, snapshot

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
        for patch in (mock.patch.object(bootstrap, "BACKOFF", 0),
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


class VerificationTest(GitHubCase):
    def archive_bytes(self) -> bytes:
        return (self.assets / NEW / LINUX).read_bytes()

    def test_checksum_mismatch(self):
        self.release({LINUX: self.archive_bytes()}, checksums=f"{'ab' * 32}  {LINUX}\n", digests=False)
        self.assert_fails(CHECK_FAILED, f"checksum mismatch for {LINUX}: expected sha256 {'ab' * 32}")

    def test_api_digest_disagreeing_with_checksums(self):
        release = self.release({LINUX: self.archive_bytes()})
        next(a for a in release["assets"] if a["name"] == LINUX)["digest"] = "sha256:" + "cd" * 32
        self.assert_fails(CHECK_FAILED, "checksum mismatch", "the release API says " + "cd" * 32)

    def test_no_checksums_file(self):
        self.release({LINUX: self.archive_bytes()}, checksums=None)
        self.assert_fails(CHECK_FAILED, "has no checksums.txt", "refusing to install an unverified binary",
                          "--insecure-skip-checksum")

    def test_asset_missing_from_checksums(self):
        self.release({LINUX: self.archive_bytes()}, checksums=f"{'ab' * 32}  something_else.tar.gz\n")
        self.assert_fails(CHECK_FAILED, f"{LINUX} is not listed in checksums.txt")

    def test_archive_without_the_binary(self):
        self.release({LINUX: tar_gz(entry("README.md", b"hello"), entry("LICENSE", b"MIT"))})
        self.assert_fails(CHECK_FAILED, "does not contain cli-proxy-api-plus", "README.md, LICENSE")

    def test_unsafe_tar_entries_are_refused(self):
        cases = (("dotdot", entry("../evil", b"x"), "entry '../evil' is a path with '..'"),
                 ("nested dotdot", entry("bin/../../evil", b"x"), "a path with '..'"),
                 ("absolute", entry("/tmp/llm-router-evil", b"x"), "entry '/tmp/llm-router-evil' is an absolute path"),
                 ("symlink", entry("cli-proxy-api-plus-link", kind=tarfile.SYMTYPE, link="/bin/sh"), "is a link"),
                 ("hard link", entry("hard", kind=tarfile.LNKTYPE, link="cli-proxy-api-plus"), "is a link"),
                 ("device", entry("null", kind=tarfile.CHRTYPE), "is a device"),
                 ("fifo", entry("pipe", kind=tarfile.FIFOTYPE), "is a device"))
        for label, bad, needle in cases:
            with self.subTest(label):
                self.release({LINUX: tar_gz(binary_entry(), bad)})
                self.assert_fails(CHECK_FAILED, "unsafe archive", needle)
        self.assertFalse(Path("/tmp/llm-router-evil").exists())
        self.assertFalse((self.layout.runtime_dir / "evil").exists())

    def test_the_binary_itself_as_a_symlink(self):
        self.release({LINUX: tar_gz(entry("cli-proxy-api-plus", kind=tarfile.SYMTYPE, link="/bin/sh"))})
        self.assert_fails(CHECK_FAILED, "entry 'cli-proxy-api-plus' is a link")

    def test_absurd_sizes(self):
        self.release({LINUX: tar_gz(binary_entry(), entry("README.md", b"x" * 4096))})
        with mock.patch.object(bootstrap, "MAX_BINARY", 2048):
            self.assert_fails(CHECK_FAILED, "entry 'README.md' is absurdly large (4096 bytes)")

    def test_corrupt_gzip(self):
        good = tar_gz(binary_entry())
        for label, data in (("not gzip", b"this is not a gzip stream at all" * 10),
                            ("cut short", good[: len(good) // 2]),
                            ("invalid deflate block", good[:10] + b"\xff" + good[11:])):  # BTYPE 11 is reserved
            with self.subTest(label):
                self.release({LINUX: data})
                self.assert_fails(CHECK_FAILED, f"{LINUX} is not a valid archive", "download it again")

    def test_binary_that_does_not_print_the_banner(self):
        self.release({LINUX: tar_gz(entry("cli-proxy-api-plus", b"#!/bin/sh\necho hello\n"))})
        self.assert_fails(CHECK_FAILED, "did not print its `CLIProxyAPI Version:` banner")

    def test_disk_write_failure(self):
        real_open = builtins.open

        class FullDisk:
            def __init__(self, handle):
                self.handle = handle

            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def __getattr__(self, name):
                return getattr(self.handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

        def failing_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            return FullDisk(handle) if "w" in mode else handle

        with mock.patch("llm_router.bootstrap.open", failing_open, create=True):
            self.assert_fails(USAGE, "cannot write", "No space left on device", "disk is not full")

    def test_unwritable_bin_folder(self):
        real_mkstemp = tempfile.mkstemp
        bin_dir = self.layout.bin_dir

        def deny(*args, dir=None, **kwargs):  # root ignores folder modes, so refuse like the kernel would
            if dir is not None and Path(dir) == bin_dir:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real_mkstemp(*args, dir=dir, **kwargs)

        self.install_old()
        os.chmod(bin_dir, 0o555)
        self.addCleanup(os.chmod, bin_dir, 0o755)
        with mock.patch.object(bootstrap.tempfile, "mkstemp", side_effect=deny) if os.geteuid() == 0 \
                else contextlib.nullcontext():
            self.assert_fails(USAGE, f"cannot write {bin_dir}", "Permission denied")


class ArchiveTest(GitHubCase):
    def test_local_archive_with_checksums_beside_it_needs_no_network(self):
        code, out, err = self.download("--archive", str(self.assets / NEW / LINUX))
        self.assertEqual(code, 0, err)
        self.assertEqual(self.server.requests, [])
        manifest = self.manifest()
        self.assertEqual((manifest["version"], manifest["source"], manifest["verified"]),
                         (f"v{NEW}", str(self.assets / NEW / LINUX), True))

    def test_local_archive_with_checksums_elsewhere(self):
        elsewhere = self.root / "downloads"
        elsewhere.mkdir()
        shutil.copy(self.assets / NEW / LINUX, elsewhere)
        code, _, err = self.download("--archive", str(elsewhere / LINUX),
                                     "--checksums", str(self.assets / NEW / "checksums.txt"))
        self.assertEqual(code, 0, err)

    def test_local_archive_without_checksums(self):
        elsewhere = self.root / "downloads"
        elsewhere.mkdir()
        shutil.copy(self.assets / NEW / LINUX, elsewhere)
        self.assert_fails(CHECK_FAILED, f"no checksums file at {elsewhere / 'checksums.txt'}",
                          args=("--archive", str(elsewhere / LINUX)))

    def test_local_archive_that_does_not_match_its_checksum(self):
        elsewhere = self.root / "downloads"
        elsewhere.mkdir()
        (elsewhere / LINUX).write_bytes(tar_gz(binary_entry("6.6.6-0")))
        shutil.copy(self.assets / NEW / "checksums.txt", elsewhere)
        self.assert_fails(CHECK_FAILED, "checksum mismatch", args=("--archive", str(elsewhere / LINUX)))

    def test_bad_archive_arguments(self):
        windows = self.assets / NEW / f"CLIProxyAPIPlus_{NEW}_windows_amd64.zip"
        renamed = self.root / "cliproxy.tar.gz"
        shutil.copy(self.assets / NEW / LINUX, renamed)
        sums = str(self.assets / NEW / "checksums.txt")
        cases = ((NOT_FOUND, ("--archive", str(self.root / "missing.tar.gz")), "archive not found"),
                 (USAGE, ("--archive", str(windows)), "is not a CLIProxyAPIPlus release asset for this machine (linux"),
                 (USAGE, ("--archive", str(renamed)), "cliproxy.tar.gz is not a CLIProxyAPIPlus release asset"),
                 (USAGE, ("--checksums", sums), "--checksums is only used with --archive"),
                 (USAGE, ("--archive", str(self.assets / NEW / LINUX), "--cliproxy-version", f"v{NEW}"),
                  "drop --cliproxy-version"),
                 (USAGE, ("--cliproxy-version", "newest"), "not a release tag: 'newest'"),
                 (USAGE, ("--repository", "not a repo"), "not a repository"))
        for code, args, needle in cases:
            with self.subTest(args=args):
                before = self.install_old()
                rc, out, err = self.download(*args)
                self.assertEqual(rc, code, err)
                self.assertIn(needle, err)
                self.assertEqual(snapshot(self.layout.bin_dir), before)
                self.assertEqual(self.temp_files(), [])
        self.assertEqual(self.server.requests, [])


class StatusRollbackTest(GitHubCase):
    def test_status_not_installed(self):
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("NOT INSTALLED", out)
        self.assertIn(f"v{NEW} from {REPO_NAME}", out)

    def test_status_installed_then_modified(self):
        self.assertEqual(self.download()[0], 0)
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, 0, out)
        self.assertIn(f"INSTALLED  v{NEW} ({NEW}-plus) from {REPO_NAME}, verified", out)
        self.assertIn(self.manifest()["sha256"], out)
        code, out, _ = self.cli("bootstrap", "status", "--json")
        data = json.loads(out)["data"]
        self.assertEqual((data["intact"], data["binary_version"]), (True, f"{NEW}-plus"))
        with self.layout.cliproxy_binary.open("a") as handle:
            handle.write("# changed\n")
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, CHECK_FAILED)
        self.assertIn("MODIFIED", out)

    def test_rollback_swaps_and_a_second_rollback_undoes_it(self):
        publish(self.server, REPO_NAME, OLD, self.assets, platforms=[("linux", "amd64")], latest=False)
        self.assertEqual(self.download("--cliproxy-version", f"v{OLD}")[0], 0)
        self.assertEqual(self.download()[0], 0)
        code, out, err = self.cli("bootstrap", "rollback")
        self.assertEqual(code, 0, err)
        self.assertIn(f"CLIProxyAPIPlus is now v{OLD}; v{NEW} is kept as previous", out)
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{OLD}-plus")
        self.assertEqual(self.manifest()["version"], f"v{OLD}")
        self.assertEqual(self.events()[-1]["event"], "bootstrap_rollback")
        code, out, _ = self.cli("bootstrap", "status")
        self.assertEqual(code, 0, out)
        self.assertIn(f"previous   v{NEW}", out)
        self.assertEqual(self.cli("bootstrap", "rollback")[0], 0)
        self.assertEqual(bootstrap.binary_version(self.layout.cliproxy_binary), f"{NEW}-plus")
        self.assertEqual(self.manifest()["version"], f"v{NEW}")
        self.assertEqual(sorted(p.name for p in self.layout.bin_dir.iterdir() if p.name.startswith(".")), [])

    def test_rollback_without_a_previous_binary(self):
        code, _, err = self.cli("bootstrap", "rollback")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("no previous CLIProxyAPIPlus binary", err)


class InvokeTest(GitHubCase):
    def test_tasks_are_listed_and_run(self):
        code, out, _ = inv("--list")
        for name in ("bootstrap.download", "bootstrap.status", "bootstrap.rollback"):
            self.assertIn(name, out)
        with patched_env({"LLM_ROUTER_CONFIG": str(self.config_path)}):
            code, out, err = inv("bootstrap.download", "--cliproxy-version", f"v{NEW}", "--force", "--json")
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["data"]["version"], f"v{NEW}")
            code, out, err = inv("bootstrap.rollback")
            self.assertEqual(code, NOT_FOUND)
            self.assertIn("error: no previous CLIProxyAPIPlus binary", err)


class ProgressBarTest(unittest.TestCase):
    def test_bar_shows_bytes_and_rate_then_ends_the_line(self):
        stream = io.StringIO()
        bar = ProgressBar(stream)
        bar(0, 4 * 2**20)
        bar(4 * 2**20, 4 * 2**20)
        bar.close()
        text = stream.getvalue()
        self.assertIn("\r[" + "#" * ProgressBar.WIDTH + "] 4.0/4.0 MiB", text)
        self.assertIn("MiB/s", text)
        self.assertTrue(text.endswith("\n"))

    def test_unknown_size(self):
        stream = io.StringIO()
        ProgressBar(stream)(3 * 2**20, None)
        self.assertIn("3.0 MiB", stream.getvalue())


class NamesTest(unittest.TestCase):
    def test_asset_names_and_platforms(self):
        self.assertEqual(bootstrap.asset_name("v6.9.28-0", "darwin", "arm64"),
                         "CLIProxyAPIPlus_6.9.28-0_darwin_arm64.tar.gz")
        self.assertEqual(bootstrap.asset_name("6.9.28-0", "windows", "amd64"),
                         "CLIProxyAPIPlus_6.9.28-0_windows_amd64.zip")
        for system, machine, expected in (("Linux", "x86_64", ("linux", "amd64")),
                                          ("Darwin", "arm64", ("darwin", "arm64")),
                                          ("Linux", "aarch64", ("linux", "arm64")),
                                          ("Windows", "AMD64", ("windows", "amd64"))):
            with mock.patch("platform.system", return_value=system), \
                    mock.patch("platform.machine", return_value=machine):
                self.assertEqual(bootstrap.platform_id(), expected)

    def test_checksums_parsing(self):
        text = f"{'AB' * 32}  a.tar.gz\n{'cd' * 32} *b.zip\nnot a line\n"
        self.assertEqual(bootstrap.parse_checksums(text), {"a.tar.gz": "ab" * 32, "b.zip": "cd" * 32})


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
        self.assertEqual(out.strip(), "venv python -P -m llm_router.litellm_launch --port 4000 two words")

    def test_runner_falls_back_to_uv_run_the_runtime_group(self):
        uv = self.fake(self.root / "tools" / "uv", "uv")
        with mock.patch.object(runner.sys, "prefix", str(self.root / "no-venv")), \
                mock.patch.object(runner.shutil, "which", return_value=str(uv)):
            path = runner.ensure_litellm_runner(self.layout)
        out = subprocess.run([str(path), "--port", "4000"], capture_output=True, text=True).stdout
        project = source_root() or self.layout.root
        self.assertEqual(out.strip(), f"uv run --project {project} --group runtime --frozen python -P -m "
                                      "llm_router.litellm_launch --port 4000")

    def test_litellm_available_reads_metadata_only(self):
        with mock.patch.object(runner.importlib.metadata, "version", return_value="1.2.3"):
            self.assertEqual(runner.litellm_available(), (True, "1.2.3"))
        with mock.patch.object(runner.importlib.metadata, "version",
                               side_effect=importlib.metadata.PackageNotFoundError("litellm")):
            self.assertEqual(runner.litellm_available(), (False, None))


if __name__ == "__main__":
    unittest.main()
