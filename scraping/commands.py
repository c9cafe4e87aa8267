"""`maskset scrape` (make scrape): thin over scraping.pipeline."""
from __future__ import annotations

from dataset.cli import Command, Var
from dataset.errors import MasksetError

from . import bing
from .checks import DEFAULT_MIN_SIDE
from .download import OPTOUT_DIRECTIVES, OPTOUT_MODES, DownloadSettings

_DEFAULTS = DownloadSettings()


def parse_optout(text: str | None) -> str:
    value = (text or "respect").strip().lower()
    if value not in OPTOUT_MODES:
        raise MasksetError(f"OPTOUT={text!r}: use respect (the default: an image whose X-Robots-Tag says "
                           f"{', '.join(OPTOUT_DIRECTIVES)} is not kept) or ignore (keep it; the manifest "
                           f"records it).")
    return value


def parse_waits(text: str | None) -> tuple[float, ...]:
    try:
        waits = tuple(float(w) for w in (text or "").replace(",", " ").split())
    except ValueError:
        waits = (-1.0,)
    if any(w < 0 for w in waits) or len(waits) > 10 or sum(waits) > 600:
        raise MasksetError(f"PAGE_WAITS={text!r}: give up to 10 seconds, e.g. \"2,4,8\" (at most 600 s "
                           f"in all; \"\" for no new tries).")
    return waits


def check(args) -> None:
    """Refuse bad values before the dataset folder is made."""
    if not args.query or not args.query.strip():
        raise MasksetError("no query: say what to search for, e.g. make scrape QUERY=\"people wearing "
                           "face masks\" LIMIT=200")
    if (args.limit < 1 or args.min_side < 1 or args.threads < 1 or args.per_host < 1
            or args.max_pages < 1 or args.max_scrolls < 1):
        raise MasksetError("LIMIT, MIN_SIDE, THREADS, PER_HOST, MAX_PAGES and MAX_SCROLLS must be positive "
                           "numbers.")
    if not args.user_agent.strip():
        raise MasksetError("USER_AGENT is empty: leave it unset for the default, or give a whole browser "
                           "User-Agent string.")
    if not args.bing_url.startswith(("http://", "https://")):
        raise MasksetError(f"BING_URL={args.bing_url!r}: give an http(s) base URL, e.g. https://www.bing.com")
    parse_optout(args.optout)
    parse_waits(args.page_waits)
    bing.parse_market(args.market)
    bing.parse_filters(args.filters)


def scrape(dataset, args):
    from .pipeline import ScrapeOptions, scrape as run_scrape
    settings = DownloadSettings(threads=args.threads, per_host=args.per_host, read_timeout=args.timeout,
                                total_timeout=args.total_timeout, max_bytes=args.max_bytes,
                                retries=args.retries, backoff=args.backoff,
                                user_agent=args.user_agent.strip(), optout=parse_optout(args.optout))
    options = ScrapeOptions(query=args.query.strip(), limit=args.limit, engine=args.engine,
                            bing_url=args.bing_url, filters=bing.parse_filters(args.filters),
                            min_side=args.min_side, max_pages=args.max_pages, max_scrolls=args.max_scrolls,
                            market=bing.parse_market(args.market), page_waits=parse_waits(args.page_waits),
                            download=settings)
    return run_scrape(dataset, options, progress=not args.no_progress)


COMMANDS = [
    Command("scrape", "add up to LIMIT new, unique, checked images from Bing image results", scrape, (
        Var("QUERY", 'what to search for, e.g. "people wearing face masks"'),
        Var("LIMIT", "images to hold from this query, counting earlier runs (default 100)", int, 100),
        Var("ENGINE", "requests (default) or selenium", default="requests", choices=tuple(sorted(bing.ENGINES))),
        Var("BING_URL", "Bing's base URL (tests use a fake)", default=bing.DEFAULT_BING),
        Var("FILTERS", "type=photo|clipart|line|gif|transparent size=small|medium|large|wallpaper "
                       "license=any|public|share|share-commercial|modify|modify-commercial "
                       "face=face|portrait aspect=square|wide|tall adult=strict|moderate|off", default=""),
        Var("MIN_SIDE", f"reject images whose shorter side is below this (default {DEFAULT_MIN_SIDE})",
            int, DEFAULT_MIN_SIDE),
        Var("MARKET", f"Bing's market: Accept-Language, cc and setlang (default {bing.DEFAULT_MARKET})",
            default=bing.DEFAULT_MARKET),
        Var("OPTOUT", "respect (default: an image whose X-Robots-Tag opts out of AI use is not kept) "
                      "or ignore (kept; the manifest records it)", default="respect"),
        Var("THREADS", f"downloads at once ({_DEFAULTS.threads})", int, _DEFAULTS.threads),
        Var("PER_HOST", f"at once per host ({_DEFAULTS.per_host})", int, _DEFAULTS.per_host),
        Var("TIMEOUT", f"read timeout per image, seconds ({_DEFAULTS.read_timeout:g})", float,
            _DEFAULTS.read_timeout),
        Var("TOTAL_TIMEOUT", f"time cap per image, seconds ({_DEFAULTS.total_timeout:g})", float,
            _DEFAULTS.total_timeout),
        Var("MAX_BYTES", f"byte cap per image ({_DEFAULTS.max_bytes})", int, _DEFAULTS.max_bytes),
        Var("RETRIES", f"retries on 5xx/429 ({_DEFAULTS.retries})", int, _DEFAULTS.retries),
        Var("BACKOFF", f"first retry wait, s ({_DEFAULTS.backoff:g})", float, _DEFAULTS.backoff),
        Var("USER_AGENT", "the User-Agent header", default=_DEFAULTS.user_agent),
        Var("MAX_PAGES", "requests engine: result pages at most (30)", int, 30),
        Var("MAX_SCROLLS", "selenium engine: scrolls at most (60)", int, 60),
        Var("PAGE_WAITS", "seconds to wait before asking again for a page with no results "
                          f"(default {','.join(f'{w:g}' for w in bing.PAGE_WAITS)})",
            default=",".join(f"{w:g}" for w in bing.PAGE_WAITS)),
        Var("NO_PROGRESS", "no progress bar", bool),
    ), data="create", precheck=check),
]
