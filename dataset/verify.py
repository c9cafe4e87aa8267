"""Geometric verification: is a candidate pair the same photo, cropped, rotated or mirrored, or
two photos that only look alike?

A window of one image within a few bits of another's whole frame (dataset/neighbours.py:
candidate_pairs) is often a crop, and sometimes another photo of the same studio series: same
model, backdrop and shirt, another pose. Global hashes cannot tell these apart; local features
can. Each image of a candidate is decoded small (long side VERIFY_SIDE, uniform frame trimmed),
ORB keypoints are matched (Lowe's ratio test) and a similarity transform is fitted with RANSAC.
A pair passes when at least MIN_INLIERS matches agree on a plausible transform (a rotation of at
most MAX_ROTATION degrees) AND, once b is warped onto a, the largest upright box inside their
overlap hashes alike in both (pHash and dHash within ALIGNED_*), covering at least MIN_OVERLAP
of the smaller image. The inliers say "the same scene geometry"; the aligned hashes say "and the
same moment": the seed data's studio series 320/322 has 32 inliers and an aligned pHash of 16.

`find_pairs` is the finder that dedupe, split and leakcheck share: DIRECT candidates (whole frames
within today's thresholds) are accepted as they are; VIEW candidates, and MIRROR candidates with
flip on, only when verified. Candidates are verified closest first, one connected component of
the candidate graph per task in the worker pool (dataset/hashcache.py; each worker keeps the
features it decoded for the run, `_FeatureCache`), and a pair whose images are joined already
(union-find) is not verified: it could not change a group. The images still
alone then get a second pass (neighbours.loner_candidates: windows against windows), verified
the same way. Verdicts are
remembered by the two files' sha256 and VERSION (`Verdicts`, .cache/verdicts-v1.tsv), so a
second run verifies only new pairs.
"""
from __future__ import annotations

import itertools
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from . import atomic, hashing, neighbours

VERIFY_SIDE = 256          # long side of the decode features are found on (320 px and 500
                           # features: the same quality on the tune half, 3.6x the time)
ORB_FEATURES = 300
RATIO = 0.8                # Lowe's ratio test
RANSAC_PX = 4.0            # reprojection threshold, at VERIFY_SIDE
MIN_INLIERS = 40           # strictest setting within 0.002 of the best tune recall
ALIGNED_THRESHOLD = 14     # pHash bits between the aligned overlaps (320/322: 16)
ALIGNED_DHASH_THRESHOLD = 32
MAX_ROTATION = 10.0        # degrees
MIN_OVERLAP = 0.3          # of the smaller image (a 20 % crop of every side leaves 0.36)
VERSION = "v1:256:300:0.8:4:40:14:32:10:0.3"   # every setting above: a verdict's key
PAIRS_PER_TASK = 512       # a larger component is cut into tasks of about this many candidates


class Features(NamedTuple):
    gray: np.ndarray           # uint8, long side <= VERIFY_SIDE, frame trimmed
    points: np.ndarray         # (n, 2) float32
    descriptors: np.ndarray    # (n, 32) uint8


@dataclass
class Verification:
    ok: bool
    inliers: int = 0
    angle: float = 0.0
    overlap: float = 0.0
    aligned_distance: int = hashing.PHASH_BITS
    aligned_dhash_distance: int = hashing.DHASH_BITS
    why: str = ""


def decode_for_verify(data: bytes, name: str = "image") -> np.ndarray:
    """Grayscale, long side at most VERIFY_SIDE (a JPEG decoded at the strongest reduction that
    keeps it at least that), uniform frame trimmed."""
    gray, _ = hashing.decode_gray(data, name, min_long=VERIFY_SIDE)
    scale = VERIFY_SIDE / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    top, bottom, left, right = hashing.content_box(gray.astype(np.float32))
    return np.ascontiguousarray(gray[top:bottom, left:right])


_ORB = None


def features_of_gray(gray: np.ndarray) -> Features:
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=ORB_FEATURES, scaleFactor=1.2, nlevels=6, edgeThreshold=15,
                              patchSize=19, fastThreshold=12)
    keypoints, descriptors = _ORB.detectAndCompute(gray, None)
    if descriptors is None:
        return Features(gray, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    return Features(gray, np.float32([k.pt for k in keypoints]), descriptors)


def features_file(path: Path | str) -> Features:
    return features_of_gray(decode_for_verify(Path(path).read_bytes(), str(path)))


def mirrored(features: Features) -> Features:
    return features_of_gray(np.ascontiguousarray(features.gray[:, ::-1]))


_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)


