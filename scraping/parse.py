"""The one parser of Bing's image results, shared by both engines.

Each result is an `a.iusc` element whose `m` attribute holds HTML-escaped JSON. BeautifulSoup
unescapes the attribute and json.loads reads it, so URLs with `&`, any extension and any key
order come through as Bing wrote them (no regex over raw HTML).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from bs4 import BeautifulSoup

# Text a block page shows instead of results (Bing's own captcha, and the usual bot walls).
BLOCK_MARKERS = ("captcha", "unusual traffic", "are you a robot", "verify you are a human",
                 "verify you are human", "too many requests", "challenge-form")


@dataclass(frozen=True)
class Result:
    murl: str            # the full-size image
    purl: str = ""       # the page it was found on
    turl: str = ""       # Bing's thumbnail
    title: str = ""


@dataclass
class Page:
    results: list[Result] = field(default_factory=list)
    skipped: int = 0      # a.iusc elements whose m was missing or not JSON
    blocked: str = ""     # why the page looks like a block/captcha page ("" when it does not)


def parse_page(html: str) -> Page:
    soup = BeautifulSoup(html, "lxml")
    page = Page()
    for anchor in soup.select("a.iusc"):
        try:
            meta = json.loads(anchor.get("m") or "")
            murl = meta["murl"]
        except (ValueError, KeyError, TypeError):
            page.skipped += 1
            continue
        if not isinstance(murl, str) or not murl.strip():
            page.skipped += 1
            continue
        page.results.append(Result(murl=murl.strip(), purl=str(meta.get("purl") or ""),
                                   turl=str(meta.get("turl") or ""), title=str(meta.get("t") or "")))
    if not page.results:
        page.blocked = block_reason(soup)
    return page


def block_reason(soup: BeautifulSoup) -> str:
    """A captcha or rate-limit page: its marker text, else "". Only asked when no results came."""
    if soup.select_one("form#b_captcha, #b_captcha, iframe[src*=captcha], div.captcha"):
        return "captcha form on the page"
    text = soup.get_text(" ", strip=True).lower()
    title = (soup.title.get_text(strip=True).lower() if soup.title else "")
    for marker in BLOCK_MARKERS:
        if marker in text or marker in title:
            return f"the page says {marker!r}"
    return ""
