"""Perceptual hashes and near-duplicate groups, shared by `make dedupe` and `make split`.

The pure core: hash images (pHash, 64 bits), find every pair within a Hamming distance without
comparing all pairs, and join pairs into groups with union-find. `image_hashes` adds the
dataset-level cache so that only new or changed images are hashed again.

Speed, measured in bench/bench_dedupe.py:
- JPEGs are decoded at 1/2..1/8 scale (OpenCV's IMREAD_REDUCED_GRAYSCALE_*: the decoder skips
  most of the IDCT work) straight to grayscale, since pHash only looks at a 32x32 thumbnail's
  lowest frequencies.
- Hashing runs on every core: in forked worker processes when the caller has no other threads
  (the CLI), else in a thread pool (OpenCV releases the GIL for the whole decode).
- Neighbours are found by multi-index hashing: split each hash into four 16-bit chunks; two
  hashes within distance t agree within t//4 bits on at least one chunk (pigeonhole), so only
  hashes in the few buckets near each chunk value are candidates. Bucket look-ups are numpy
  gathers over all hashes at once.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from . import atomic
from .errors import MasksetError

# Two images are near duplicates when their pHashes are within DEFAULT_THRESHOLD bits (of 64)
# and their dHashes, the second opinion, within DEFAULT_DHASH_THRESHOLD bits (of 128). Chosen on
# the "tune" half of bench/dedupe_labelled_set.py (docs/dedupe.md has the numbers).
DEFAULT_THRESHOLD = 10
DEFAULT_DHASH_THRESHOLD = 40

HASH_SIZE = 8          # 8x8 low-frequency DCT coefficients -> 64 bits
PHASH_BITS = HASH_SIZE * HASH_SIZE
DHASH_BITS = 2 * HASH_SIZE * HASH_SIZE
THUMB_SIZE = 32        # pHash's thumbnail: 4x the hash size, as in the original pHash
BATCH = 2048         # files handed to the worker pool at a time
CACHE_NAME = "phash-v2.tsv"  # v2: OpenCV decode (pHashes moved ~1 bit from v1's), dHash added
CACHE_HEADER = "# maskset pHash cache v2: name\tsize\tmtime_ns\tphash(hex)\tdhash(hex)\tsha256\n"

Image.MAX_IMAGE_PIXELS = 200_000_000  # scraped panoramas are fine; decompression bombs are not


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: dct(x) == M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


# Only the first HASH_SIZE rows are ever used: the low frequencies.
_DCT_LOW = _dct_matrix(THUMB_SIZE)[:HASH_SIZE]
_POPCOUNT8 = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


# -- hashing ---------------------------------------------------------------------------------------
# JPEG markers that start a frame header (SOF0..SOF15 less DHT, JPG and DAC), which holds the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# OpenCV decodes a JPEG at 1/8, 1/4 or 1/2 scale straight to grayscale, applying EXIF orientation.
_REDUCED_GRAY = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                 (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))
MIN_DECODED_SIDE = 2 * THUMB_SIZE  # scale down no further than this (as Pillow's draft does)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header without decoding, or None if this is not a
    complete-looking JPEG (then Pillow decodes it and names what is wrong).

    By hand because it is the hot path: ~3 us against ~50 us for Pillow's header parse, which
    holds the GIL that the hashing threads share."""
    if data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated (no end-of-image marker)
    i, end = 2, len(data) - 9
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF_MARKERS:
            return (data[i + 7] << 8 | data[i + 8]), (data[i + 5] << 8 | data[i + 6])
        else:
            i += 2 + (data[i + 2] << 8 | data[i + 3])
    return None


def _decode_jpeg_gray(data: bytes) -> np.ndarray | None:
    """A JPEG decoded by OpenCV at the strongest reduction that keeps its short side at least
    MIN_DECODED_SIDE, or None to leave it to Pillow (not a plain JPEG, or too big to be safe).

    OpenCV rather than Pillow's draft(): it does the whole decode in C with the GIL released, so
    the hashing threads run in parallel (bench/bench_dedupe.py: 1,000 images on 2 cores 0.59 s
    against 0.75 s). The entropy decoding of the whole file remains the main cost."""
    size = jpeg_size(data)
    if size is None or size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
        return None
    flag = cv2.IMREAD_GRAYSCALE
    for factor, reduced in _REDUCED_GRAY:
        if min(size) // factor >= MIN_DECODED_SIDE:
            flag = reduced
            break
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