def _aligned_hashes(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> tuple[int, int, float]:
    """Warp b onto a with the 2x3 map m (b -> a); hash the largest upright box inside their
    overlap in both. (pHash distance, dHash distance, the box's share of the smaller image)."""
    h, w = a.shape
    warped = cv2.warpAffine(b, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.warpAffine(np.full(b.shape, 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 127
    ys, xs = np.nonzero(inside)
    if len(xs) == 0:
        return hashing.PHASH_BITS, hashing.DHASH_BITS, 0.0
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    for _ in range(20):  # shrink the bounding box from its emptiest side until (almost) full
        box = inside[top:bottom, left:right]
        if box.size == 0:
            return hashing.PHASH_BITS, hashing.DHASH_BITS, 0.0
        if box.mean() >= 0.995:
            break
        worst = int(np.argmin([box[0].mean(), box[-1].mean(), box[:, 0].mean(), box[:, -1].mean()]))
        top, bottom, left, right = (top + (worst == 0), bottom - (worst == 1), left + (worst == 2),
                                    right - (worst == 3))
    overlap = (bottom - top) * (right - left) / float(min(a.size, b.size))
    if bottom - top < 16 or right - left < 16:
        return hashing.PHASH_BITS, hashing.DHASH_BITS, overlap
    size = (hashing.THUMB_SIZE, hashing.THUMB_SIZE)
    ta = cv2.resize(a[top:bottom, left:right].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    tb = cv2.resize(warped[top:bottom, left:right].astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return (neighbours.hamming(hashing.phash_of_thumbnail(ta), hashing.phash_of_thumbnail(tb)),
            neighbours.hamming(hashing.dhash_of_thumbnail(ta), hashing.dhash_of_thumbnail(tb)), overlap)


def verify(a: Features, b: Features) -> Verification:
    """Is b the same picture as a, up to a similarity transform (crop, scale, small rotation)?
    Mirror b first (`mirrored(b)`) to test a flipped copy."""
    if len(a.descriptors) < MIN_INLIERS or len(b.descriptors) < MIN_INLIERS:
        return Verification(False, why="too few keypoints")
    pairs = _MATCHER.knnMatch(b.descriptors, a.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return Verification(False, why="too few matches")
    src = b.points[[m.queryIdx for m in good]]
    dst = a.points[[m.trainIdx for m in good]]
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                             maxIters=2000, confidence=0.995)
    count = int(inliers.sum()) if inliers is not None else 0
    if m is None or count < MIN_INLIERS:
        return Verification(False, count, why="too few inliers")
    scale = math.hypot(m[0, 0], m[1, 0])
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    if abs(angle) > MAX_ROTATION or not 0.1 <= scale <= 10:
        return Verification(False, count, angle, why="implausible transform")
    distance, dhash_distance, overlap = _aligned_hashes(a.gray, b.gray, m)
    ok = overlap >= MIN_OVERLAP and distance <= ALIGNED_THRESHOLD and dhash_distance <= ALIGNED_DHASH_THRESHOLD
    return Verification(ok, count, angle, overlap, distance, dhash_distance, "" if ok else "aligned overlaps differ")


# -- remembered verdicts -----------------------------------------------------------------------------
VERDICTS_NAME = "verdicts-v1.tsv"
_HEADER = f"# maskset verdicts v1 ({VERSION}): sha256 a\tsha256 b\tkind\tsame (1/0)\n"


def verdicts_path(dataset) -> Path:
    return dataset.cache / VERDICTS_NAME


class Verdicts:
    """Verdicts of verified pairs, by (sha256, sha256, kind) for this VERSION: derived data in
    .cache/ (a file of another version or format is ignored and replaced)."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.known: dict[tuple[str, str, int], bool] = {}
        self.added = 0
        if path is not None and path.exists():
            with open(path, encoding="utf-8") as handle:
                if handle.readline() != _HEADER:
                    return
                for line in handle:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) == 4 and parts[2] in ("1", "2") and parts[3] in ("0", "1"):
                        self.known[(parts[0], parts[1], int(parts[2]))] = parts[3] == "1"

    @staticmethod
    def key(sha_a: str, sha_b: str, kind: int) -> tuple[str, str, int]:
        return (sha_a, sha_b, kind) if sha_a <= sha_b else (sha_b, sha_a, kind)

    def get(self, sha_a: str, sha_b: str, kind: int) -> bool | None:
        return self.known.get(self.key(sha_a, sha_b, kind))

    def put(self, sha_a: str, sha_b: str, kind: int, same: bool) -> None:
        self.known[self.key(sha_a, sha_b, kind)] = same
        self.added += 1

    def save(self, keep: set[str] | None = None) -> None:
        """Write (when a verdict was added), keeping only verdicts of files in `keep`, if given."""
        if self.path is None or not self.added:
            return
        lines = [_HEADER] + [f"{a}\t{b}\t{kind}\t{int(same)}\n" for (a, b, kind), same in sorted(self.known.items())
                             if keep is None or (a in keep and b in keep)]
        atomic.write_bytes(self.path, "".join(lines).encode(), durable=False)


# -- the finder ------------------------------------------------------------------------------------
@dataclass
class Found:
    """What find_pairs decided: the accepted pairs, as similar_pairs gives them, and its work."""
    pairs: list[tuple]                  # (key a, key b, pHash distance), a < b, sorted
    kinds: dict[tuple, str] = field(default_factory=dict)   # (a, b) -> direct | mirror | view
    candidates: int = 0
    second_pass: int = 0                # of the candidates: those for images the first pass left alone
    verified: int = 0                   # verifications run
    remembered: int = 0                 # verdicts taken from the cache
    rejected: int = 0


def _root(parent: dict, k: int) -> int:
    parent.setdefault(k, k)
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


FEATURE_CACHE_BYTES = 128 << 20   # per worker: the features of images met in its earlier tasks


class _FeatureCache:
    """Features by (image, mirrored), least recently used out first, for one finder run (both passes):
    a large component is cut into tasks that share images, and the same worker meets an image
    again (10k of the bench's tiles: 3.9 feature extractions per image without it; 20k: grouping
    87 s -> 75 s with 128 MB a worker)."""

    def __init__(self, limit: int):
        self.limit, self.run, self.used = limit, None, 0
        self.items: OrderedDict[tuple, Features] = OrderedDict()
        self.lock = threading.Lock()   # a thread pool shares one

    def get(self, run, key: tuple, make) -> Features:
        with self.lock:
            if run != self.run:   # another run: its files may have changed since
                self.run, self.used = run, 0
                self.items.clear()
            hit = self.items.get(key)
            if hit is not None:
                self.items.move_to_end(key)
                return hit
        value = make()
        with self.lock:
            if run == self.run and key not in self.items:
                self.items[key] = value
                self.used += _nbytes(value)
                while self.used > self.limit and self.items:
                    self.used -= _nbytes(self.items.popitem(last=False)[1])
        return value


def _nbytes(features: Features) -> int:
    return features.gray.nbytes + features.points.nbytes + features.descriptors.nbytes


_FEATURES = _FeatureCache(FEATURE_CACHE_BYTES)
_RUNS = itertools.count()


def _new_run() -> tuple[int, int]:
    """The feature caches' key: one finder run, its files as they are now."""
    return os.getpid(), next(_RUNS)


def _run_task(task) -> tuple[list[int], list[tuple[int, bool]], int]:
    """One component's candidates, in order: (accepted rows, new verdicts (row, same), how many
    verifications ran). Runs in a worker; features are decoded once per image and worker, lazily."""
    rows, paths, known, run = task   # rows: (row, a, b, kind); paths: {image: path}; known: {row: same}
    parent: dict[int, int] = {}

    def feats(k: int, flipped: bool = False) -> Features:
        return _FEATURES.get(run, (k, flipped), lambda: mirrored(feats(k)) if flipped else features_file(paths[k]))

    accepted, verdicts, ran = [], [], 0
    for row, a, b, kind in rows:
        ra, rb = _root(parent, a), _root(parent, b)
        if kind != neighbours.DIRECT:
            if ra == rb:
                continue  # joined already: verifying cannot change a group
            same = known.get(row)
            if same is None:
                ran += 1
                same = verify(feats(a), feats(b, kind == neighbours.MIRROR)).ok
                verdicts.append((row, same))
            if not same:
                continue
        accepted.append(row)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return accepted, verdicts, ran


def _settle(candidates: neighbours.Candidates, keys: list, paths: dict | None, digests: dict | None,
            verdicts: Verdicts | None, progress: bool, found: Found, run: tuple) -> list[tuple]:
    """The accepted candidates, as (image index a, image index b, kind, distance): DIRECT as they
    are, the rest only when verified (in the worker pool, one component of the candidate graph
    per task, closest first). Counts its work into `found`. run: the finder run's key (_new_run)."""
    from .hashcache import run_tasks  # the worker pool

    i, j, kind, distance = (c.tolist() for c in candidates)
    verifiable = paths is not None
    found.candidates += len(i)
    # Components of the candidate graph: each is verified on its own (in order), in one task.
    parent: dict[int, int] = {}
    for a, b, k in zip(i, j, kind):
        if k == neighbours.DIRECT or verifiable:
            ra, rb = _root(parent, a), _root(parent, b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    by_component: dict[int, list[int]] = {}
    # DIRECT first, then the closest; among equals a JPEG before another file (a PNG re-save of
    # a JPEG has the JPEG's hashes, and decodes ten times slower)
    costly = [verifiable and Path(paths[k]).suffix.lower() not in (".jpg", ".jpeg") for k in keys]
    order = sorted(range(len(i)), key=lambda r: (kind[r] != neighbours.DIRECT, distance[r],
                                                 costly[i[r]] + costly[j[r]], kind[r], i[r], j[r]))
    for r in order:
        if kind[r] == neighbours.DIRECT or verifiable:
            by_component.setdefault(_root(parent, i[r]), []).append(r)
    accepted: list[int] = []
    tasks = []
    for rows in by_component.values():
        if all(kind[r] == neighbours.DIRECT for r in rows):
            accepted += rows
            continue
        for start in range(0, len(rows), PAIRS_PER_TASK):
            chunk = rows[start:start + PAIRS_PER_TASK]
            known = {}
            if verdicts is not None and digests is not None:
                for r in chunk:
                    if kind[r] != neighbours.DIRECT:
                        same = verdicts.get(digests[keys[i[r]]], digests[keys[j[r]]], kind[r])
                        if same is not None:
                            known[r] = same
            found.remembered += len(known)
            images_of = {x for r in chunk for x in (i[r], j[r])}
            tasks.append(([(r, i[r], j[r], kind[r]) for r in chunk],
                          {x: paths[keys[x]] for x in images_of}, known, run))
    for rows, new, ran in run_tasks(_run_task, tasks, progress, "verifying", weights=[len(t[0]) for t in tasks]):
        accepted += rows
        found.verified += ran
        found.rejected += sum(not same for _, same in new)
        if verdicts is not None and digests is not None:
            for r, same in new:
                verdicts.put(digests[keys[i[r]]], digests[keys[j[r]]], kind[r], same)
    return [(i[r], j[r], kind[r], distance[r]) for r in accepted]


def find_pairs(fingerprints: dict, paths: dict | None = None, digests: dict | None = None,
               threshold: int = neighbours.DEFAULT_THRESHOLD,
               dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD, flip: bool = False,
               verdicts: Verdicts | None = None, progress: bool = False) -> Found:
    """The near-duplicate pairs among `fingerprints` (key -> hashing.Fingerprint with views):
    DIRECT candidates as they are, VIEW and (flip) MIRROR candidates verified against the image
    files in `paths` (key -> path). Then a second pass for the images still alone: their windows
    against every image's windows (neighbours.loner_candidates; crops of another aspect),
    verified too. Without paths, only DIRECT pairs (the pHash/dHash finder of old). digests
    (key -> sha256) key the remembered verdicts."""
    keys = sorted(fingerprints)
    listed = [fingerprints[k] for k in keys]
    found = Found([])
    first_pass = neighbours.candidate_pairs(listed, threshold, dhash_threshold, flip)
    run = _new_run()
    accepted = _settle(first_pass, keys, paths, digests, verdicts, progress, found, run)
    if paths is not None and len(keys) > 1:
        joined = neighbours.groups(range(len(keys)), [(a, b) for a, b, _, _ in accepted])
        group_of = np.empty(len(keys), np.int64)
        for number, members in enumerate(joined):
            group_of[members] = number
        loners = [members[0] for members in joined if len(members) == 1]
        # a pair the first pass proposed was judged there (or joined: then it has no loner)
        second = neighbours.loner_candidates(listed, loners, group_of, judged=(first_pass.i, first_pass.j))
        found.second_pass = len(second)
        accepted += _settle(second, keys, paths, digests, verdicts, progress, found, run)
    best: dict[tuple, tuple[int, int]] = {}
    for a, b, kind, distance in accepted:
        pair = (keys[a], keys[b])
        if pair not in best or (kind, distance) < best[pair]:
            best[pair] = (kind, distance)
    found.pairs = sorted((a, b, d) for (a, b), (_, d) in best.items())
    found.kinds = {pair: neighbours.KINDS[k] for pair, (k, _) in best.items()}
    return found
