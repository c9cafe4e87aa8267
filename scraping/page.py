"""export/scrape.html: the last scrape run at a glance: thumbnails of what was saved (with
title, source page and image URL) and every URL turned away, with its reason."""
from __future__ import annotations

import html

from dataset import atomic, manifest
from dataset.layout import Dataset

from .store import read_jsonl

STYLE = """body{font:14px sans-serif;margin:20px} .grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:180px} figure img{width:180px;height:135px;object-fit:contain;background:#eee}
figcaption{font-size:11px;overflow-wrap:anywhere} table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left} td.url{overflow-wrap:anywhere;max-width:700px}"""


def link(url: str | None) -> str:
    """An href for a URL from a result page: http(s) only, so a `javascript:` one stays inert."""
    url = url or ""
    return html.escape(url) if url.lower().startswith(("http://", "https://")) else ""


def write_page(dataset: Dataset, summary) -> None:
    saved = set(summary.files)
    records = [r for r in manifest.read_records(dataset) if r.get("event") == manifest.ADDED and r["file"] in saved]
    e = html.escape
    figures = "".join(
        f'<figure><a href="../images/{e(r["file"])}"><img loading="lazy" src="../images/{e(r["file"])}"></a>'
        f'<figcaption>#{r.get("rank")} {e(r.get("title", ""))}<br>{r.get("width")}x{r.get("height")}'
        f'{" · converted: " + e(r["converted"]) if r.get("converted") else ""}<br>'
        f'<a href="{link(r.get("purl"))}">page</a> · <a href="{link(r.get("murl"))}">image</a></figcaption></figure>'
        for r in records)
    turned_away = [entry for entry in read_jsonl(dataset.export / "scrape-log.jsonl")
                   if entry.get("query") == summary.query][-500:]
    rows = "".join(f'<tr><td>{e(x.get("reason", ""))}</td><td>{x.get("rank", "")}</td>'
                   f'<td class="url">{e(x.get("url", ""))}</td><td>{e(x.get("detail", ""))}</td></tr>'
                   for x in turned_away)
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.rejected.items())) or "none"
    body = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>scrape: {e(summary.query)}</title>"
            f"<style>{STYLE}</style></head><body><h1>scrape: {e(summary.query)} ({e(summary.engine)})</h1>"
            f"<p>{e(summary.line())}. Rejected: {e(counts)}.</p><p><b>Stopped: {e(summary.stopped)}</b></p>"
            f"<h2>Saved this run ({len(records)})</h2><div class='grid'>{figures}</div>"
            f"<h2>Turned away (this query, all runs, last 500)</h2><table><tr><th>reason</th><th>rank</th>"
            f"<th>URL</th><th>detail</th></tr>{rows}</table></body></html>")
    atomic.write_text(dataset.export / "scrape.html", body)
