"""The usage store shared between instances through Redis (usage_share.py): two stores, one real redis-server
(started here on a free loopback port, with a password), writers driven directly (no LiteLLM); the migration of a
store made before `instance` existed; `usage --by instance --json`."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from llm_router import usage as store
from llm_router.litellm import usage_hook
from llm_router.standin.process import free_port
from tests.support import TempRepo

HAVE_REDIS = shutil.which("redis-server") is not None
PASSWORD = "test-usage-share-pw"
WAIT = 30.0  # seconds a poll may take on a loaded machine


def row(i: int = 0, **extra) -> dict:
    return {"ts": time.time(), "model": "coder", "deployment": "coder/cliproxy/gpt-5", "provider": "openai",
            "protocol": "chat", "stream": False, "outcome": "ok", "status": 200, "latency_ms": 10.0 + i,
            "tokens_in": 3, "tokens_out": 4, **extra}


def rows_of(usage_dir: Path) -> list[dict]:
    """Every row of the store (none while its writer has not made it yet); read-only, never creating it."""
    path = store.db_path(usage_dir)
    if not path.exists():
        return []
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def wait_for(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class RedisServer:
    """redis-server on 127.0.0.1:<free port> with a password, nothing on disk; stopped by `stop` (also in cleanup)."""

    def __init__(self, test: unittest.TestCase, folder: Path, port: int | None = None):
        self.port = port or free_port()
        conf = folder / "redis.conf"
        conf.write_text(f'bind 127.0.0.1\nport {self.port}\nrequirepass "{PASSWORD}"\nsave ""\nappendonly no\n'
                        f'dir {folder}\ndaemonize no\nlogfile ""\n')
        os.chmod(conf, 0o600)
        self.log = open(folder / "redis.log", "ab")
        test.addCleanup(self.log.close)
        self.proc = subprocess.Popen(["redis-server", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        test.addCleanup(self.stop)
        target = self.target()
        ok = wait_for(lambda: self._ping(target), timeout=20)
        test.assertTrue(ok, (folder / "redis.log").read_text()[-1000:])

    @staticmethod
    def _ping(target: store.RedisTarget) -> bool:
        connection = store.Connection(target)
        try:
            return connection.execute([("PING",)]) == ["PONG"]
        except store.RedisError:
            return False
        finally:
            connection.close()

    def target(self) -> store.RedisTarget:
        return store.RedisTarget(host="127.0.0.1", port=self.port, password=PASSWORD)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class _Base(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-share-"))
        self.addCleanup(shutil.rmtree, self.root, True)

    def writer(self, usage_dir: Path, redis: store.RedisTarget | None = None) -> store.Writer:
        writer = store.Writer(usage_dir, redis=redis).start()
        self.addCleanup(writer.stop)
        return writer


@unittest.skipUnless(HAVE_REDIS, "redis-server is not installed (.ci/run installs Debian's redis-server)")
class SharedThroughRedis(_Base):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer(self, self.root)

    def test_two_instances_see_every_row_exactly_once(self):
        a_dir, b_dir = self.root / "a" / "runtime" / "usage", self.root / "b" / "runtime" / "usage"
        a, b = self.writer(a_dir, self.redis.target()), self.writer(b_dir, self.redis.target())
        for i in range(30):
            a.submit(row(i, model="from-a"))
        for i in range(20):
            b.submit(row(i, model="from-b"))
        self.assertTrue(a.flush() and b.flush())
        for usage_dir in (a_dir, b_dir):
            self.assertTrue(wait_for(lambda d=usage_dir: len(rows_of(d)) >= 50), len(rows_of(usage_dir)))
        for usage_dir in (a_dir, b_dir):
            rows = rows_of(usage_dir)
            self.assertEqual(len(rows), 50)
            self.assertEqual(len({r["uid"] for r in rows}), 50)
            self.assertEqual({r["instance"]: r["model"] for r in rows}, {a.instance: "from-a", b.instance: "from-b"})
        self.assertNotEqual(a.instance, b.instance)
        # stable per runtime folder, private, and nothing secret in a row or in the stream
        self.assertEqual(store.instance_id(a_dir), a.instance)
        self.assertEqual(stat.S_IMODE((a_dir / store.INSTANCE_NAME).stat().st_mode), 0o600)
        connection = store.Connection(self.redis.target())
        self.addCleanup(connection.close)
        entries = connection.execute([("XRANGE", store.STREAM, "-", "+")])[0]
        self.assertEqual(len(entries), 50)
        self.assertNotIn(PASSWORD, json.dumps(entries) + json.dumps(rows_of(a_dir)))
        self.assertEqual((a.unshared, b.unshared, a.dropped, b.dropped), (0, 0, 0, 0))
        # more rows later are read from the last id seen, not again from the start
        a.submit(row(99, model="from-a"))
        self.assertTrue(a.flush())
        self.assertTrue(wait_for(lambda: len(rows_of(b_dir)) == 51))
        self.assertEqual(b.share.imported, 31)

    def test_two_workers_of_one_instance_never_duplicate(self):
        shared_dir, other_dir = self.root / "one" / "usage", self.root / "other" / "usage"
        first, second = self.writer(shared_dir, self.redis.target()), self.writer(shared_dir, self.redis.target())
        other = self.writer(other_dir, self.redis.target())
        for i in range(40):
            other.submit(row(i, model="remote"))
        for i in range(10):
            (first if i % 2 else second).submit(row(i, model="local"))
        self.assertTrue(other.flush() and first.flush() and second.flush())
        self.assertTrue(wait_for(lambda: len(rows_of(shared_dir)) >= 50))
        # both workers have polled the stream at least once after the last entry (each pulls on every poll)
        self.assertTrue(wait_for(lambda: first.share.imported + second.share.imported >= 40))
        self.assertTrue(wait_for(lambda: len(rows_of(other_dir)) >= 50))
        rows = rows_of(shared_dir)
        self.assertEqual(len(rows), 50)
        self.assertEqual(first.instance, second.instance)
        self.assertEqual(sum(r["model"] == "remote" for r in rows), 40)
        self.assertEqual(first.share.imported + second.share.imported, 40)
        self.assertEqual(len(rows_of(other_dir)), 50)

    @mock.patch("llm_router.usage_share.RETRY_AFTER", 0.2)
    def test_redis_stopped_midway_rows_stay_local_counted_and_are_shared_when_it_is_back(self):
        a_dir, b_dir = self.root / "a" / "usage", self.root / "b" / "usage"
        a, _ = self.writer(a_dir, self.redis.target()), self.writer(b_dir, self.redis.target())
        for i in range(5):
            a.submit(row(i))
        self.assertTrue(a.flush())
        self.assertTrue(wait_for(lambda: len(rows_of(b_dir)) == 5))
        self.redis.stop()
        for i in range(25):
            a.submit(row(i))  # the request path: a put_nowait whatever Redis does
        self.assertTrue(a.flush())
        self.assertEqual(len(rows_of(a_dir)), 30)
        self.assertEqual((a.written, a.dropped), (30, 0))
        self.assertTrue(wait_for(lambda: a.unshared == 25), a.unshared)
        self.assertTrue(a.share.error)
        self.assertNotIn(PASSWORD, a.share.error)
        self.assertEqual(len(rows_of(b_dir)), 5)
        self.assertTrue(wait_for(lambda: _worker_unshared(a_dir, a.pid) == 25))
        # Redis back (empty, as a managed one without persistence restarts): the 25 held back go first, then new rows
        RedisServer(self, self.root, port=self.redis.port)
        a.submit(row(100, model="after"))
        self.assertTrue(a.flush())
        self.assertTrue(wait_for(lambda: len(rows_of(b_dir)) == 31), len(rows_of(b_dir)))
        self.assertEqual([r["model"] for r in rows_of(b_dir)][-1:], ["after"])
        self.assertTrue(wait_for(lambda: a.unshared == 0), a.unshared)
        self.assertTrue(wait_for(lambda: _worker_unshared(a_dir, a.pid) == 0))


def _worker_unshared(usage_dir: Path, pid: int) -> int | None:
    with store.Reader(usage_dir) as reader:
        return next((w["unshared"] for w in reader.workers() if w["pid"] == pid), None)


OLD_SCHEMA = """
CREATE TABLE requests (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, model TEXT, deployment TEXT, provider TEXT, protocol TEXT,
  stream INTEGER, outcome TEXT, status INTEGER, latency_ms REAL, ttft_ms REAL, tokens_in INTEGER,
  tokens_out INTEGER, trace TEXT, error TEXT, rl_requests INTEGER, rl_tokens INTEGER);
