"""One scrape run: engine pages -> downloads (pool) -> checks -> store, with progress.

Pages are read on the calling thread; downloads and checks run in the pool; saving happens
on the calling thread only, so the manifest has one writer. The run stops when the query's
LIMIT is reached, the results end, or Bing refuses us (BingBlocked, raised after what was
already downloaded has been saved); Summary.stop says which, as a typed `Stop`.
Video tiles are counted and logged, never downloaded.
"""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from dataset import atomic
from dataset.layout import Dataset

from . import bing
from .checks import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, Checked, Rejected, check_image
from .download import OPTOUT_MODES, Downloader, DownloadFailed, DownloadSettings
from .page import write_page
from .parse import Result
from .stop import Stop
from .store import Store


@dataclass
class ScrapeOptions:
    query: str
    limit: int = 100
    engine: str = "requests"
    bing_url: str = bing.DEFAULT_BING
    filters: dict = field(default_factory=dict)
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_pages: int = 30           # requests engine: result pages at most
    max_scrolls: int = 60         # selenium engine: scrolls at most
    market: str = bing.DEFAULT_MARKET
    page_waits: tuple = bing.PAGE_WAITS  # seconds before each new try of an empty result page
    download: DownloadSettings = field(default_factory=DownloadSettings)

    @property
    def optout(self) -> str:
        return self.download.optout


@dataclass
class Summary:
    query: str
    engine: str
    limit: int
    market: str = bing.DEFAULT_MARKET
    optout: str = "respect"
    had: int = 0                  # images from this query already in the dataset
    results: int = 0              # results read from Bing's pages
    videos: int = 0               # video tiles among them: skipped, not downloaded
    known: int = 0                # skipped: murl already in the manifest or failed for good before
    downloaded: int = 0
    accepted: int = 0
    duplicates: int = 0           # bytes already in the dataset (another URL, another run)
    rejected: Counter = field(default_factory=Counter)
    converted: int = 0
    recovered: int = 0            # images a killed run left unrecorded, recorded now
    files: list = field(default_factory=list)
    stop: Stop | None = None
    seconds: float = 0.0
    images: str = ""              # where they went, and where to look
    log: str = ""
    page: str = ""

    @property
    def stopped(self) -> str:
        """How the run stopped, in words: "limit reached (...)", "results ended (...)", "refused (...)"."""
        return self.stop.text() if self.stop else ""

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        videos = f", {self.videos} videos skipped" if self.videos else ""
        return (f"{self.results} results, {self.accepted} images saved, {self.duplicates} duplicates, "
                f"{rejected} rejected, {self.known} already known{videos}")

    def text(self) -> str:
        lines = [f"scrape {self.query!r} ({self.engine}): {self.line()} in {self.seconds:.1f}s",
                 f"  {self.had + self.accepted}/{self.limit} images from this query in the dataset "
                 f"({self.had} before this run); {self.converted} converted for labelImg"]
        if self.recovered:
            lines.append(f"  {self.recovered} images from an interrupted run recorded in the manifest")
        if self.optout == "ignore":
            lines.append("  OPTOUT=ignore: images whose X-Robots-Tag opts out were kept (recorded in the manifest)")
        for reason, n in sorted(self.rejected.items()):
            lines.append(f"  rejected {reason}: {n}")
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}")
        return "\n".join(lines)

    def summary(self) -> str:
        return (self.text() + f"\n  images in {self.images}; rejections logged in {self.log}; "
                f"look at {self.page}")


@dataclass
class _Outcome:
    rank: int
    result: Result
    checked: Checked | None = None
    source_sha256: str = ""
    optout: list = field(default_factory=list)  # X-Robots-Tag opt-out it was served with (OPTOUT=ignore)
    size: int = 0
    reason: str = ""
    detail: str = ""
    record: dict | None = None    # staged (journal + image written), for the manifest
    duplicate: bool = False
    surplus: bool = False         # LIMIT was reached by others first: not kept


