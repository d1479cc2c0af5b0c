"""`tfoy history --serve`: a small web page over the job history on HDFS (no database, no JavaScript framework).

`/` lists the jobs (newest first, failed ones marked); `/job/<app_id>` shows one: its state and duration, a table
of tasks (outcome, attempts, last progress, final metrics), the metrics over the epochs as an inline SVG plot per
metric, the failing traceback, and the command for its logs. Each request reads HDFS afresh, so a job that ends
while the page is open appears on reload. Bound to 127.0.0.1 unless --host says otherwise: the records hold job
specs (secret env values are already replaced).
"""

from __future__ import annotations

import html
import logging
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from yarn_app import history

log = logging.getLogger(__name__)

_APP = re.compile(r"^/job/(application_\d+_\d+)$")
_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.failed{color:#b00}.ok{color:#070}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
svg{background:#fafafa;border:1px solid #ddd;margin:.3em 1em .3em 0}"""


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>").encode()


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def jobs_page(records: list[dict[str, Any]], problems: list[str], folder: str) -> bytes:
    rows = []
    for r in records:
        failed = r.get("final_status") != "SUCCEEDED"
        rows.append(f"<tr class='{'failed' if failed else 'ok'}'><td><a href='/job/{html.escape(r['app_id'])}'>"
                    f"{html.escape(r['app_id'])}</a></td><td>{html.escape(str(r.get('name')))}</td>"
                    f"<td>{html.escape(str(r.get('user')))}</td><td>{html.escape(str(r.get('state')))}</td>"
                    f"<td>{html.escape(str(r.get('final_status')))}</td><td>{_when(r.get('ended'))}</td>"
                    f"<td>{r.get('duration_s', 0):.0f} s</td></tr>")
    table = ("<table><tr><th>application</th><th>name</th><th>user</th><th>state</th><th>final status</th>"
             "<th>ended</th><th>duration</th></tr>" + "".join(rows) + "</table>") if rows else \
        f"<p>No job history yet in {html.escape(folder)}.</p>"
    notes = "".join(f"<p class='failed'>{html.escape(p)}</p>" for p in problems)
    return _page("tfoy job history", f"<h1>tfoy job history</h1><p>{html.escape(folder)}</p>{table}{notes}")


def _plot(name: str, points: list[tuple[float, float]]) -> str:
    """An SVG line plot of one metric over the epochs."""
    width, height, pad = 320, 160, 28
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in points)
    dots = "".join(f"<circle cx='{pad + (x - x0) * sx:.1f}' cy='{height - pad - (y - y0) * sy:.1f}' r='2.5'/>"
                   for x, y in points)
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='{html.escape(name)} by epoch'>"
            f"<text x='{pad}' y='16' font-size='12'>{html.escape(name)} by epoch: {ys[0]:.4g} → {ys[-1]:.4g}</text>"
            f"<polyline fill='none' stroke='#36c' stroke-width='2' points='{path}'/>{dots}"
            f"<text x='{pad}' y='{height - 8}' font-size='10'>epoch {x0:g}</text>"
            f"<text x='{width - pad - 40}' y='{height - 8}' font-size='10'>epoch {x1:g}</text></svg>")


def _plots(record: dict[str, Any]) -> str:
    """Metrics over the epochs of the chief (or the first task that has them)."""
    tasks = record.get("tasks", {})
    chosen = next((t for n, t in sorted(tasks.items(), key=lambda kv: not kv[0].startswith("chief"))
                   if t.get("epochs")), None)
    if not chosen:
        return "<p>No metrics over epochs were reported.</p>"
    series: dict[str, list[tuple[float, float]]] = {}
    for row in chosen["epochs"]:
        for name, value in row.items():
            if name != "epoch" and isinstance(value, int | float) and isinstance(row.get("epoch"), int | float):
                series.setdefault(name, []).append((float(row["epoch"]), float(value)))
    return "".join(_plot(n, pts) for n, pts in sorted(series.items()) if pts)


def job_page(record: dict[str, Any]) -> bytes:
    rows = []
    for name, t in record.get("tasks", {}).items():
        metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in (t.get("metrics") or {}).items())
        rows.append(f"<tr class='{'failed' if t.get('outcome') == 'failed' else ''}'><td>{html.escape(name)}</td>"
                    f"<td>{html.escape(str(t.get('outcome')))}</td><td>{html.escape(str(t.get('attempts', 1)))}</td>"
                    f"<td>{html.escape(str(t.get('last_progress') or ''))}</td><td>{html.escape(metrics)}</td></tr>")
    trace = record.get("traceback")
    app = html.escape(record["app_id"])
    verdict = "ok" if record.get("final_status") == "SUCCEEDED" else "failed"
    body = (f"<p><a href='/'>all jobs</a></p><h1>{app}</h1>"
            f"<p>{html.escape(str(record.get('name')))} by {html.escape(str(record.get('user')))}, queue "
            f"{html.escape(str(record.get('queue')))}: <b class='{verdict}'>"
            f"{html.escape(str(record.get('state')))} {html.escape(str(record.get('final_status')))}</b>, "
            f"{_when(record.get('started'))} to {_when(record.get('ended'))} ({record.get('duration_s', 0):.0f} s)"
            + (f"; {html.escape(record['how'])}" if record.get("how") and record["how"] != "ended" else "") + "</p>"
            "<h2>Tasks</h2><table><tr><th>task</th><th>outcome</th><th>attempts</th><th>last progress</th>"
            "<th>final metrics</th></tr>" + "".join(rows) + "</table>"
            f"<h2>Metrics</h2>{_plots(record)}"
            + (f"<h2>Traceback</h2><pre class='traceback'>{html.escape(trace)}</pre>" if trace else "")
            + (f"<h2>Diagnostics</h2><pre>{html.escape(record['diagnostics'])}</pre>"
               if record.get("diagnostics") else "")
            + f"<h2>Logs</h2><pre>{html.escape(record.get('logs') or 'tfoy logs ' + record['app_id'])}</pre>")
    return _page(record["app_id"], body)


def make_server(folder: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            try:
                if self.path in ("/", "/index.html"):
                    records, problems = history.list_records(folder)
                    self._send(200, jobs_page(records, problems, folder))
                elif match := _APP.match(self.path):
                    record = history.read(match.group(1), folder)
                    if record is None:
                        self._send(404, _page("not found", f"<p>No history of {html.escape(match.group(1))} in "
                                                           f"{html.escape(folder)}.</p>"))
                    else:
                        self._send(200, job_page(record))
                else:
                    self._send(404, _page("not found", "<p>Not found. <a href='/'>All jobs</a></p>"))
            except Exception as e:  # noqa: BLE001 - a page for any failure, never a dropped connection
                log.warning("history page %s: %s", self.path, e, exc_info=not isinstance(e, OSError | ValueError))
                self._send(500, _page("error", f"<p class='failed'>{html.escape(str(e))}</p>"))

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("history page: " + fmt, *args)

    return ThreadingHTTPServer((host, port), Handler)
