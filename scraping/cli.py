"""`make scrape QUERY=".." LIMIT=N [ENGINE=requests|selenium BING_URL= FILTERS= MIN_SIDE= MARKET= OPTOUT=
USER_AGENT=]`. Exit 0 when the LIMIT was reached or the results ended, 3 when Bing refused."""
from __future__ import annotations

from dataset.cli import dataset_from, parser, run
from dataset.errors import MasksetError

from . import bing
from .checks import DEFAULT_MIN_SIDE
from .download import OPTOUT_DIRECTIVES, OPTOUT_MODES, DownloadSettings
from .pipeline import ScrapeOptions, scrape


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
        raise MasksetError(f"--page-waits {text!r}: give up to 10 seconds, e.g. \"2,4,8\" (at most 600 s "
                           f"in all; \"\" for no new tries).")
    return waits


def main(argv=None) -> int:
    p = parser("Add up to LIMIT new, unique, checked images from Bing image results to DATA/images/.")
    p.add_argument("--query", help="what to search for, e.g. \"people wearing face masks\"")
    p.add_argument("--limit", type=int, default=100,
                   help="images to hold from this query, counting earlier runs (default 100)")
    p.add_argument("--engine", default="requests", choices=sorted(bing.ENGINES))
    p.add_argument("--bing-url", default=bing.DEFAULT_BING, help="Bing's base URL (tests use a fake)")
    p.add_argument("--filters", default="",
                   help="type=photo|clipart|line|gif|transparent size=small|medium|large|wallpaper "
                        "license=any|public|share|share-commercial|modify|modify-commercial "
                        "face=face|portrait aspect=square|wide|tall adult=strict|moderate|off")
    p.add_argument("--min-side", type=int, default=DEFAULT_MIN_SIDE,
                   help=f"reject images whose shorter side is below this (default {DEFAULT_MIN_SIDE})")
    p.add_argument("--market", default=bing.DEFAULT_MARKET,
                   help=f"Bing market (language-COUNTRY), sent as cc/setlang, Accept-Language and "
                        f"cookies (default {bing.DEFAULT_MARKET})")
    p.add_argument("--optout", default="respect",
                   help="respect (default): skip images served with X-Robots-Tag noai, noimageai, noindex "
                        "or noimageindex; ignore: keep them, recorded in the manifest")
    d = DownloadSettings()
    p.add_argument("--threads", type=int, default=d.threads, help=f"downloads at once ({d.threads})")
    p.add_argument("--per-host", type=int, default=d.per_host, help=f"at once per host ({d.per_host})")
    p.add_argument("--timeout", type=float, default=d.read_timeout,
                   help=f"read timeout per image, seconds ({d.read_timeout:g})")
    p.add_argument("--total-timeout", type=float, default=d.total_timeout,
                   help=f"time cap per image, seconds ({d.total_timeout:g})")
    p.add_argument("--max-bytes", type=int, default=d.max_bytes, help=f"byte cap per image ({d.max_bytes})")
    p.add_argument("--retries", type=int, default=d.retries, help=f"retries on 5xx/429 ({d.retries})")
    p.add_argument("--backoff", type=float, default=d.backoff, help=f"first retry wait, s ({d.backoff:g})")
    p.add_argument("--user-agent", default=d.user_agent)
    p.add_argument("--max-pages", type=int, default=30, help="requests engine: result pages at most (30)")
    p.add_argument("--max-scrolls", type=int, default=60, help="selenium engine: scrolls at most (60)")
    p.add_argument("--page-waits", default=",".join(f"{w:g}" for w in bing.PAGE_WAITS),
                   help="seconds to wait before each new try of a result page that came back empty "
                        f"(default {','.join(f'{w:g}' for w in bing.PAGE_WAITS)}); then the run stops as refused")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not args.query or not args.query.strip():
        raise MasksetError("no query: say what to search for, e.g. make scrape QUERY=\"people wearing "
                           "face masks\" LIMIT=200")
    if (args.limit < 1 or args.min_side < 1 or args.threads < 1 or args.per_host < 1
            or args.max_pages < 1 or args.max_scrolls < 1):
        raise MasksetError("LIMIT, MIN_SIDE, --threads, --per-host, --max-pages and --max-scrolls must be "
                           "positive numbers.")
    if not args.user_agent.strip():
        raise MasksetError("USER_AGENT is empty: leave it unset for the default, or give a whole browser "
                           "User-Agent string.")
    if not args.bing_url.startswith(("http://", "https://")):
        raise MasksetError(f"BING_URL={args.bing_url!r}: give an http(s) base URL, e.g. https://www.bing.com")
    settings = DownloadSettings(threads=args.threads, per_host=args.per_host, read_timeout=args.timeout,
                                total_timeout=args.total_timeout, max_bytes=args.max_bytes,
                                retries=args.retries, backoff=args.backoff,
                                user_agent=args.user_agent.strip(), optout=parse_optout(args.optout))
    options = ScrapeOptions(query=args.query.strip(), limit=args.limit, engine=args.engine,
                            bing_url=args.bing_url, filters=bing.parse_filters(args.filters),
                            min_side=args.min_side, max_pages=args.max_pages, max_scrolls=args.max_scrolls,
                            market=bing.parse_market(args.market), page_waits=parse_waits(args.page_waits),
                            download=settings)
    dataset = dataset_from(args)
    try:
        summary = scrape(dataset, options, progress=not args.no_progress)
    except bing.BingBlocked as error:
        if error.summary is not None:
            print_summary(error.summary, dataset)  # what was saved before the refusal, then the error
        raise
    print_summary(summary, dataset)
    return 0


def print_summary(summary, dataset) -> None:
    print(summary.text())
    print(f"  images in {dataset.images}; rejections logged in {dataset.export / 'scrape-log.jsonl'}; "
          f"look at {dataset.export / 'scrape.html'}", flush=True)


if __name__ == "__main__":
    raise SystemExit(run(main))