class _Slots:
    """How many images may still be staged: workers claim a slot before writing one, so a run
    never writes more than LIMIT, and none after close() (Ctrl-C)."""

    def __init__(self, need: int):
        self.free = need
        self.writing = 0
        self.closed = False
        self._lock = threading.Lock()

    def claim(self) -> bool:
        with self._lock:
            if self.closed or self.free <= 0:
                return False
            self.free -= 1
            self.writing += 1
            return True

    def done(self, kept: bool) -> None:
        with self._lock:
            self.writing -= 1
            self.free += 0 if kept else 1

    def close(self, wait: float = 5.0) -> None:
        """No more staging; wait (briefly) for writes under way to land."""
        with self._lock:
            self.closed = True
        deadline = time.monotonic() + wait
        while self.writing and time.monotonic() < deadline:
            time.sleep(0.01)


def _download_and_check(downloader: Downloader, store: Store, slots: _Slots, rank: int, result: Result,
                        options: ScrapeOptions) -> _Outcome:
    """In a pool thread: download, check, and stage the image (journal + atomic write)."""
    outcome = _Outcome(rank, result)
    try:
        fetched = downloader.get(result.murl)
        data, outcome.optout = fetched.data, fetched.optout
        outcome.size = len(data)
        outcome.source_sha256 = hashlib.sha256(data).hexdigest()
        outcome.checked = check_image(data, options.min_side, options.max_pixels)
    except (DownloadFailed, Rejected) as failure:
        outcome.reason, outcome.detail = failure.reason, failure.detail
        return outcome
    if not slots.claim():
        outcome.surplus = True
        return outcome
    record = None
    try:
        record = store.stage(outcome.checked.data, outcome.checked.suffix, _record_for(outcome, options))
    finally:
        slots.done(kept=record is not None)
    outcome.record, outcome.duplicate = record, record is None
    return outcome


def _record_for(outcome: _Outcome, options: ScrapeOptions) -> dict:
    result, checked = outcome.result, outcome.checked
    record = {"query": options.query, "engine": options.engine, "rank": outcome.rank,
              "murl": result.murl, "purl": result.purl, "turl": result.turl, "title": result.title,
              "filters": dict(options.filters), "market": options.market,
              "width": checked.width, "height": checked.height,
              "bytes": len(checked.data), "format": checked.format, "source_format": checked.source_format}
    if checked.converted:
        record.update(converted=checked.converted, source_sha256=outcome.source_sha256)
    if options.optout == "ignore":
        record["optout"] = "ignore"   # the run was told to keep opted-out images
        if outcome.optout:
            record["x_robots_tag"] = ", ".join(outcome.optout)
    return record


def pages_for(options: ScrapeOptions):
    s = options.download
    if options.engine == "requests":
        return bing.requests_pages(options.bing_url, options.query, options.filters, s.user_agent,
                                   max_pages=options.max_pages, timeout=(s.connect_timeout, 20),
                                   market=options.market, page_waits=options.page_waits)
    if options.engine == "selenium":
        return bing.selenium_pages(options.bing_url, options.query, options.filters, s.user_agent,
                                   max_scrolls=options.max_scrolls, market=options.market,
                                   page_waits=options.page_waits)
    raise ValueError(f"unknown engine {options.engine!r}")


def scrape(dataset: Dataset, options: ScrapeOptions, progress: bool = True) -> Summary:
    """Add up to options.limit images from options.query to dataset (counting earlier runs).
    The caller holds the dataset's lock (the scrape command does)."""
    started = time.monotonic()
    if options.optout not in OPTOUT_MODES:
        raise ValueError(f"optout must be one of {OPTOUT_MODES}, not {options.optout!r}")
    summary = Summary(options.query, options.engine, options.limit, market=options.market,
                      optout=options.optout, images=str(dataset.images),
                      log=str(dataset.export / "scrape-log.jsonl"), page=str(dataset.export / "scrape.html"))
    dataset.ensure()
    store = Store(dataset)
    summary.recovered = store.recover()
    summary.had = store.count_for_query(options.query)
    need = options.limit - summary.had
    if need <= 0:
        summary.stop = Stop.limit(f"LIMIT {options.limit} already reached for this query; raise LIMIT for more")
    else:
        try:
            _run(store, options, summary, need, progress)
        finally:
            summary.recovered += store.recover()  # what a Ctrl-C left staged, recorded now
            summary.seconds = time.monotonic() - started
            _write_report(dataset, summary)
    summary.seconds = time.monotonic() - started
    return summary


