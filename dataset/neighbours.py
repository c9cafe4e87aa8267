"""Near-duplicate search over fingerprints: every pair within a Hamming distance without
comparing all pairs, the dHash second opinion, exact copies, and union-find groups.

Neighbours are found by multi-index hashing: split each 64-bit hash into four 16-bit chunks;
two hashes within distance t agree within t//4 bits on at least one chunk (pigeonhole), so only
hashes in the few buckets near each chunk value are candidates. Bucket look-ups are numpy
gathers over all hashes at once.
"""
from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import numpy as np

from . import progress as progress_bars
from .errors import MasksetError
from .hashing import DHASH_BITS, MIRROR_ROW, PHASH_BITS, VIEW_ROWS

# Two images are near duplicates when their pHashes are within DEFAULT_THRESHOLD bits (of 64)
# and their dHashes, the second opinion, within DEFAULT_DHASH_THRESHOLD bits (of 128). Chosen on
# the "tune" half of bench/dedupe_labelled_set.py (docs/dedupe.md has the numbers).
DEFAULT_THRESHOLD = 10
DEFAULT_DHASH_THRESHOLD = 40
# A window of one image against another's whole frame: looser, since every such candidate is
# verified (dataset/verify.py) before it counts. Chosen on the tune half (docs/dedupe.md).
VIEW_THRESHOLD = 12
VIEW_DHASH_THRESHOLD = 48
VIEW_RADIUS = 2               # multi-index probe radius for the windows (exact would be 3)
AUTO_CHUNKS_LIMIT = 30_000    # above this many images, 3 chunks of 21-22 bits instead of 4 of 16
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


