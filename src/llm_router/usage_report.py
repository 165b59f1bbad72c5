"""`llm-router usage --html FILE`: one self-contained page (inline CSS and SVG, no script, nothing fetched) with
the same tables as `usage --json` (one per grouping) and a requests-per-hour chart per model."""
from __future__ import annotations

import html
import time

from .usage import BY_KEYS, OUTCOMES

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d232b;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}.meta{color:#5b6675;margin:0 0 16px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;margin-bottom:8px}
th,td{padding:5px 10px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f0f3f7;font-weight:600}
.bad{color:#b42318;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{background:#fff;box-shadow:0 1px 2px #0001;padding:8px 12px}.chart h3{font-size:14px;margin:0 0 4px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
COLUMNS = (("requests", "requests"), ("ok", "ok"), ("failures", "failures"), ("streamed", "streamed"),
           ("tokens_in", "tokens in"), ("tokens_out", "tokens out"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"))
FAILURE_KINDS = tuple(o for o in OUTCOMES if o != "ok")


def _cell(value) -> str:
    return "-" if value is None else html.escape(str(value))


def table(by: str, rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in COLUMNS)
    head += "".join(f"<th>{html.escape(kind)}</th>" for kind in FAILURE_KINDS)
    body = []
    for row in rows:
        cells = [f'<td data-col="{by}">{_cell(row[by])}</td>']
        for key, _ in COLUMNS:
            css = ' class="bad"' if key == "failures" and row[key] else ""
            cells.append(f'<td data-col="{key}"{css}>{_cell(row[key])}</td>')
        for kind in FAILURE_KINDS:
            cells.append(f'<td data-col="{kind}">{row["by_outcome"].get(kind, 0)}</td>')
        body.append(f'<tr data-key="{html.escape(str(row[by]))}">{"".join(cells)}</tr>')
    return (f'<table id="by-{by}"><thead><tr><th>{html.escape(by)}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def chart(title: str, hours: list[dict], width: int = 460, height: int = 140) -> str:
    """Bars of requests per hour (failures stacked in red), axis labels every few hours."""
    top = max([h["requests"] for h in hours] + [1])
    left, bottom = 34, 20
    plot_w, plot_h = width - left - 8, height - bottom - 8
    step = plot_w / max(len(hours), 1)
    bars = []
    for i, hour in enumerate(hours):
        x = left + i * step + step * 0.1
        w = max(step * 0.8, 1)
        ok_h = (hour["requests"] - hour["failures"]) / top * plot_h
        bad_h = hour["failures"] / top * plot_h
        label = time.strftime("%d %H:00", time.localtime(hour["hour"]))
        bars.append(f'<rect x="{x:.1f}" y="{8 + plot_h - ok_h - bad_h:.1f}" width="{w:.1f}" height="{ok_h:.1f}" '
                    f'fill="#2f6fdf"><title>{label}: {hour["requests"]} requests</title></rect>')
        if bad_h:
            bars.append(f'<rect x="{x:.1f}" y="{8 + plot_h - bad_h:.1f}" width="{w:.1f}" height="{bad_h:.1f}" '
                        f'fill="#d92d20"><title>{label}: {hour["failures"]} failed</title></rect>')
    every = max(1, len(hours) // 6)
    ticks = [f'<text x="{left + i * step + step / 2:.1f}" y="{height - 5}" font-size="10" text-anchor="middle" '
             f'fill="#5b6675">{time.strftime("%H:00", time.localtime(h["hour"]))}</text>'
             for i, h in enumerate(hours) if i % every == 0]
    axis = (f'<line x1="{left}" y1="{8 + plot_h}" x2="{width - 8}" y2="{8 + plot_h}" stroke="#9aa4b2"/>'
            f'<text x="{left - 4}" y="14" font-size="10" text-anchor="end" fill="#5b6675">{top}</text>'
            f'<text x="{left - 4}" y="{8 + plot_h}" font-size="10" text-anchor="end" fill="#5b6675">0</text>')
    return (f'<div class="chart" data-model="{html.escape(title)}"><h3>{html.escape(title)}</h3>'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="requests per hour for {html.escape(title)}">{axis}{"".join(bars)}{"".join(ticks)}</svg>'
            '<div class="legend"><span style="background:#2f6fdf"></span>ok<span style="background:#d92d20">'
            '</span>failed</div></div>')


def page(report: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["since"]))
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(report["until"]))
    parts = [f"<h1>llm-router usage</h1><p class=\"meta\">{since} to {until} · {report['total']['requests']} "
             f"requests, {report['total']['failures']} failed · store {html.escape(report['store']['path'])}"
             f" · {report['store']['dropped']} rows dropped</p>", "<h2>Requests per hour, by model</h2>",
             '<div class="charts">']
    parts += [chart(name, hours) for name, hours in sorted(report["per_hour_by_model"].items())] or \
        ["<p>No requests in this window.</p>"]
    parts.append("</div>")
    for by in BY_KEYS:
        parts.append(f"<h2>By {html.escape(by)}</h2>")
        parts.append(table(by, report["tables"][by]))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>llm-router usage</title>"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:\">"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
