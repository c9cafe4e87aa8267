"""Perceptual hashes and near-duplicate groups, shared by `make dedupe` and `make split`.

The pure core: hash images (pHash, 64 bits), find every pair within a Hamming distance without
comparing all pairs, and join pairs into groups with union-find. `image_hashes` adds the
dataset-level cache so that only new or changed images are hashed again.

Speed, measured in bench/bench_dedupe.py:
- JPEGs are decoded at 1/2..1/8 scale (Pillow's draft(): the decoder skips most of the IDCT work)
  straight to grayscale, since pHash only looks at a 32x32 thumbnail's lowest frequencies.
- Hashing runs in a thread pool: Pillow releases the GIL while decoding and resizing.
- Neighbours are found by multi-index hashing: split each hash into four 16-bit chunks; two
  hashes within distance t agree within t//4 bits on at least one chunk (pigeonhole), so only
  hashes in the few buckets near each chunk value are candidates. Bucket look-ups are numpy
  gathers over all hashes at once.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from . import atomic
from .errors import MasksetError

# pHash Hamming distance (of 64 bits) at or below which two images count as near duplicates.
# Chosen on the labelled set in bench/dedupe_labelled_set.py (docs/dedupe.md has the numbers).
DEFAULT_THRESHOLD = 10

HASH_SIZE = 8          # 8x8 low-frequency DCT coefficients -> 64 bits
THUMB_SIZE = 32        # pHash's thumbnail: 4x the hash size, as in the original pHash
BATCH = 2048         # files handed to the thread pool at a time
CACHE_NAME = "phash-v1.tsv"
CACHE_HEADER = "# maskset pHash cache v1: name\tsize\tmtime_ns\tphash(hex)\tsha256\n"

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
def thumbnail(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to pHash's 32x32 grayscale thumbnail (float32), as cheaply as possible."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # JPEG only: let the decoder scale down by up to 8 and emit luma only.
            image.draft("L", (THUMB_SIZE * 2, THUMB_SIZE * 2))
            image = ImageOps.exif_transpose(image)  # hash what a person sees
            gray = np.asarray(image.convert("L"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise MasksetError(
            f"{name}: cannot decode this image ({error}). Move it out of the images folder "
            f"(or re-download it), then run again."
        ) from None
    top, bottom, left, right = content_box(gray)
    small = Image.fromarray(gray[top:bottom, left:right]).resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


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


def phash_bytes(data: bytes, name: str = "image") -> int:
    return phash_of_thumbnail(thumbnail(data, name))


def _hash_one(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return phash_bytes(data, str(path)), hashlib.sha256(data).hexdigest()


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _hash_many(paths: list[Path], progress: bool, desc: str = "hashing") -> dict[Path, tuple[int, str]]:
    results: dict[Path, tuple[int, str]] = {}
    if not paths:
        return results
    # Threads, not processes: Pillow releases the GIL while decoding; a process pool measured no
    # faster on 2 cores, and forking a threaded caller (TensorFlow in the demo) can deadlock.
    with ThreadPoolExecutor(max_workers=_workers()) as pool, \
            tqdm(total=len(paths), desc=desc, unit="img", disable=not progress,
                 file=sys.stderr, dynamic_ncols=True) as bar:
        for start in range(0, len(paths), BATCH):  # bounded: no 100k pending futures at once
            batch = paths[start:start + BATCH]
            for path, result in zip(batch, pool.map(_hash_one, batch)):
                results[path] = result
                bar.update()
    return results


def hash_files(paths, progress: bool = False) -> dict[Path, int]:
    """pHash of each image file (no dataset, no cache)."""
    paths = [Path(p) for p in paths]
    return {path: phash for path, (phash, _) in _hash_many(paths, progress).items()}


# -- the dataset cache -----------------------------------------------------------------------------
def cache_path(dataset) -> Path:
    return dataset.cache / CACHE_NAME


def _read_cache(path: Path) -> dict[str, tuple[int, int, int, str]]:
    entries: dict[str, tuple[int, int, int, str]] = {}
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                if line != CACHE_HEADER:
                    return {}  # another format: derived data, rebuild it
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue  # a damaged line only costs a re-hash
            name, size, mtime, phash, sha = parts
            try:
                entries[name] = (int(size), int(mtime), int(phash, 16), sha)
            except ValueError:
                continue
    return entries


def _write_cache(path: Path, entries: dict[str, tuple[int, int, int, str]]) -> None:
    lines = [CACHE_HEADER]
    lines += [f"{name}\t{size}\t{mtime}\t{phash:016x}\t{sha}\n"
              for name, (size, mtime, phash, sha) in sorted(entries.items())]
    atomic.write_text(path, "".join(lines))


def image_records(dataset, files=None, progress: bool = True) -> dict[str, tuple[int, str]]:
    """file name in images/ -> (pHash, sha256); only new or changed files are read again.

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
        for path, (phash, sha) in _hash_many(stale, progress).items():
            size, mtime = wanted[path.name]
            cache[path.name] = (size, mtime, phash, sha)
        _write_cache(cache_file, cache)
    return {name: (cache[name][2], cache[name][3]) for name in wanted}


def image_hashes(dataset, files=None, progress: bool = True) -> dict[str, int]:
    """file name in images/ -> 64-bit pHash, cached incrementally under dataset.cache."""
    return {name: phash for name, (phash, _) in image_records(dataset, files, progress).items()}


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
