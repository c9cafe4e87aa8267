"""Fingerprints of a dataset's images, hashed once: the cache under .cache/ and the worker pool.

Hashing (and verifying, dataset/verify.py) runs on every core: in forked worker processes when
the caller has no other threads (the CLI), else in a thread pool (OpenCV releases the GIL for the
whole decode). The cache keys each file by size and mtime, so after a scrape only the new images
are hashed; it holds the files in images/ and in quarantine/ (a restore brings them back with the
same bytes and mtime) and forgets the others.
"""
from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import atomic
from . import progress as progress_bars
from .errors import MasksetError
from .hashing import VIEW_ROWS, Fingerprint, hash_file

BATCH = 2048         # files handed to the worker pool at a time
# v3: the windows, the mirrored frame and the keeper's facts added (a JPEG's whole-frame hashes
# are v2's, bit for bit); one numpy archive, not a TSV: 700 bytes of views per image. v4: a
# lossless file is hashed at the scale a JPEG of its size is decoded at (hashing._as_reduced_decode)
CACHE_NAME = "hashes-v4.npz"
OLD_CACHES = ("phash-v*.tsv", "hashes-v*.npz")

def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


PROCESS_MIN_FILES = 256   # below this, starting worker processes costs more than it saves
PROCESS_CHUNK = 16        # files per task sent to a worker process


