"""The HTML kit every page uses: the page shell and its one stylesheet, escaping, tables, cards,
sections, figures and embedded images.

Pages (report, dedupe review, scrape review, leak check, evaluation errors ...) build their
body from these pieces and call page(); nothing else writes <html>, CSS or escapes by hand.
Pages are self-contained where they embed images (data: URIs) and link files relatively
otherwise, so the export folder can be zipped and sent.
"""
from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde2ea;padding:8px 28px;z-index:1}
nav a{margin-right:16px;color:#2a5db0;text-decoration:none}
main{padding:8px 28px 40px;max-width:1400px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:10px 16px;min-width:110px}
.card .value{font-size:26px;font-weight:600}.card .label{color:#5b6472;font-size:12px}
.card.bad .value{color:#c62828}.card.warn .value{color:#d26a00}.card.good .value{color:#2e7d32}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:6px 20px 16px;margin:16px 0}
h2{font-size:18px;margin:12px 0 6px}h3{font-size:15px;margin:14px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{white-space:pre-wrap;border-bottom:1px solid #e6e9ef;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.url{overflow-wrap:anywhere;max-width:700px;white-space:normal}
img.plot{max-width:520px;width:100%;border:1px solid #eef0f4;border-radius:4px}
.note{color:#5b6472;font-size:13px}.small{font-size:12px;color:#5b6472}.warn{color:#d26a00}
.banner{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060;display:inline-block;border-radius:4px}
.alert{background:#fdecea;border:1px solid #d62728;padding:.5em 1em;margin:1em 0;border-radius:4px}
summary{cursor:pointer;font-weight:600;margin:10px 0 4px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}
.figures{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;width:204px;font-size:12px;border:3px solid #ccc;border-radius:4px;padding:3px;background:#fff}
figure img{width:100%;height:auto;display:block;background:#eee}
figcaption{overflow-wrap:anywhere}
figure.good{border-color:#2ca02c}figure.bad{border-color:#d62728}figure.other{border-color:#9467bd}
.badge{display:inline-block;padding:0 .4em;border-radius:3px;color:#fff;font-weight:bold;background:#555}
.badge.good{background:#2ca02c}.badge.info{background:#1f77b4}.badge.other{background:#9467bd}
.badge.bad{background:#d62728}
"""


class Raw(str):
    """HTML built by this kit (or a page from its pieces): table() does not escape it."""


def esc(value) -> str:
    return escape(str(value))


def page(title: str, body: str, subtitle: str = "", nav: list[tuple[str, str]] | None = None,
         heading: str | None = None) -> str:
    """A whole page: header (heading, default the title), optional section links, main."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(text)}</a>' for anchor, text in nav or [])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{STYLE}</style></head>'
            f'<body><header><h1>{esc(heading or title)}</h1>'
            + (f"<p>{esc(subtitle)}</p>" if subtitle else "") + "</header>"
            + (f"<nav>{links}</nav>" if links else "")
            + f"<main>{body}</main></body></html>\n")


def table(header: list, rows: list[list], numeric_from: int = 1) -> str:
    """A table; numbers right-aligned from column numeric_from on, floats to 3 places."""
    if not rows:
        return ""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(str(h) for h in header) else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            numeric = i >= numeric_from and isinstance(cell, (int, float)) and not isinstance(cell, bool)
            text = f"{cell:.3f}" if isinstance(cell, float) else cell
            shown = text if isinstance(cell, Raw) else esc(text)
            cells.append(f'<td class="num">{shown}</td>' if numeric else f"<td>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Raw(f"<table>{head}<tbody>{''.join(body)}</tbody></table>")


def frame_table(frame, numeric_from: int = 1, index: bool = True) -> str:
    """A pandas DataFrame as table() draws it."""
    data = frame.reset_index() if index else frame
    rows = [[v.item() if hasattr(v, "item") else v for v in row] for row in data.itertuples(index=False)]
    return table([str(c) for c in data.columns], rows, numeric_from)


def card(label: str, value, tone: str = "") -> str:
    return Raw(f'<div class="card {esc(tone)}"><div class="value">{esc(value)}</div>'
               f'<div class="label">{esc(label)}</div></div>')


def cards(*items: str) -> str:
    return Raw(f'<div class="cards">{"".join(items)}</div>')


def section(anchor: str, title: str, body: str, note: str = "", css: str = "") -> str:
    """A section; `note` is HTML from this kit or a page (escape user text with esc())."""
    note_html = f'<p class="note">{note}</p>' if note else ""
    css_attr = f' class="{esc(css)}"' if css else ""
    return Raw(f'<section id="{esc(anchor)}"{css_attr}><h2>{esc(title)}</h2>{note_html}{body}</section>')


def grid(*parts: str) -> str:
    return Raw('<div class="grid">' + "".join(f"<div>{p}</div>" for p in parts if p) + "</div>")


def png_data(data: bytes, alt: str, css: str = "plot") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return Raw(f'<img class="{esc(css)}" alt="{esc(alt)}" src="data:image/png;base64,{encoded}">')


def jpeg_data(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return Raw(f'<img loading="lazy" alt="{esc(alt)}" src="data:image/jpeg;base64,{encoded}">')


def png_file(path: str | Path | None, alt: str) -> str:
    """A PNG file embedded, or "" if it is missing."""
    if not path or not Path(path).is_file():
        return ""
    return png_data(Path(path).read_bytes(), alt)


def figure_png(fig, alt: str) -> str:
    """A matplotlib Figure embedded as a PNG."""
    import io
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return png_data(buffer.getvalue(), alt)


def relative_link(target: Path, page_folder: Path, text: str) -> str:
    href = os.path.relpath(target, page_folder).replace(os.sep, "/")
    return Raw(f'<a href="{esc(href)}">{esc(text)}</a>')


def url_link(url: str | None, text: str) -> str:
    """A link to a URL from outside (a result page, a manifest record): http(s) only, so a
    `javascript:` URL stays inert text."""
    url = url or ""
    if not url.lower().startswith(("http://", "https://")):
        return esc(text)
    return Raw(f'<a href="{esc(url)}">{esc(text)}</a>')


def figure(image_html: str, caption: str, tone: str = "", href: str | None = None) -> str:
    """A captioned thumbnail; caption is HTML (escape user text with esc())."""
    inner = f'<a href="{esc(href)}">{image_html}</a>' if href else image_html
    css = f' class="{esc(tone)}"' if tone else ""
    return Raw(f"<figure{css}>{inner}<figcaption>{caption}</figcaption></figure>")


def figures(items: list[str]) -> str:
    return Raw(f'<div class="figures">{"".join(items)}</div>')


def badge(text: str, tone: str = "") -> str:
    return Raw(f'<span class="badge {esc(tone)}">{esc(text)}</span>')