def _run(store: Store, options: ScrapeOptions, summary: Summary, need: int, progress: bool) -> None:
    downloader = Downloader(options.download)
    threads = options.download.threads
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="download")
    slots = _Slots(need)
    pages = pages_for(options)
    queue: deque[tuple[int, Result]] = deque()
    inflight = set()
    exhausted = False
    blocked: bing.BingBlocked | None = None
    bar = tqdm(total=need, unit="img", desc="scrape", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        while summary.accepted < need:
            remaining = need - summary.accepted
            window = min(2 * threads, remaining + max(2, remaining // 2))  # little waste near LIMIT
            while len(inflight) < window:
                if not queue:
                    if exhausted:
                        break
                    try:
                        _enqueue(next(pages), queue, store, summary, options)
                    except StopIteration as end:
                        exhausted, summary.stop = True, end.value or Stop.ended("Bing sent no more pages")
                    except bing.BingBlocked as error:
                        exhausted, blocked, summary.stop = True, error, error.stop
                    continue
                rank, result = queue.popleft()
                inflight.add(pool.submit(_download_and_check, downloader, store, slots, rank, result, options))
            if not inflight:
                break
            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: f.result().rank):
                _save(future.result(), store, options, summary)
            bar.n = summary.accepted
            bar.set_postfix(accepted=summary.accepted, rejected=sum(summary.rejected.values()),
                            duplicate=summary.duplicates, refresh=False)
            bar.refresh()
        if summary.accepted >= need:
            # reached LIMIT: what was asked for is here, even if Bing refused the next page
            summary.stop, blocked = Stop.limit(f"LIMIT {options.limit} images from this query"), None
    finally:
        bar.close()
        slots.close()
        pool.shutdown(wait=False, cancel_futures=True)
        pages.close()  # quits Chromium for the selenium engine
    if blocked is not None:
        blocked.result = summary  # the CLI prints what was saved before the error
        raise blocked


def _enqueue(results: list[Result], queue: deque, store: Store, summary: Summary,
             options: ScrapeOptions) -> None:
    for result in results:
        summary.results += 1
        if result.video:  # a video tile: nothing to download
            summary.videos += 1
            if result.murl not in store.skip_murls:
                store.log(result.murl, "video", "a video tile among the image results: not downloaded",
                          rank=summary.results, query=options.query)
            continue
        skipped = store.skip_murls.get(result.murl)
        if skipped == "opted-out" and options.optout == "ignore":
            skipped = None  # turned away for its X-Robots-Tag before; OPTOUT=ignore takes it now
        if result.murl in store.murls or skipped:
            summary.known += 1
            continue
        queue.append((summary.results, result))


def _save(outcome: _Outcome, store: Store, options: ScrapeOptions, summary: Summary) -> None:
    """On the calling thread only: count, log, and commit a staged image to the manifest."""
    result = outcome.result
    if outcome.size:
        summary.downloaded += 1
    if outcome.surplus:
        return  # LIMIT reached: not logged, so a later run with a higher LIMIT takes it
    if outcome.checked is None:
        summary.rejected[outcome.reason] += 1
        store.log(result.murl, outcome.reason, outcome.detail, rank=outcome.rank, query=options.query)
        return
    if outcome.duplicate:
        summary.duplicates += 1
        store.log(result.murl, "duplicate", "these bytes are already in the dataset",
                  rank=outcome.rank, query=options.query)
        return
    store.commit(outcome.record)
    summary.accepted += 1
    summary.converted += bool(outcome.checked.converted)
    summary.files.append(outcome.record["file"])


def _write_report(dataset: Dataset, summary: Summary) -> None:
    report = asdict(summary)
    report["rejected"] = dict(summary.rejected)
    report["stopped"] = summary.stopped       # "limit reached (...)", "results ended (...)", "refused (...)"
    report["stop"] = summary.stop.as_json() if summary.stop else None
    atomic.write_json(dataset.export / "scrape.json", report)
    write_page(dataset, summary)
