"""Atomic writes, private modes and the file lock."""
from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

from llm_router import fsutil
from llm_router.errors import CONFLICT, RouterError
from tests.support import REPO


class AtomicWriteTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_writes_and_sets_mode(self):
        path = fsutil.atomic_write(self.dir / "a" / "f.txt", "hello", mode=0o640)
        self.assertEqual(path.read_text(), "hello")
        self.assertEqual(fsutil.file_mode(path), 0o640)

    def test_failure_during_write_keeps_old_file_and_leaves_no_temp(self):
        target = self.dir / "f.txt"
        target.write_text("old")
        with mock.patch("os.fsync", side_effect=OSError(28, "No space left on device")):
            with self.assertRaises(RouterError) as ctx:
                fsutil.atomic_write(target, "new content")
        self.assertIn("No space left", ctx.exception.message)
        self.assertEqual(target.read_text(), "old")
        self.assertEqual([p.name for p in self.dir.iterdir()], ["f.txt"])

    def test_process_killed_mid_write_keeps_old_file(self):
        target = self.dir / "f.txt"
        target.write_text("old")
        # The child writes a large payload and is killed by SIGKILL from inside os.replace: the rename never happens.
        script = textwrap.dedent(f"""
            import os, signal, sys
            sys.path.insert(0, {str(REPO / 'src')!r})
            from llm_router import fsutil
            os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
            fsutil.atomic_write(__import__('pathlib').Path({str(target)!r}), b"x" * 5_000_000)
        """)
        proc = subprocess.run([sys.executable, "-c", script])
        self.assertEqual(proc.returncode, -9)
        self.assertEqual(target.read_text(), "old")

    def test_unwritable_folder_is_a_clear_error(self):
        if os.geteuid() == 0:
            with mock.patch("tempfile.mkstemp", side_effect=PermissionError(13, "Permission denied")):
                with self.assertRaises(RouterError) as ctx:
                    fsutil.atomic_write(self.dir / "f", "x")
        else:
            ro = self.dir / "ro"
            ro.mkdir(mode=0o500)
            with self.assertRaises(RouterError) as ctx:
                fsutil.atomic_write(ro / "f", "x")
        self.assertIn("Permission denied", ctx.exception.message)

    def test_private_file_and_dir(self):
        path = fsutil.write_private(self.dir / "secrets" / "key", "s3cret")
        self.assertEqual(fsutil.file_mode(path), 0o600)
        self.assertEqual(fsutil.file_mode(path.parent), 0o700)
        loose = self.dir / "loose"
        loose.mkdir(mode=0o755)
        fsutil.ensure_private_dir(loose)
        self.assertEqual(fsutil.file_mode(loose), 0o700)


def _hold_lock(path, ready, release):
    lock = fsutil.FileLock(Path(path))
    with lock:
        ready.set()
        release.wait(30)


class FileLockTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_lock_held_elsewhere_names_the_holder(self):
        path = self.dir / "router.lock"
        ctx = multiprocessing.get_context("fork")
        ready, release = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_lock, args=(str(path), ready, release))
        holder.start()
        self.addCleanup(holder.join, 10)
        self.addCleanup(release.set)
        self.assertTrue(ready.wait(10))
        with self.assertRaises(RouterError) as err:
            fsutil.FileLock(path, timeout=0.2).acquire()
        self.assertEqual(err.exception.exit_code, CONFLICT)
        self.assertIn(f"pid {holder.pid}", err.exception.message)
        release.set()
        holder.join(10)
        with fsutil.FileLock(path, timeout=5):
            pass

    def test_reentrant_in_one_process(self):
        lock = fsutil.FileLock(self.dir / "l")
        with lock:
            with lock:
                self.assertEqual(lock.holder(), os.getpid())
            self.assertEqual(lock.holder(), os.getpid())
        self.assertIsNone(lock.holder())


if __name__ == "__main__":
    unittest.main()
