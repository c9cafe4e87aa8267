"""Near-duplicate search over fingerprints: every pair within a Hamming distance without
comparing all pairs, the dHash second opinion, exact copies, and union-find groups.

Neighbours are found by multi-index hashing: split each 64-bit hash into four 16-bit chunks;
two hashes within distance t agree within t//4 bits on at least one chunk (pigeonhole), so only
hashes in the few buckets near each chunk value are candidates. Bucket look-ups are numpy
gathers over all hashes at once.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from . import progress as progress_bars
from .errors import MasksetError
from .hashing import DHASH_BITS, PHASH_BITS

# Two images are near duplicates when their pHashes are within DEFAULT_THRESHOLD bits (of 64)
# and their dHashes, the second opinion, within DEFAULT_DHASH_THRESHOLD bits (of 128). Chosen on
# the "tune" half of bench/dedupe_labelled_set.py (docs/dedupe.md has the numbers).
DEFAULT_THRESHOLD = 10
DEFAULT_DHASH_THRESHOLD = 40
_POPCOUNT8 = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


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
    bar = progress_bars.bar(total=chunks * len(masks), desc="grouping", unit="probe", enabled=progress)
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
