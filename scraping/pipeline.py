"""One scrape run: engine pages -> downloads (pool) -> checks -> store, with progress.

Pages are read on the calling thread; downloads and checks run in the pool; saving happens
on the calling thread only, so the manifest has one writer. The run stops when the query's
LIMIT is reached, the results end, or Bing blocks us (BingBlocked, raised after what was
already downloaded has been saved).
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
from .download import Downloader, DownloadFailed, DownloadSettings
from .page import write_page
from .parse import Result
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
    download: DownloadSettings = field(default_factory=DownloadSettings)


@dataclass
class Summary:
    query: str
    engine: str
    limit: int
    had: int = 0                  # images from this query already in the dataset
    results: int = 0              # results read from Bing's pages
    known: int = 0                # skipped: murl already in the manifest or failed for good before
    downloaded: int = 0
    accepted: int = 0
    duplicates: int = 0           # bytes already in the dataset (another URL, another run)
    rejected: Counter = field(default_factory=Counter)
    converted: int = 0
    recovered: int = 0            # images a killed run left unrecorded, recorded now
    files: list = field(default_factory=list)
    stopped: str = ""
    seconds: float = 0.0
    images: str = ""              # where they went, and where to look
    log: str = ""
    page: str = ""

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        return (f"{self.results} results, {self.accepted} images saved, {self.duplicates} duplicates, "
                f"{rejected} rejected, {self.known} already known")

    def text(self) -> str:
        lines = [f"scrape {self.query!r} ({self.engine}): {self.line()} in {self.seconds:.1f}s",
                 f"  {self.had + self.accepted}/{self.limit} images from this query in the dataset "
                 f"({self.had} before this run); {self.converted} converted for labelImg"]
        if self.recovered:
            lines.append(f"  {self.recovered} images from an interrupted run recorded in the manifest")
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
        data = downloader.fetch(result.murl)
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
              "filters": dict(options.filters), "width": checked.width, "height": checked.height,
              "bytes": len(checked.data), "source_format": checked.source_format}
    if checked.converted:
        record.update(converted=checked.converted, source_sha256=outcome.source_sha256)
    return record


def pages_for(options: ScrapeOptions):
    s = options.download
    if options.engine == "requests":
        return bing.requests_pages(options.bing_url, options.query, options.filters, s.user_agent,
                                   max_pages=options.max_pages, timeout=(s.connect_timeout, 20))
    if options.engine == "selenium":
        return bing.selenium_pages(options.bing_url, options.query, options.filters, s.user_agent,
                                   max_scrolls=options.max_scrolls)
    raise ValueError(f"unknown engine {options.engine!r}")


def scrape(dataset: Dataset, options: ScrapeOptions, progress: bool = True) -> Summary:
    """Add up to options.limit images from options.query to dataset (counting earlier runs)."""
    started = time.monotonic()
    summary = Summary(options.query, options.engine, options.limit, images=str(dataset.images),
                      log=str(dataset.export / "scrape-log.jsonl"), page=str(dataset.export / "scrape.html"))
    dataset.ensure()
    with dataset.lock("scrape"):
        store = Store(dataset)
        summary.recovered = store.recover()
        summary.had = store.count_for_query(options.query)
        need = options.limit - summary.had
        if need <= 0:
            summary.stopped = f"LIMIT {options.limit} already reached for this query; raise LIMIT for more"
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
    blocked: Exception | None = None
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
                        _enqueue(next(pages), queue, store, summary)
                    except StopIteration:
                        exhausted, summary.stopped = True, "the results ended"
                    except bing.BingBlocked as error:
                        exhausted, blocked = True, error
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
            summary.stopped = f"LIMIT {options.limit} reached"
    finally:
        bar.close()
        slots.close()
        pool.shutdown(wait=False, cancel_futures=True)
        pages.close()  # quits Chromium for the selenium engine
    if blocked is not None:
        summary.stopped = str(blocked)
        blocked.result = summary
        raise blocked


def _enqueue(results: list[Result], queue: deque, store: Store, summary: Summary) -> None:
    for result in results:
        summary.results += 1
        if result.murl in store.murls or result.murl in store.skip_murls:
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
    atomic.write_json(dataset.export / "scrape.json", report)
    write_page(dataset, summary)