CREATE TABLE workers (
  pid INTEGER PRIMARY KEY, started REAL, seen REAL, written INTEGER, dropped INTEGER, reset_seq INTEGER,
  max_mb INTEGER, max_days INTEGER);
"""


class InstanceIdTest(unittest.TestCase):
    def test_workers_starting_together_agree_on_one_instance_id(self):
        import threading

        for _ in range(20):  # each round a fresh folder and 8 workers making the id at the same moment
            folder = Path(tempfile.mkdtemp(prefix="instance-id-"))
            self.addCleanup(shutil.rmtree, folder, True)
            barrier, found = threading.Barrier(8), []

            def make() -> None:
                barrier.wait()
                found.append(store.instance_id(folder))
            threads = [threading.Thread(target=make) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            self.assertEqual(len(set(found)), 1, found)
            self.assertEqual((folder / store.INSTANCE_NAME).read_text().strip(), found[0])
            self.assertEqual(stat.S_IMODE((folder / store.INSTANCE_NAME).stat().st_mode), 0o600)
            self.assertEqual([p.name for p in folder.iterdir()], [store.INSTANCE_NAME])  # no draft left


class Migration(_Base):
    def old_store(self, usage_dir: Path, rows: int) -> None:
        usage_dir.mkdir(parents=True)
        with sqlite3.connect(store.db_path(usage_dir)) as conn:
            conn.executescript(OLD_SCHEMA)
            conn.executemany("INSERT INTO requests (ts, model, outcome) VALUES (?, 'old', 'ok')",
                             [(time.time(),)] * rows)

    def test_an_old_store_is_read_then_migrated(self):
        usage_dir = self.root / "runtime" / "usage"
        self.old_store(usage_dir, 3)
        with store.Reader(usage_dir) as reader:  # before any writer: read as it is, never changed
            old = reader.requests(0)
        self.assertEqual([(r["model"], r["instance"]) for r in old], [("old", None)] * 3)
        writer = self.writer(usage_dir)
        writer.submit(row(model="new"))
        writer.submit(row(model="new"))
        self.assertTrue(writer.flush())
        rows = rows_of(usage_dir)
        self.assertEqual([r["model"] for r in rows], ["old"] * 3 + ["new"] * 2)
        self.assertEqual({r["instance"] for r in rows}, {writer.instance})  # old rows were this folder's
        self.assertEqual([r["uid"] is None for r in rows], [True] * 3 + [False] * 2)
        with sqlite3.connect(store.db_path(usage_dir)) as conn:
            self.assertIn("unshared", {r[1] for r in conn.execute("PRAGMA table_info(workers)")})
            self.assertEqual(store.migrate(conn), [])  # a second time: nothing to add
        with self.assertRaises(sqlite3.IntegrityError), sqlite3.connect(store.db_path(usage_dir)) as conn:
            conn.execute("INSERT INTO requests (ts, uid) VALUES (1, ?)", (rows[-1]["uid"],))

    def test_without_redis_rows_are_local_with_an_instance(self):
        usage_dir = self.root / "usage"
        writer = self.writer(usage_dir)
        writer.submit(row(uid="forged", instance="forged"))
        self.assertTrue(writer.flush())
        (only,) = rows_of(usage_dir)
        self.assertEqual(only["instance"], writer.instance)
        self.assertNotEqual(only["uid"], "forged")
        self.assertIsNone(writer.share)


class HookFindsRedis(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-share-hook-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.usage_dir = self.root / ".router" / "runtime" / "usage"
        self.cache = self.root / ".router" / "cache" / "routertool.parsed.json"
        self.cache.parent.mkdir(parents=True)

    def target(self, services: dict, env: dict | None = None):
        self.cache.write_text(json.dumps({"data": {"services": services}}))
        return usage_hook.redis_for(self.usage_dir, {"REDIS_PASSWORD": "pw", **(env or {})})

    def test_managed_external_off_and_bad(self):
        self.assertEqual(self.target({"redis": {"enabled": True, "port": 6390}}),
                         store.RedisTarget("127.0.0.1", 6390, "pw"))
        self.assertEqual(self.target({"redis": {"url": "rediss://r.example:6380/2"}}),
                         store.RedisTarget("r.example", 6380, "pw", tls=True, db=2))
        self.assertIsNone(self.target({"redis": {"enabled": False}}))
        self.assertIsNone(self.target({"litellm": {}}))
        self.assertIsNone(self.target({"redis": {"url": "redis://u:p@h:1"}}))
        self.assertIsNone(self.target({"redis": {"enabled": True}}, env={"LLM_ROUTER_USAGE_SHARE": "0"}))
        self.assertNotIn("pw", repr(self.target({"redis": {"enabled": True}})))


CONFIG = """\
config_version: 2
services:
  cliproxyapi_plus: {{port: {cp}}}
  litellm: {{port: {ll}}}
