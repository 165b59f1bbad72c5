"""`usage --html`: a self-contained page whose tables say what `usage --json` says; it opens in headless Chromium
with no console errors (skipped with the reason where Chromium is missing)."""
from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from llm_router import usage as store
from llm_router.commands import usage as cmd
from llm_router.usage_report import COLUMNS, FAILURE_KINDS, page

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


class _Tables(html.parser.HTMLParser):
    """{table id: [{data-col: text}]}, plus whether anything would be fetched."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.current: str | None = None
        self.row: dict | None = None
        self.col: str | None = None
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.external.append(attrs[key])
        if tag == "script":
            self.scripts += 1
        if tag == "table":
            self.current = attrs.get("id")
            self.tables[self.current] = []
        elif tag == "tr" and self.current and "data-key" in attrs:
            self.row = {}
        elif tag == "td" and self.row is not None:
            self.col = attrs.get("data-col")
            self.row[self.col] = ""

    def handle_endtag(self, tag):
        if tag == "tr" and self.row is not None:
            self.tables[self.current].append(self.row)
            self.row = None
        elif tag == "td":
            self.col = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.row is not None and self.col:
            self.row[self.col] += data


def check_page_against_json(test: unittest.TestCase, text: str, data: dict) -> None:
    parser = _Tables()
    parser.feed(text)
    test.assertEqual(parser.external, [])
    test.assertEqual(parser.scripts, 0)
    test.assertNotIn("http://", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    test.assertNotIn("https://", text)
    for by, rows in data["tables"].items():
        shown = parser.tables[f"by-{by}"]
        test.assertEqual(len(shown), len(rows), by)
        for row, cells in zip(rows, shown):
            test.assertEqual(cells[by], str(row[by]))
            for key, _ in COLUMNS:
                test.assertEqual(cells[key], "-" if row[key] is None else str(row[key]), (by, key))
            for kind in FAILURE_KINDS:
                test.assertEqual(int(cells[kind]), row["by_outcome"].get(kind, 0), (by, kind))
    for model in data["per_hour_by_model"]:
        test.assertIn(f'data-model="{model}"', text)


def _fake_rows(now: float) -> list[dict]:
    rows = []
    for i in range(60):
        outcome = "429" if i % 9 == 0 else "5xx" if i % 13 == 0 else "ok"
        rows.append({"ts": now - i * 300, "model": "coder" if i % 2 else "chat",
                     "deployment": f"{'coder' if i % 2 else 'chat'}/cliproxy/gpt-5", "provider": "openai",
                     "protocol": ("chat", "responses", "messages")[i % 3], "stream": i % 2, "outcome": outcome,
                     "status": 200 if outcome == "ok" else int(outcome.replace("xx", "00")),
                     "latency_ms": 20 + i, "ttft_ms": 10 + i if i % 2 else None,
                     "tokens_in": 10, "tokens_out": 5 if outcome == "ok" else None})
    return rows


class _Cfg:
    """The parts of RouterConfig that `commands.usage.report` reads."""

    def __init__(self, root: Path):
        from llm_router.layout import Layout

        self.layout = Layout(root=root, runtime_dir=root / ".router" / "runtime")
        self.models = []


class HtmlReport(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-report-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.cfg = _Cfg(self.root)
        writer = store.Writer(self.cfg.layout.usage_dir).start()
        self.addCleanup(writer.stop)
        now = time.time()
        for row in _fake_rows(now):
            writer.submit(row)
        self.assertTrue(writer.flush())
        self.data = cmd.report(self.cfg, since="6h")

    def test_tables_match_the_json(self):
        self.assertEqual(self.data["total"]["requests"], 60)
        check_page_against_json(self, page(self.data), self.data)

    @unittest.skipUnless(CHROMIUM, "Chromium is not installed (Debian: apt-get install -y chromium)")
    def test_opens_in_headless_chromium_without_console_errors(self):
        target = self.root / "usage.html"
        target.write_text(page(self.data))
        shot = self.root / "usage.png"
        profile = self.root / "chrome-profile"
        proc = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--window-size=1200,1400", f"--screenshot={shot}", target.as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(self.root)})
        self.assertTrue(shot.is_file() and shot.stat().st_size > 1000, proc.stderr[-2000:])
        console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
        self.assertEqual(console, [])
        if os.environ.get("LLM_ROUTER_SCREENSHOT"):
            shutil.copy(shot, os.environ["LLM_ROUTER_SCREENSHOT"])


if __name__ == "__main__":
    unittest.main()
