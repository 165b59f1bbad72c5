"""bootstrap, fail-closed: checksum and digest verification, safe extraction of tar.gz archives, the banner check,
file-system failures, local archives (`--archive`), and the release names and checksums parsing.

Every bad input asserts the message, the exit code, that the installed binary, its manifest and the `.previous`
pair are byte-for-byte untouched, and that no temp or staged file is left behind.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import os
import shutil
import tarfile
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from llm_router import archives, bootstrap
from llm_router.errors import CHECK_FAILED, NOT_FOUND, USAGE
from tests.support import snapshot
from tests.test_bootstrap import LINUX, NEW, GitHubCase, binary_entry, entry, tar_gz


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
        with mock.patch.object(archives, "MAX_BINARY", 2048):
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

        with mock.patch("llm_router.archives.open", failing_open, create=True):
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


if __name__ == "__main__":
    unittest.main()
