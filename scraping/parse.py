"""The one parser of Bing's image results, shared by both engines.

Each result is an `a.iusc` element whose `m` attribute holds HTML-escaped JSON. BeautifulSoup
unescapes the attribute and json.loads reads it, so URLs with `&`, any extension and any key
order come through as Bing wrote them (no regex over raw HTML).

Besides the results the parser reports what a page says when it has none: a captcha or
rate-limit wall (`blocked`), or Bing's genuine "There are no results for ..." (`no_results`).
Whether a page is results, the end, or a refusal is decided in bing.classify, not here.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bs4 import BeautifulSoup

# Text a block page shows instead of results (Bing's own captcha, and the usual bot walls).
BLOCK_MARKERS = ("captcha", "unusual traffic", "are you a robot", "verify you are a human",
                 "verify you are human", "too many requests", "challenge-form")
# What Bing says when a query really has no (more) results.
NO_RESULTS_MARKERS = ("there are no results for", "no results found for", "we didn't find any results",
                      "we did not find any results")

# Video tiles among image results. Bing marks them in three ways; any one is enough:
# - the tile carries Bing's video metadata (`div.vrhdata[vrhm]`, as on bing.com/videos, inside an
#   `mc_vtvc` card);
# - the thumbnail in `m` is a video thumbnail: Bing's ids are OVP.* for videos, OIP.* for images;
# - `murl` is a video file or a video page (YouTube, Vimeo, ...), which no image check could take.
VIDEO_MARKUP = "[vrhm], .vrhdata, .mc_vtvc, [class*=mc_vtvc]"
VIDEO_THUMBNAIL = re.compile(r"[?&]id=OVP\.", re.IGNORECASE)
VIDEO_SUFFIXES = (".mp4", ".m4v", ".webm", ".mov", ".avi", ".mkv", ".wmv", ".flv", ".m3u8", ".mpd", ".3gp")
VIDEO_PAGES = (("youtube.com", "/watch"), ("youtube.com", "/shorts/"), ("youtu.be", "/"),
               ("vimeo.com", "/"), ("dailymotion.com", "/video/"), ("tiktok.com", "/video/"))


@dataclass(frozen=True)
class Result:
    murl: str            # the full-size image
    purl: str = ""       # the page it was found on
    turl: str = ""       # Bing's thumbnail
    title: str = ""
    video: bool = False  # a video tile, not an image: never downloaded


@dataclass
class Page:
    results: list[Result] = field(default_factory=list)
    skipped: int = 0      # a.iusc elements whose m was missing or not JSON
    blocked: str = ""     # why the page looks like a block/captcha page ("" when it does not)
    no_results: str = ""  # Bing's own "There are no results for ..." ("" when it does not say so)
    empty: bool = False   # no visible text and no results: an empty body or an empty document

    @property
    def images(self) -> list[Result]:
        return [r for r in self.results if not r.video]


def parse_page(html: str) -> Page:
    soup = BeautifulSoup(html or "", "lxml")
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
        turl = str(meta.get("turl") or "")
        page.results.append(Result(murl=murl.strip(), purl=str(meta.get("purl") or ""), turl=turl,
                                   title=str(meta.get("t") or ""),
                                   video=is_video(anchor, murl.strip(), turl)))
    if not page.results:
        page.blocked = block_reason(soup)
        page.no_results = no_results_message(soup)
        page.empty = not soup.get_text(" ", strip=True) and page.skipped == 0
    return page


def is_video(anchor, murl: str, turl: str) -> bool:
    """A video tile: Bing's video markup in the tile, a video thumbnail id, or a video URL."""
    tile = anchor.find_parent("li") or anchor.parent
    if tile is not None and len(tile.select("a.iusc")) > 1:
        tile = None  # not one result's tile: its markup says nothing about this anchor
    if anchor.select_one(VIDEO_MARKUP) or (tile is not None and tile.select_one(VIDEO_MARKUP)):
        return True
    if VIDEO_THUMBNAIL.search(turl):
        return True
    return is_video_url(murl)


def is_video_url(url: str) -> bool:
    parts = urlsplit(url)
    path = parts.path.lower()
    if path.endswith(VIDEO_SUFFIXES):
        return True
    host = parts.netloc.lower().split(":")[0]
    return any((host == site or host.endswith("." + site)) and path.startswith(prefix) and path != "/"
               for site, prefix in VIDEO_PAGES)


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


def no_results_message(soup: BeautifulSoup) -> str:
    """Bing's genuine "There are no results for ..." (its words, shortened), else ""."""
    element = soup.select_one("li.b_no, #b_no, .b_no")
    heading = element.select_one("h1, h2") if element is not None else None
    text = " ".join((heading or element or soup).get_text(" ", strip=True).split())
    lowered = text.lower()
    for marker in NO_RESULTS_MARKERS:
        at = lowered.find(marker)
        if at >= 0:
            return text[at:at + 120]
    return ""