def _chunks(bits: int, chunks: int) -> list[tuple[int, int]]:
    """(start, width) of each chunk: 4 -> four of 16 bits, 3 -> 22, 21, 21."""
    widths = [bits // chunks + (c < bits % chunks) for c in range(chunks)]
    return [(sum(widths[:c]), w) for c, w in enumerate(widths)]


def _probe(db: np.ndarray, queries: np.ndarray, chunks: int, radius: int, bar=None):
    """Yield (query index, db index) arrays of the raw candidates: pairs that agree within
    `radius` bits on some chunk (each once per chunk and mask it is found by)."""
    qidx = np.arange(len(queries), dtype=np.int64)
    for start, width in _chunks(64, chunks):
        masks = _masks(width, radius)
        keep = np.uint64((1 << width) - 1)
        dchunk = ((db >> np.uint64(start)) & keep).astype(np.int64)
        qchunk = dchunk if queries is db else ((queries >> np.uint64(start)) & keep).astype(np.int64)
        order = np.argsort(dchunk, kind="stable")
        bucket_size = np.bincount(dchunk, minlength=1 << width)
        bucket_start = np.cumsum(bucket_size) - bucket_size
        for mask in masks:
            probe = qchunk ^ mask
            counts = bucket_size[probe]
            total = int(counts.sum())
            if bar is not None:
                bar.update()
            if total == 0:
                continue
            # Expand each query's bucket range into (q, e) candidate pairs.
            q = np.repeat(qidx, counts)
            offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
            yield q, order[np.repeat(bucket_start[probe], counts) + offsets]


def _collect(found: list, n: int):
    if not found:
        return (np.empty(0, np.int64),) * 3
    q, e, d = (np.concatenate([f[k] for f in found]) for k in range(3))
    # A pair close on several chunks is found several times: keep one.
    _, first = np.unique(q * n + e, return_index=True)
    return q[first], e[first], d[first]


def near_index_pairs(values: np.ndarray, threshold: int, progress: bool = False):
    """All index pairs (i < j) with Hamming(values[i], values[j]) <= threshold.

    Returns (i, j, distance) arrays sorted by (i, j).
    """
    values = np.ascontiguousarray(values, dtype=np.uint64)
    n = len(values)
    if n < 2 or threshold < 0:
        return (np.empty(0, np.int64),) * 3
    threshold = min(int(threshold), 64)
    chunks, radius = 4, min(int(threshold), 64) // 4
    bar = progress_bars.bar(total=chunks * len(_masks(16, radius)), desc="grouping", unit="probe",
                            enabled=progress)
    found = []
    for i, j in _probe(values, values, chunks, radius, bar):
        keep = i < j  # each unordered pair once per probe; also drops i == j
        i, j = i[keep], j[keep]
        distance = popcount64(values[i] ^ values[j])
        close = distance <= threshold
        if close.any():
            found.append((i[close], j[close], distance[close]))
    bar.close()
    return _collect(found, n)


def query_index_pairs(db: np.ndarray, queries: np.ndarray, threshold: int, chunks: int = 4,
                      max_radius: int | None = None):
    """All (query index, db index, distance) with Hamming(queries[q], db[e]) <= threshold, sorted
    by (q, e): near_index_pairs generalised to a probe set that differs from the indexed set (the
    windows of every image against every whole frame, in one index).

    Exact (pigeonhole: some chunk within threshold // chunks bits) unless max_radius caps the
    per-chunk radius below that: then a pair is found when some chunk is within max_radius bits
    (at threshold 12 with 4 chunks and radius 2, only pairs with exactly 3 bits in every chunk
    are missed: 99 % of the pairs found at 1/5 of the cost of radius 3)."""
    db = np.ascontiguousarray(db, dtype=np.uint64)
    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    if not len(db) or not len(queries) or threshold < 0:
        return (np.empty(0, np.int64),) * 3
    threshold = min(int(threshold), 64)
    radius = threshold // chunks if max_radius is None else min(max_radius, threshold // chunks)
    found = []
    for q, e in _probe(db, queries, chunks, radius):
        distance = popcount64(queries[q] ^ db[e])
        close = distance <= threshold
        if close.any():
            found.append((q[close], e[close], distance[close]))
    return _collect(found, len(db))


def near_pairs(hashes: dict, threshold: int, progress: bool = False) -> list[tuple]:
    """[(key_a, key_b, distance)] for every pair within `threshold`, key_a < key_b, sorted."""
    keys = sorted(hashes)
    values = np.fromiter((hashes[k] for k in keys), dtype=np.uint64, count=len(keys))
    i, j, d = near_index_pairs(values, threshold, progress)
    return sorted((keys[a], keys[b], int(dist)) for a, b, dist in zip(i.tolist(), j.tolist(), d.tolist()))


DIRECT, MIRROR, VIEW = 0, 1, 2   # a candidate's kind: whole frames; mirrored frame; a window
KINDS = ("direct", "mirror", "view")


class Candidates(NamedTuple):
    """Candidate pairs by index into the fingerprints' order, i < j, one row per pair and kind
    (a DIRECT pair has no other row), sorted by (i, j, kind)."""
    i: np.ndarray       # int64
    j: np.ndarray
    kind: np.ndarray    # int8: DIRECT | MIRROR | VIEW
    distance: np.ndarray  # pHash bits of the closest (view, frame) match

    def __len__(self) -> int:
        return len(self.i)


def _stack(fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1 + VIEW_ROWS) pHashes and (N, 1 + VIEW_ROWS, 2) dHashes: the whole frame, then the
    windows, then the mirrored frame."""
    n = len(fingerprints)
    whole = np.empty((n, 1, 3), np.uint64)
    for k, f in enumerate(fingerprints):
        whole[k, 0] = (f.phash, f.dhash >> 64, f.dhash & 0xFFFF_FFFF_FFFF_FFFF)
    if any(len(f.views) != VIEW_ROWS * 24 for f in fingerprints):
        raise ValueError("candidate_pairs needs fingerprints with their views (hashing.fingerprint_bytes)")
    views = np.frombuffer(b"".join(f.views for f in fingerprints), np.uint64).reshape(n, VIEW_ROWS, 3)
    rows = np.concatenate([whole, views], axis=1) if n else np.empty((0, 1 + VIEW_ROWS, 3), np.uint64)
    return np.ascontiguousarray(rows[:, :, 0]), np.ascontiguousarray(rows[:, :, 1:])


def candidate_pairs(fingerprints, threshold: int = DEFAULT_THRESHOLD,
                    dhash_threshold: int = DEFAULT_DHASH_THRESHOLD, flip: bool = False,
                    view_threshold: int = VIEW_THRESHOLD, view_dhash_threshold: int = VIEW_DHASH_THRESHOLD,
                    view_chunks: int | None = None) -> Candidates:
    """Typed candidate pairs among a list of fingerprints (with their views):

    DIRECT  whole frame against whole frame within (threshold, dhash_threshold): what dedupe
            has always accepted, with no verification;
    VIEW    any window (or the whole frame) of one image against the whole frame of another
            within (view_threshold, view_dhash_threshold): a crop, a small rotation, a compound
            edit, or two different pictures: verified before it counts;
    MIRROR  (flip only) the mirrored frame against a whole frame within (threshold,
            dhash_threshold): a flipped copy, or a symmetric face on a plain backdrop: verified.
    """
    check_thresholds(threshold, dhash_threshold)
    n = len(fingerprints)
    empty = Candidates(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64))
    if n < 2:
        return empty
    P, D = _stack(fingerprints)
    whole = P[:, 0]
    parts = []

    def add(q_img, q_row, e_img, distance, kind, limit):
        dd = popcount64(D[q_img, q_row, 0] ^ D[e_img, 0, 0]) + popcount64(D[q_img, q_row, 1] ^ D[e_img, 0, 1])
        keep = (dd <= limit) & (q_img != e_img)
        parts.append((np.minimum(q_img, e_img)[keep], np.maximum(q_img, e_img)[keep],
                      np.full(int(keep.sum()), kind, np.int8), distance[keep]))

    i, j, d = near_index_pairs(whole, threshold)
    add(i, np.zeros(len(i), np.int64), j, d, DIRECT, dhash_threshold)
    if view_threshold >= 0:
        # The windows are the indexed side and the whole frames the probes: 28x fewer probes for
        # the same raw candidates. The whole frame is indexed too (beyond `threshold`).
        windows = P[:, :MIRROR_ROW + 1]          # whole frame + the windows
        chunks = view_chunks or (4 if n <= AUTO_CHUNKS_LIMIT else 3)
        frame, flat, d = query_index_pairs(windows.reshape(-1), whole, view_threshold, chunks, VIEW_RADIUS)
        owner, row = np.divmod(flat, windows.shape[1])
        add(owner, row, frame, d, VIEW, view_dhash_threshold)
    if flip:
        q, e, d = query_index_pairs(whole, P[:, 1 + MIRROR_ROW], threshold)
        add(q, np.full(len(q), 1 + MIRROR_ROW), e, d, MIRROR, dhash_threshold)
    i, j, kind, distance = (np.concatenate([p[k] for p in parts]) for k in range(4))
    if not len(i):
        return empty
    order = np.lexsort((distance, kind, j, i))   # per pair: the strongest kind first, then closest
    i, j, kind, distance = i[order], j[order], kind[order], distance[order]
    first = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1]) | (kind[1:] != kind[:-1])]
    i, j, kind, distance = i[first], j[first], kind[first], distance[first]
    pair = i * n + j
    keep = ~(np.isin(pair, pair[kind == DIRECT]) & (kind != DIRECT))  # nothing to verify there
    return Candidates(i[keep], j[keep], kind[keep], distance[keep])


LONER_PARTNERS = 3  # per image left alone: the closest groups whose windows match its windows
LONER_CHUNKS = 3    # 21-22-bit chunks: 20k images all alone 29 s and 0.64 GB, against 237 s and 1.5 GB
                    # with 16-bit chunks, and the same recall on both labelled halves
LONER_RADIUS = 2    # its probe radius; 1 above AUTO_CHUNKS_LIMIT images (20k all alone: 4.4 s against 20 s;
                    # crop recall 0.968 / 0.949 against 0.978 / 0.970 on the tune / test halves)
LONER_QUERY_WINDOWS = 18  # a loner probes with its 90 % and 80 % windows (hashing.WINDOWS' first 18)
                    # against all 27 of every image: its 70 % windows found nothing more on either half,
                    # and cost a third of the search (20k all alone: 20 s against 28.5 s)
LONER_BATCH = 2048  # loners probed at a time (memory)


def loner_candidates(fingerprints, loners, group_of, judged=None, threshold: int = VIEW_THRESHOLD,
                     dhash_threshold: int = VIEW_DHASH_THRESHOLD, partners: int = LONER_PARTNERS,
                     chunks: int | None = None) -> Candidates:
    """VIEW candidates for the images the first pass left alone: a 90 % or 80 % window of a
    loner against any window of every image, within (threshold, dhash_threshold) on the same pair
    of windows (multi-index search, LONER_CHUNKS chunks, LONER_RADIUS); per loner, the closest
    image of each of its `partners` closest groups (group_of: image index -> group id, after the
    first pass), leaving out the pairs (i, j), i < j, in `judged` (arrays i, j: the first pass's
    candidates).

    A crop with its own aspect (each side cut 0-20 %) matches no whole frame, but a window of
    it matches a window of its original: on the tune half 83 % of the copies the first pass
    missed have their original's group closest, 92 % among the closest three. Only loners
    probe (a copy already grouped is found), so the verifications stay at most `partners` per
    loner. Where pictures share a layout (an object at the same place on a plain backdrop), a
    window holding the backdrop and the object's outline matches another picture's at a few
    bits: such look-alikes take partner slots, and verification turns them down."""
    loners = np.asarray(sorted(loners), np.int64)
    n = len(fingerprints)
    empty = Candidates(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64))
    if n < 2 or not len(loners):
        return empty
    P, D = _stack(fingerprints)
    rows = MIRROR_ROW                               # the windows (a whole frame was the first pass's)
    P, D = np.ascontiguousarray(P[:, 1:rows + 1]), D[:, 1:rows + 1]
    radius = LONER_RADIUS if n <= AUTO_CHUNKS_LIMIT else 1
    group_of = np.asarray(group_of, np.int64)
    judged_ids = None if judged is None or not len(judged[0]) else \
        np.asarray(judged[0], np.int64) * n + np.asarray(judged[1], np.int64)
    asked = LONER_QUERY_WINDOWS
    parts = []
    # Loners in batches: each loner's partners depend on it alone, and a batch bounds the raw
    # candidates in memory (all 40k images of the bench's tiles at once: 1.9 GB).
    for start in range(0, len(loners), LONER_BATCH):
        batch = loners[start:start + LONER_BATCH]
        q, e, distance = query_index_pairs(P.reshape(-1), P[batch][:, :asked].reshape(-1), threshold,
                                           chunks or LONER_CHUNKS, radius)
        q_img, q_row = batch[q // asked], q % asked
        e_img, e_row = np.divmod(e, rows)
        dd = popcount64(D[q_img, q_row, 0] ^ D[e_img, e_row, 0]) + popcount64(D[q_img, q_row, 1] ^ D[e_img, e_row, 1])
        keep = (dd <= dhash_threshold) & (q_img != e_img)
        if judged_ids is not None:
            keep &= ~np.isin(np.minimum(q_img, e_img) * n + np.maximum(q_img, e_img), judged_ids)
        q_img, e_img, distance, dd = q_img[keep], e_img[keep], distance[keep], dd[keep]
        if not len(q_img):
            continue
        score = 4 * distance + dd                   # pHash bits, dHash as the tie-breaker (tune half)
        group = group_of[e_img]
        order = np.lexsort((e_img, score, group, q_img))  # per (loner, group): the closest first
        q_img, e_img, distance, score, group = (a[order] for a in (q_img, e_img, distance, score, group))
        first = np.r_[True, (q_img[1:] != q_img[:-1]) | (group[1:] != group[:-1])]
        q_img, e_img, distance, score = q_img[first], e_img[first], distance[first], score[first]
        order = np.lexsort((e_img, score, q_img))    # per loner: its groups, closest first
        q_img, e_img, distance = q_img[order], e_img[order], distance[order]
        starts = np.r_[0, np.flatnonzero(q_img[1:] != q_img[:-1]) + 1]
        rank = np.arange(len(q_img)) - np.repeat(starts, np.diff(np.r_[starts, len(q_img)]))
        keep = rank < partners
        parts.append((np.minimum(q_img, e_img)[keep], np.maximum(q_img, e_img)[keep], distance[keep]))
    if not parts:
        return empty
    i, j, distance = (np.concatenate([p[k] for p in parts]) for k in range(3))
    _, first = np.unique(i * n + j, return_index=True)   # two loners may name each other
    return Candidates(i[first], j[first], np.full(len(first), VIEW, np.int8), distance[first])


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