def _fork_is_safe() -> bool:
    """A forked child holds only the calling thread; a lock another thread held at that moment
    stays locked in the child forever. So fork only a caller with no other threads (the CLI), not
    one running TensorFlow's or a downloader's thread pools. tqdm's monitor thread is allowed: it
    only touches progress bars, which the children never use."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    from tqdm._monitor import TMonitor
    return all(t is threading.current_thread() or isinstance(t, TMonitor) for t in threading.enumerate())


def _leave_ctrl_c_to_the_parent() -> None:
    # Ctrl-C reaches the whole process group: without this every worker prints a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _executor(count: int):
    """(executor, chunksize). Processes where it is safe and worth it: OpenCV decodes with the GIL
    released, but frame trimming and the two hashes hold it, so threads on 2 cores measured
    10-15% slower than processes on the labelled set (bench/bench_dedupe.py)."""
    workers = _workers()
    if workers > 1 and count >= PROCESS_MIN_FILES and _fork_is_safe():
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_leave_ctrl_c_to_the_parent), PROCESS_CHUNK
    return ThreadPoolExecutor(max_workers=workers), 1


def _hash_many(paths: list[Path], progress: bool, desc: str = "hashing") -> dict[Path, tuple[Fingerprint, str]]:
    results: dict[Path, tuple[Fingerprint, str]] = {}
    if not paths:
        return results
    executor, chunk = _executor(len(paths))
    with executor as pool, progress_bars.bar(total=len(paths), desc=desc, enabled=progress) as bar:
        for start in range(0, len(paths), BATCH):  # bounded: no 100k pending futures at once
            batch = paths[start:start + BATCH]
            for path, result in zip(batch, pool.map(hash_file, batch, chunksize=chunk)):
                results[path] = result
                bar.update()
    return results


def run_tasks(function, tasks: list, progress: bool = False, desc: str = "working", weights=None):
    """Yield function(task) for each task (in any order) on every core: forked processes where
    safe and worth it (PROCESS_MIN_FILES of weight), else threads. weights: each task's share of
    the progress bar (default 1)."""
    weights = list(weights) if weights is not None else [1] * len(tasks)
    if not tasks:
        return
    workers = _workers()
    if workers > 1 and len(tasks) > 1 and sum(weights) >= PROCESS_MIN_FILES // 4 and _fork_is_safe():
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_leave_ctrl_c_to_the_parent)
    elif workers > 1 and len(tasks) > 1:
        executor = ThreadPoolExecutor(max_workers=workers)
    else:
        executor = None
    # the largest first, so that no worker is left with a big one at the end
    order = sorted(range(len(tasks)), key=lambda k: -weights[k])
    with progress_bars.bar(total=sum(weights), desc=desc, enabled=progress) as bar:
        if executor is None:
            for k in order:
                yield function(tasks[k])
                bar.update(weights[k])
            return
        with executor as pool:
            for k, result in zip(order, pool.map(function, [tasks[k] for k in order])):
                yield result
                bar.update(weights[k])


def hash_records(paths, progress: bool = False) -> dict[Path, tuple[Fingerprint, str]]:
    """(Fingerprint, sha256) of each image file, each file read once (no dataset, no cache)."""
    return _hash_many([Path(p) for p in paths], progress)


def hash_files(paths, progress: bool = False) -> dict[Path, Fingerprint]:
    """Fingerprint of each image file (no dataset, no cache)."""
    return {path: fingerprint for path, (fingerprint, _) in hash_records(paths, progress).items()}


# -- the dataset cache -----------------------------------------------------------------------------
def cache_path(dataset) -> Path:
    return dataset.cache / CACHE_NAME


def _read_cache(path: Path) -> dict[str, tuple[int, int, Fingerprint, str]]:
    """name -> (size, mtime_ns, Fingerprint, sha256); {} for a missing or unreadable cache
    (derived data: it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            columns = {k: archive[k] for k in ("name", "size", "mtime", "hashes", "views", "content", "ghost", "sha")}
    except (OSError, ValueError, KeyError, EOFError):
        return {}
    if columns["views"].shape[1:] != (VIEW_ROWS, 3):
        return {}
    views = columns["views"]
    entries = {}
    for k, name in enumerate(columns["name"].tolist()):
        phash, high, low = (int(v) for v in columns["hashes"][k])
        fingerprint = Fingerprint(phash, high << 64 | low, views[k].tobytes(), float(columns["content"][k]),
                                  int(columns["ghost"][k]))
        entries[name] = (int(columns["size"][k]), int(columns["mtime"][k]), fingerprint, columns["sha"][k].decode())
    return entries


def _write_cache(path: Path, entries: dict[str, tuple[int, int, Fingerprint, str]]) -> None:
    names = sorted(entries)
    rows = [entries[n] for n in names]
    out = io.BytesIO()
    np.savez(out, name=np.array(names, dtype=str),
             size=np.array([r[0] for r in rows], np.int64), mtime=np.array([r[1] for r in rows], np.int64),
             hashes=np.array([(r[2].phash, r[2].dhash >> 64, r[2].dhash & 0xFFFF_FFFF_FFFF_FFFF) for r in rows],
                             np.uint64).reshape(-1, 3),
             views=np.frombuffer(b"".join(r[2].views for r in rows), np.uint64).reshape(-1, VIEW_ROWS, 3),
             content=np.array([r[2].content for r in rows], np.float64),
             ghost=np.array([r[2].ghost for r in rows], np.int16),
             sha=np.array([r[3].encode() for r in rows], dtype="S64"))
    atomic.write_bytes(path, out.getvalue(), durable=False)  # derived data: a crash costs a re-hash


def image_records(dataset, files=None, progress: bool = True,
                  counts: dict | None = None) -> dict[str, tuple[Fingerprint, str]]:
    """file name in images/ -> (Fingerprint, sha256); only new or changed files are read again
    (`counts`, if given, gets "hashed": how many were).

    A file is unchanged when its size and mtime match the cache. Entries of files that left the
    dataset are pruned; those of files in quarantine/ stay (a restore brings them back with the
    same bytes and mtime).
    """
    if files is None:
        paths = dataset.image_files()
    else:
        paths = [p if Path(p).is_absolute() else dataset.images / p for p in map(Path, files)]
    cache_file = cache_path(dataset)
    cache = _read_cache(cache_file)
    wanted: dict[str, tuple[int, int]] = {}
    stale: list[Path] = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise MasksetError(f"{path}: no such image in {dataset.images}.") from None
        wanted[path.name] = (stat.st_size, stat.st_mtime_ns)
        hit = cache.get(path.name)
        if hit is None or hit[:2] != wanted[path.name]:
            stale.append(path)
    if counts is not None:
        counts["hashed"] = len(stale)
    gone = set(cache) - set(wanted) - _names_kept(dataset) if files is None else set()
    if stale or gone:
        for path, (fingerprint, sha) in _hash_many(stale, progress).items():
            size, mtime = wanted[path.name]
            cache[path.name] = (size, mtime, fingerprint, sha)
        for name in gone:
            del cache[name]
        if dataset.writable():
            _write_cache(cache_file, cache)
        for pattern in OLD_CACHES:
            for old in cache_file.parent.glob(pattern):
                if old.name != CACHE_NAME:
                    old.unlink()  # an older format's cache: derived data, now replaced
    return {name: (cache[name][2], cache[name][3]) for name in wanted}


def remember(dataset, fingerprints: dict[str, tuple[Fingerprint, str, int, int]]) -> int:
    """Seed the cache with fingerprints made from a decode another stage did anyway (import):
    name in images/ -> (Fingerprint, sha256, size, mtime_ns of the bytes fingerprinted). A file
    whose size or mtime is no longer those is left out (it changed: dedupe hashes it). Returns
    how many were remembered."""
    if not fingerprints or not dataset.writable():
        return 0
    cache_file = cache_path(dataset)
    cache = _read_cache(cache_file)
    added = 0
    for name, (fingerprint, sha, size, mtime) in fingerprints.items():
        try:
            stat = (dataset.images / name).stat()
        except FileNotFoundError:
            continue
        if (stat.st_size, stat.st_mtime_ns) == (size, mtime):
            cache[name] = (size, mtime, fingerprint, sha)
            added += 1
    if added:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        _write_cache(cache_file, cache)
    return added


def cached_entries(dataset) -> dict[str, tuple[int, int, Fingerprint, str]]:
    """What the cache holds, as it is: name -> (size, mtime_ns, Fingerprint, sha256), for the
    files in images/ and quarantine/ when it was last written."""
    return _read_cache(cache_path(dataset))


def cached_digests(dataset) -> set[str]:
    """The sha256 of every file the cache holds (images/ and quarantine/): what derived data
    keyed by content (verify.Verdicts) may keep."""
    return {entry[3] for entry in cached_entries(dataset).values()}


def _names_kept(dataset) -> set[str]:
    """Names of files in quarantine/ (they may come back): their cache entries stay."""
    if not dataset.quarantine.is_dir():
        return set()
    return {path.name for path in dataset.quarantine.rglob("*") if path.is_file()}


def image_hashes(dataset, files=None, progress: bool = True) -> dict[str, Fingerprint]:
    """file name in images/ -> Fingerprint, cached incrementally under dataset.cache."""
    return {name: fingerprint for name, (fingerprint, _) in image_records(dataset, files, progress).items()}