providers:
  cliproxy: {{type: cliproxyapi_plus}}
models:
  - name: coder
    deployments: [{{provider: cliproxy, model: gpt-5-codex}}]
"""


class UsageByInstance(TempRepo):
    def test_usage_by_instance_json(self):
        self.write_config(CONFIG.format(cp=free_port(), ll=free_port()))
        usage_dir = self.root / ".router" / "runtime" / "usage"
        local = store.Writer(usage_dir).start()
        self.addCleanup(local.stop)
        for i in range(3):
            local.submit(row(i))
        self.assertTrue(local.flush())
        with sqlite3.connect(store.db_path(usage_dir)) as conn:  # as a pull from another instance leaves them
            conn.executemany("INSERT INTO requests (ts, model, outcome, uid, instance) VALUES (?, 'coder', ?, ?, ?)",
                             [(time.time(), "ok", "u1", "other-1"), (time.time(), "429", "u2", "other-1")])
        code, out, err = self.cli("--json", "usage", "--by", "instance")
        self.assertEqual(code, 0, err)
        data = json.loads(out)["data"]
        self.assertEqual(data["by"], "instance")
        self.assertEqual({r["instance"]: (r["requests"], r["failures"]) for r in data["rows"]},
                         {local.instance: (3, 0), "other-1": (2, 1)})


if __name__ == "__main__":
    unittest.main()