def _decode_gray_pillow(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (MIN_DECODED_SIDE, MIN_DECODED_SIDE))  # JPEG only: scaled decode
            image = ImageOps.exif_transpose(image)  # hash what a person sees
            return np.asarray(image.convert("L"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise MasksetError(
            f"{name}: cannot decode this image ({error}). Move it out of the images folder "
            f"(or re-download it), then run again."
        ) from None


def thumbnail(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to pHash's 32x32 grayscale thumbnail (float32), as cheaply as possible:
    JPEGs through OpenCV's reduced-scale decode, everything else (and any JPEG OpenCV refuses)
    through Pillow. A uniform frame is trimmed first, then the rest is area-averaged."""
    gray = _decode_jpeg_gray(data)
    if gray is None or gray.size == 0:
        gray = _decode_gray_pillow(data, name)
    gray = gray.astype(np.float32)
    top, bottom, left, right = content_box(gray)
    return cv2.resize(gray[top:bottom, left:right], (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


BORDER_TOLERANCE = 8.0
BORDER_MAX = 0.25         # ... and a frame is at most this fraction of each side


def content_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inside a uniform frame (letterboxing, a re-poster's border).

    Trimming it first makes a framed copy hash like the original. Only a frame on both opposite
    sides, of one colour and of similar depth, counts: a photo's own plain background (which a
    brightness change can make more or less plain) is left alone.
    """
    h, w = gray.shape
    box = [0, h, 0, w]
    for axis, lines in ((0, gray), (1, gray.T)):
        n = lines.shape[0]
        limit = max(1, int(n * BORDER_MAX))
        found = []
        for side in (lines, lines[::-1]):
            colour = float(side[0].mean())
            if np.count_nonzero(np.abs(side[0] - colour) > BORDER_TOLERANCE) > 0.02 * side.shape[1]:
                break  # the outermost line is not plain: no frame on this axis (most photos)
            uniform = (np.abs(side[:limit] - colour) <= BORDER_TOLERANCE).mean(axis=1) >= 0.98
            found.append((int(np.argmin(uniform)) if not uniform.all() else limit, colour))
        if len(found) < 2:
            continue
        (depth_a, colour_a), (depth_b, colour_b) = found
        depth = min(depth_a, depth_b)
        if depth >= 1 and abs(colour_a - colour_b) <= BORDER_TOLERANCE and depth >= 0.5 * max(depth_a, depth_b) \
                and n - 2 * depth >= 8:
            box[2 * axis], box[2 * axis + 1] = depth, n - depth
    return tuple(box)


def phash_of_thumbnail(thumb: np.ndarray) -> int:
    """64-bit pHash: signs of the 8x8 lowest DCT frequencies against their median (DC excluded)."""
    low = (_DCT_LOW @ thumb @ _DCT_LOW.T).ravel()
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def dhash_of_thumbnail(thumb: np.ndarray) -> int:
    """128-bit dHash: signs of the horizontal (9x8) then vertical (8x9) neighbour differences.

    The second opinion on a pHash match: it looks at where edges are rather than at the
    low-frequency layout, so two different photos that pHash happens to call close usually differ
    here, while a resized, re-encoded or brightened copy does not. (Two shots of one studio series
    do not: same model and backdrop, another pose.)"""
    wide = cv2.resize(thumb, (HASH_SIZE + 1, HASH_SIZE), interpolation=cv2.INTER_AREA)
    tall = cv2.resize(thumb, (HASH_SIZE, HASH_SIZE + 1), interpolation=cv2.INTER_AREA)
    bits = np.concatenate([(wide[:, 1:] > wide[:, :-1]).ravel(), (tall[1:] > tall[:-1]).ravel()])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


class Fingerprint(NamedTuple):
    phash: int   # 64 bits: the key the neighbour search runs on
    dhash: int   # 128 bits: the second opinion on each pHash match


def fingerprint_of_thumbnail(thumb: np.ndarray) -> Fingerprint:
    return Fingerprint(phash_of_thumbnail(thumb), dhash_of_thumbnail(thumb))


def fingerprint_bytes(data: bytes, name: str = "image") -> Fingerprint:
    return fingerprint_of_thumbnail(thumbnail(data, name))


def _hash_one(path: Path) -> tuple[Fingerprint, str]:
    data = path.read_bytes()
    return fingerprint_bytes(data, str(path)), hashlib.sha256(data).hexdigest()


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
    with executor as pool, tqdm(total=len(paths), desc=desc, unit="img", disable=not progress,
                                file=sys.stderr, dynamic_ncols=True) as bar:
        for start in range(0, len(paths), BATCH):  # bounded: no 100k pending futures at once
            batch = paths[start:start + BATCH]
            for path, result in zip(batch, pool.map(_hash_one, batch, chunksize=chunk)):
                results[path] = result
                bar.update()
    return results


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
    entries: dict[str, tuple[int, int, Fingerprint, str]] = {}
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                if line != CACHE_HEADER:
                    return {}  # another format: derived data, rebuild it
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue  # a damaged line only costs a re-hash
            name, size, mtime, phash, dhash, sha = parts
            try:
                entries[name] = (int(size), int(mtime), Fingerprint(int(phash, 16), int(dhash, 16)), sha)
            except ValueError:
                continue
    return entries


def _write_cache(path: Path, entries: dict[str, tuple[int, int, Fingerprint, str]]) -> None:
    lines = [CACHE_HEADER]
    lines += [f"{name}\t{size}\t{mtime}\t{fp.phash:016x}\t{fp.dhash:032x}\t{sha}\n"
              for name, (size, mtime, fp, sha) in sorted(entries.items())]
    atomic.write_text(path, "".join(lines))


def image_records(dataset, files=None, progress: bool = True) -> dict[str, tuple[Fingerprint, str]]:
    """file name in images/ -> (Fingerprint, sha256); only new or changed files are read again.

    A file is unchanged when its size and mtime match the cache. The cache keeps entries of files
    no longer in images/ (quarantined ones come back on restore with the same bytes and mtime).
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
    if stale:
        for path, (fingerprint, sha) in _hash_many(stale, progress).items():
            size, mtime = wanted[path.name]
            cache[path.name] = (size, mtime, fingerprint, sha)
        _write_cache(cache_file, cache)
        for old in cache_file.parent.glob("phash-v*.tsv"):
            if old.name != CACHE_NAME:
                old.unlink()  # an older format's cache: derived data, now replaced
    return {name: (cache[name][2], cache[name][3]) for name in wanted}


def image_hashes(dataset, files=None, progress: bool = True) -> dict[str, Fingerprint]:
    """file name in images/ -> Fingerprint, cached incrementally under dataset.cache."""
    return {name: fingerprint for name, (fingerprint, _) in image_records(dataset, files, progress).items()}


# -- neighbours ------------------------------------------------------------------------------------
def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (numpy<2 has no bitwise_count)."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    return _POPCOUNT8[values.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _masks(bits: int, radius: int) -> np.ndarray:
    """Every `bits`-bit value with at most `radius` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        for ones in combinations(range(bits), r):
            masks.append(sum(1 << b for b in ones))
    return np.array(masks, dtype=np.int64)


def near_index_pairs(values: np.ndarray, threshold: int, progress: bool = False):
    """All index pairs (i < j) with Hamming(values[i], values[j]) <= threshold.

    Returns (i, j, distance) arrays sorted by (i, j).
    """
    values = np.ascontiguousarray(values, dtype=np.uint64)
    n = len(values)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    if n < 2 or threshold < 0:
        return empty
    threshold = min(int(threshold), 64)
    chunks, chunk_bits = 4, 16
    radius = threshold // chunks
    masks = _masks(chunk_bits, radius)
    index = np.arange(n, dtype=np.int64)
    found = []
    bar = tqdm(total=chunks * len(masks), desc="grouping", unit="probe", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for c in range(chunks):
        chunk = ((values >> np.uint64(c * chunk_bits)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(chunk, kind="stable")
        bucket_size = np.bincount(chunk, minlength=1 << chunk_bits)
        bucket_start = np.cumsum(bucket_size) - bucket_size
        for mask in masks:
            probe = chunk ^ mask
            counts = bucket_size[probe]
            total = int(counts.sum())
            bar.update()
            if total == 0:
                continue
            # Expand each hash's bucket range into (i, j) candidate pairs.
            i = np.repeat(index, counts)
            offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            j = order[np.repeat(bucket_start[probe], counts) + offsets]
            keep = i < j  # each unordered pair once per probe; also drops i == j
            i, j = i[keep], j[keep]
            distance = popcount64(values[i] ^ values[j])
            close = distance <= threshold
            if close.any():
                found.append((i[close], j[close], distance[close]))
    bar.close()
    if not found:
        return empty
    i = np.concatenate([f[0] for f in found])
    j = np.concatenate([f[1] for f in found])
    d = np.concatenate([f[2] for f in found])
    # A pair close on several chunks is found several times: keep one.
    _, first = np.unique(i * n + j, return_index=True)
    return i[first], j[first], d[first]


def near_pairs(hashes: dict, threshold: int, progress: bool = False) -> list[tuple]:
    """[(key_a, key_b, distance)] for every pair within `threshold`, key_a < key_b, sorted."""
    keys = sorted(hashes)
    values = np.fromiter((hashes[k] for k in keys), dtype=np.uint64, count=len(keys))
    i, j, d = near_index_pairs(values, threshold, progress)
    return sorted((keys[a], keys[b], int(dist)) for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist()))


def similar_pairs(fingerprints: dict, threshold: int = DEFAULT_THRESHOLD,
                  dhash_threshold: int = DEFAULT_DHASH_THRESHOLD, progress: bool = False) -> list[tuple]:
    """[(key_a, key_b, pHash distance)] for every near-duplicate pair: pHashes within `threshold`
    (found by near_pairs, without comparing all pairs) whose dHashes agree within
    `dhash_threshold`. key_a < key_b, sorted."""
    check_thresholds(threshold, dhash_threshold)
    candidates = near_pairs({k: f.phash for k, f in fingerprints.items()}, threshold, progress)
    if dhash_threshold >= DHASH_BITS:
        return candidates
    return [(a, b, d) for a, b, d in candidates
            if hamming(fingerprints[a].dhash, fingerprints[b].dhash) <= dhash_threshold]


def same_bytes_pairs(digests: dict) -> list[tuple]:
    """[(first key, other key, 0)] joining every key to the first key with the same digest: exact
    copies, which must group together whatever the thresholds (even 0 of a lossy hash)."""
    by_digest: dict = {}
    for key in sorted(digests):
        by_digest.setdefault(digests[key], []).append(key)
    return [(keys[0], other, 0) for keys in by_digest.values() for other in keys[1:]]


def check_thresholds(threshold: int, dhash_threshold: int = DEFAULT_DHASH_THRESHOLD) -> None:
    if not 0 <= threshold <= PHASH_BITS:
        raise MasksetError(f"THRESHOLD={threshold}: must be a pHash distance from 0 to {PHASH_BITS} "
                           f"(default {DEFAULT_THRESHOLD}; 0 = identical-looking only).")
    if not 0 <= dhash_threshold <= DHASH_BITS:
        raise MasksetError(f"DHASH_THRESHOLD={dhash_threshold}: must be a dHash distance from 0 to "
                           f"{DHASH_BITS} (default {DEFAULT_DHASH_THRESHOLD}; {DHASH_BITS} = no "
                           f"second opinion, pHash alone decides).")


def add_threshold_options(parser) -> None:
    """--threshold and --dhash-threshold, as `make dedupe` and `make split` both take them."""
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                        help=f"pHash Hamming distance (of {PHASH_BITS} bits) at or below which two images "
                             f"are near duplicates (default {DEFAULT_THRESHOLD}; 0 = identical-looking only)")
    parser.add_argument("--dhash-threshold", type=int, default=DEFAULT_DHASH_THRESHOLD,
                        help=f"... and their dHashes within this many bits (of {DHASH_BITS}): the second "
                             f"opinion (default {DEFAULT_DHASH_THRESHOLD}; {DHASH_BITS} = pHash alone)")


def groups(keys, pairs) -> list[list]:
    """Union-find: every key in exactly one group; groups and their members sorted."""
    parent = {key: key for key in keys}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]  # path halving keeps trees flat
            key = parent[key]
        return key

    for pair in pairs:
        parent.setdefault(pair[0], pair[0])
        parent.setdefault(pair[1], pair[1])
        a, b = root(pair[0]), root(pair[1])
        if a != b:
            if b < a:
                a, b = b, a
            parent[b] = a
    members: dict = {}
    for key in parent:
        members.setdefault(root(key), []).append(key)
    return sorted(sorted(group) for group in members.values())
