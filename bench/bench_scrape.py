"""Bench the scraper's downloads: 300 images from loopback servers that add 100 ms per image.

Measured in the same run, over the same URLs:
  baseline   a sequential requests loop (one Session, write each body to a file)
  maskset    `scrape()` with default settings: Bing pages, pool, checks, hash names, manifest
  icrawler   icrawler's UrlListCrawler with the same number of download threads
All URLs come from one loopback server by default, the hardest case for maskset, whose
downloader caps connections per host (per_host=12) to be polite; a real result list spans
hundreds of hosts (--hosts N spreads the URLs over N servers). Target: maskset >= 8x baseline.
Usage: .venv/bin/python bench/bench_scrape.py [--count 300] [--latency 0.1] [--hosts 1]
Exits 1 when the target is missed, like every bench here.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import requests


from dataset.layout import Dataset  # noqa: E402
from dataset.fixtures.scenes import jpeg_bytes, render_scene  # noqa: E402
from scraping.download import DownloadSettings  # noqa: E402
from dataset.fixtures.fakebing import FakeBing  # noqa: E402
from scraping.pipeline import ScrapeOptions, scrape  # noqa: E402

TARGET = 8.0


def serve(count: int, latency: float, hosts: int):
    rng = random.Random(0)
    bodies = [jpeg_bytes(render_scene(rng, (320, 240))[0]) for _ in range(count)]
    fakes = [FakeBing(page_size=35).start() for _ in range(hosts)]
    urls = []
    for index, body in enumerate(bodies):
        urls.append(fakes[index % hosts].add_route(f"/img/{index}.jpg", body=body, delay=latency))
    for url in urls:
        fakes[0].add_result(url)  # fakes[0] is also "Bing"
    return fakes, urls


def sequential(urls, folder: Path) -> float:
    started = time.perf_counter()
    with requests.Session() as session:
        for index, url in enumerate(urls):
            response = session.get(url, timeout=(5, 10))
            response.raise_for_status()
            (folder / f"{index:04d}.jpg").write_bytes(response.content)
    return time.perf_counter() - started


def maskset(bing_base: str, folder: Path, count: int) -> tuple[float, int]:
    started = time.perf_counter()
    summary = scrape(Dataset.at(folder), ScrapeOptions(query="bench", limit=count, bing_url=bing_base),
                     progress=False)
    return time.perf_counter() - started, summary.accepted


def icrawler(urls, folder: Path, threads: int) -> tuple[float, float, int] | None:
    """icrawler's time over the same URLs, or None when it is not installed (make bench-setup):
    only a comparison, the target is against the sequential loop."""
    try:
        from icrawler.builtin import UrlListCrawler
    except ImportError:
        return None
    url_file = folder.parent / f"{folder.name}-urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    crawler = UrlListCrawler(downloader_threads=threads, storage={"root_dir": str(folder)},
                             log_level=logging.ERROR)
    started = time.perf_counter()
    crawler.crawl(str(url_file), max_num=len(urls))
    wall = time.perf_counter() - started
    files = list(folder.iterdir())
    last = max(p.stat().st_mtime for p in files) - (time.time() - time.perf_counter() + started) if files else wall
    return wall, last, len(files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--hosts", type=int, default=1)
    args, _ = parser.parse_known_args(argv)  # BENCH_ARGS may carry other benches' flags
    threads = DownloadSettings().threads
    results = {"count": args.count, "latency_s": args.latency, "hosts": args.hosts, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="bench-scrape-") as tmp:
        tmp = Path(tmp)
        fakes, urls = serve(args.count, args.latency, args.hosts)
        try:
            for name in ("seq", "ours", "icrawler"):
                (tmp / name).mkdir()
            ours, saved = maskset(fakes[0].base, tmp / "ours", args.count)
            base = sequential(urls, tmp / "seq")
            ic = icrawler(urls, tmp / "icrawler", threads)
        finally:
            for fake in fakes:
                fake.stop()
    assert saved == args.count, saved
    results.update(baseline_s=round(base, 2), maskset_s=round(ours, 2), per_host=DownloadSettings().per_host,
                   ratio=round(base / ours, 1))
    if ic is not None:
        ic_wall, ic_last, ic_files = ic
        results.update(icrawler_s=round(ic_wall, 2), icrawler_last_file_s=round(ic_last, 2),
                       icrawler_files=ic_files, icrawler_ratio=round(base / ic_wall, 1))
    print(f"{args.count} downloads, {args.latency * 1000:.0f} ms latency each, {threads} threads")
    print(f"  sequential requests loop      {base:7.2f} s   1.0x (baseline)")
    print(f"  maskset scrape ({args.hosts} host{'s' * (args.hosts > 1)})     {ours:7.2f} s  {base / ours:5.1f}x   "
          f"(target >= {TARGET:g}x: {'met' if base / ours >= TARGET else 'NOT met'}; "
          f"per-host limit {DownloadSettings().per_host})")
    if ic is not None:
        print(f"  icrawler UrlListCrawler       {ic_wall:7.2f} s  {base / ic_wall:5.1f}x   "
              f"(last file after {ic_last:.2f} s; {ic_files} files)")
    else:
        print("  icrawler UrlListCrawler       not installed (make bench-setup): comparison skipped")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_scrape.json").write_text(json.dumps(results, indent=1) + "\n")
    return 1 if base / ours < TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
