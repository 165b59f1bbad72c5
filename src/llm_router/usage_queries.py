"""The usage store's read side, used by `llm-router usage`, `models` and `cooldown`: `Reader` opens the file
read-only (`mode=ro`; with WAL it never blocks the writer) and the aggregations (`summarize`, `per_hour`,
`percentile`) turn its rows into the report's figures.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from .usage_schema import COLUMNS, OUTCOMES, db_path


class Reader:
    """Read-only queries; a missing database reads as empty (`exists` False)."""

    def __init__(self, usage_dir: Path):
        self.path = db_path(usage_dir)
        self.exists = self.path.is_file()
        self.conn: sqlite3.Connection | None = None
        if self.exists:
            uri = self.path.resolve().as_uri() + "?mode=ro"  # as_uri escapes %, # and ? in the path
            self.conn = sqlite3.connect(uri, uri=True, timeout=5.0)
            self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rows(self, sql: str, params: tuple = ()) -> list[dict]:
        if self.conn is None:
            return []
        try:
            return [dict(r) for r in self.conn.execute(sql, params)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def requests(self, since: float) -> list[dict]:
        """The rows since `since`; in a store no writer has migrated yet, the columns it lacks read as null."""
        present = {r["name"] for r in self._rows("PRAGMA table_info(requests)")}
        shown = ", ".join(c if c in present else f"NULL AS {c}" for c in COLUMNS if c != "uid")
        return self._rows(f"SELECT {shown} FROM requests WHERE ts >= ? ORDER BY ts", (since,))

    def cooldowns(self, since: float | None = None) -> list[dict]:
        if since is None:
            return self._rows("SELECT * FROM cooldowns ORDER BY started")
        return self._rows("SELECT * FROM cooldowns WHERE COALESCE(ended, until) >= ? ORDER BY started", (since,))

    def workers(self) -> list[dict]:
        return self._rows("SELECT * FROM workers ORDER BY seen DESC")

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return round(ordered[index], 1)


BY_KEYS = ("model", "deployment", "provider", "protocol", "instance")  # instance: usage_share.instance_id


def summarize(rows: list[dict], by: str) -> list[dict]:
    """One entry per value of `by`: requests, failures by kind, tokens, latency p50/p95, streamed count."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(str(row.get(by) or "-"), []).append(row)
    result = []
    for key in sorted(groups):
        items = groups[key]
        outcomes = {name: 0 for name in OUTCOMES}
        for row in items:
            outcomes[row.get("outcome") if row.get("outcome") in outcomes else "error"] += 1
        latencies = [r["latency_ms"] for r in items if r.get("latency_ms") is not None and r.get("outcome") == "ok"]
        ttfts = [r["ttft_ms"] for r in items if r.get("ttft_ms") is not None]
        result.append({
            by: key, "requests": len(items), "ok": outcomes["ok"], "failures": len(items) - outcomes["ok"],
            "by_outcome": {k: v for k, v in outcomes.items() if k != "ok" and v},
            "streamed": sum(1 for r in items if r.get("stream")),
            "tokens_in": sum(r.get("tokens_in") or 0 for r in items),
            "tokens_out": sum(r.get("tokens_out") or 0 for r in items),
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "ttft_p50_ms": percentile(ttfts, 50),
        })
    return result


def per_hour(rows: list[dict], since: float, until: float) -> list[dict]:
    """Requests (and failures) per clock hour from `since` to `until`."""
    start = int(since // 3600 * 3600)
    buckets = {start + 3600 * i: [0, 0] for i in range(max(1, int((until - start) // 3600) + 1))}
    for row in rows:
        hour = int(row["ts"] // 3600 * 3600)
        if hour in buckets:
            buckets[hour][0] += 1
            buckets[hour][1] += row.get("outcome") != "ok"
    return [{"hour": hour, "requests": n, "failures": f} for hour, (n, f) in sorted(buckets.items())]
