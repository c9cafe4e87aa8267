"""`make scrape QUERY=".." LIMIT=N [ENGINE=requests|selenium BING_URL= FILTERS= MIN_SIDE=]`."""
from __future__ import annotations

import sys

from dataset.cli import dataset_from, parser, run
from dataset.errors import MasksetError

from . import bing
from .checks import DEFAULT_MIN_SIDE
from .download import DownloadSettings
from .pipeline import ScrapeOptions, scrape


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
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not args.query or not args.query.strip():
        raise MasksetError("no query: say what to search for, e.g. make scrape QUERY=\"people wearing "
                           "face masks\" LIMIT=200")
    if args.limit < 1 or args.min_side < 1 or args.threads < 1 or args.per_host < 1:
        raise MasksetError("LIMIT, MIN_SIDE, --threads and --per-host must be positive numbers.")
    if not args.bing_url.startswith(("http://", "https://")):
        raise MasksetError(f"BING_URL={args.bing_url!r}: give an http(s) base URL, e.g. https://www.bing.com")
    settings = DownloadSettings(threads=args.threads, per_host=args.per_host, read_timeout=args.timeout,
                                total_timeout=args.total_timeout, max_bytes=args.max_bytes,
                                retries=args.retries, backoff=args.backoff, user_agent=args.user_agent)
    options = ScrapeOptions(query=args.query.strip(), limit=args.limit, engine=args.engine,
                            bing_url=args.bing_url, filters=bing.parse_filters(args.filters),
                            min_side=args.min_side, max_pages=args.max_pages, download=settings)
    dataset = dataset_from(args)
    try:
        summary = scrape(dataset, options, progress=not args.no_progress)
    except bing.BingBlocked as error:
        if getattr(error, "summary", None) is not None:
            print(error.summary.text(), file=sys.stderr)
        raise
    print(summary.text())
    print(f"  images in {dataset.images}; rejections logged in {dataset.export / 'scrape-log.jsonl'}; "
          f"look at {dataset.export / 'scrape.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
