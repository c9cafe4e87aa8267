"""export/scrape.html: the last scrape run at a glance: thumbnails of what was saved (with
title, source page and image URL) and every URL turned away, with its reason."""
from __future__ import annotations

from dataset import atomic, html, manifest
from dataset.layout import Dataset

from .store import read_jsonl


def _figure(record: dict) -> str:
    name = record["file"]
    image = html.Raw(f'<img loading="lazy" src="../images/{html.esc(name)}" alt="{html.esc(name)}">')
    converted = f" · converted: {html.esc(record['converted'])}" if record.get("converted") else ""
    caption = (f"#{html.esc(record.get('rank'))} {html.esc(record.get('title', ''))}<br>"
               f"{html.esc(record.get('width'))}x{html.esc(record.get('height'))}{converted}<br>"
               f"{html.url_link(record.get('purl'), 'page')} · {html.url_link(record.get('murl'), 'image')}")
    return html.figure(image, caption, href=f"../images/{name}")


def write_page(dataset: Dataset, summary) -> None:
    saved = set(summary.files)
    records = [r for r in manifest.read_records(dataset) if r.get("event") == manifest.ADDED and r["file"] in saved]
    turned_away = [entry for entry in read_jsonl(dataset.export / "scrape-log.jsonl")
                   if entry.get("query") == summary.query][-500:]
    rows = [[x.get("reason", ""), x.get("rank", ""), html.Raw(f'<span class="url">{html.esc(x.get("url", ""))}</span>'),
             x.get("detail", "")] for x in turned_away]
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.rejected.items())) or "none"
    body = (f"<p>{html.esc(summary.line())}. Rejected: {html.esc(counts)}.</p>"
            f"<p><b>Stopped: {html.esc(summary.stopped)}</b></p>"
            + html.section("saved", f"Saved this run ({len(records)})", html.figures([_figure(r) for r in records]))
            + html.section("turned-away", "Turned away (this query, all runs, last 500)",
                           html.table(["reason", "rank", "URL", "detail"], rows, numeric_from=99)))
    page = html.page(f"scrape: {summary.query}", body, heading=f"scrape: {summary.query} ({summary.engine})")
    atomic.write_text(dataset.export / "scrape.html", page)
