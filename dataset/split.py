"""`make split VAL=0.2 TEST=0.1 SEED=n [RESPLIT=1|test] [FOLDS=k]`: train, val and test parts
from export/annotations.csv, with no duplicate group across any boundary, kept stable as the
dataset grows.

Exact and near-duplicate images (as `make dedupe` finds them: same bytes, pHash and dHash within
its thresholds, or a crop or small rotation confirmed by geometric verification) form one group,
and so do mirror images (FLIP=1, the default here: keras-retinanet flips images in training, so a
mirror image across parts is a leak; FLIP=0 turns it off, recorded in split.json), and a group never straddles a boundary: otherwise val or
test holds copies of training images and every score is inflated. Groups are placed greedily,
largest first, then moved one at a time while that brings each class's share of boxes (and the
share of images) in val and in test nearer VAL and TEST.

export/split.json is the record of the split. Running again after the dataset changed keeps
every earlier image in its part and places only the new ones: a new image that duplicates a
placed one joins that one's part; images that left the dataset leave their part (and return to
it if they come back). New images go to train and val only: the test part changes only when the
user names it (RESPLIT=test). A new image that is a duplicate of a test image, or that joins
images of two parts, cannot go anywhere without a leak: it is held out (listed, in no part).
RESPLIT=1 redraws train and val (test stays), RESPLIT=test all three; the old record is kept
beside the new one. The same input and seed give byte-identical CSVs.

It also counts the leakage it prevented (the duplicate pairs a plain random split with the same
shares and seed would have put across a boundary) and how the shares drifted since the last
split. FOLDS=k writes grouped, stratified k-fold CSVs of train+val for cross-validation.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, hashcache, jsonl, manifest, neighbours
from .errors import MasksetError
from .export import csv_text
from .layout import Dataset
from .results import Result
from .verify import VERSION as FINDER_VERSION, Verdicts, verdicts_path

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")
RECORD = "split.json"
LOG = "split-log.jsonl"  # one line per run: when, how, the counts and the drift
VERSION = 2
DEFAULT_VAL = 0.2
DEFAULT_TEST = 0.0
DEFAULT_SEED = 0
TRAINVAL, ALL = "trainval", "all"   # what RESPLIT= redraws


# -- the duplicate finder: dedupe's, for split and leakcheck ------------------------------------------
@dataclass
class Duplicates:
    """Who duplicates whom, as `make dedupe` decides it (same bytes, or pHash and dHash within its
    thresholds), kept compact: files with one fingerprint (same bytes always have one) form a
    clump, searched once; `near` holds the near-duplicate pairs between clumps. A dataset of
    many exact copies (a scrape before dedupe, a replicated benchmark) then costs what its
    distinct pictures cost, not the square of its copies."""
    clumps: dict[str, list[str]]       # first key -> every key with that fingerprint (sorted)
    near: list[tuple[str, str, int]]   # (clump, clump, pHash distance), clump keys sorted

    def groups(self) -> list[list[str]]:
        """Union-find over the clumps, expanded: every key in exactly one group, sorted."""
        joined = neighbours.groups(sorted(self.clumps), self.near)
        return sorted(sorted(k for clump in group for k in self.clumps[clump]) for group in joined)

    def count(self, keep=None) -> int:
        """How many duplicate pairs (among the keys `keep` accepts)."""
        sizes = {c: sum(1 for k in members if keep is None or keep(k)) for c, members in self.clumps.items()}
        return sum(n * (n - 1) // 2 for n in sizes.values()) + sum(sizes[a] * sizes[b] for a, b, _ in self.near)

    def across(self, label: dict) -> int:
        """How many duplicate pairs of labelled keys have two different labels (a pair across a
        boundary when `label` maps each key to its part)."""
        tallies = {c: Counter(label[k] for k in members if k in label) for c, members in self.clumps.items()}
        total = 0
        for tally in tallies.values():
            n = sum(tally.values())
            total += n * (n - 1) // 2 - sum(v * (v - 1) // 2 for v in tally.values())
        for a, b, _ in self.near:
            ta, tb = tallies[a], tallies[b]
            total += sum(ta.values()) * sum(tb.values()) - sum(v * tb.get(p, 0) for p, v in ta.items())
        return total

    def pairs(self, keep=None):
        """Every duplicate pair (a, b, distance) with a < b, expanded (for the few callers that
        need them one by one: keep restricts it to keys it accepts)."""
        for members in self.clumps.values():
            kept = [k for k in members if keep is None or keep(k)]
            for i, a in enumerate(kept):
                for b in kept[i + 1:]:
                    yield a, b, 0
        for a, b, distance in self.near:
            for x in (k for k in self.clumps[a] if keep is None or keep(k)):
                for y in (k for k in self.clumps[b] if keep is None or keep(k)):
                    yield (x, y, distance) if x < y else (y, x, distance)


DEFAULT_FLIP = True   # keras-retinanet flips images in training: a mirror image across parts leaks


def find_duplicates(fingerprints: dict, threshold: int, dhash_threshold: int, flip: bool = DEFAULT_FLIP,
                    progress: bool = False, paths: dict | None = None, digests: dict | None = None,
                    verdicts=None) -> Duplicates:
    """The duplicates among `fingerprints` (key -> hashing.Fingerprint): the finder of `make
    dedupe` (verify.find_pairs: whole frames within the thresholds; crops, small rotations and,
    with flip, mirror images confirmed against the files in `paths`, key -> path), run once per
    distinct fingerprint. Without paths, whole frames only."""
    from .verify import find_pairs
    clumps: dict = {}
    for key in sorted(fingerprints):
        clumps.setdefault(fingerprints[key], []).append(key)
    firsts = {members[0]: fingerprint for fingerprint, members in clumps.items()}
    found = find_pairs(firsts, None if paths is None else {k: paths[k] for k in firsts},
                       None if digests is None else {k: digests[k] for k in firsts},
                       threshold, dhash_threshold, flip, verdicts, progress)
    return Duplicates({members[0]: members for members in clumps.values()}, found.pairs)


def parse_resplit(text) -> str | None:
    """RESPLIT=: unset/0 keeps the split; 1 (trainval) redraws train and val; test (all) all three."""
    if text is None or isinstance(text, bool):
        return TRAINVAL if text else None
    word = str(text).strip().lower()
    if word in ("", "0", "no", "false", "off", "n"):
        return None
    if word in ("1", "yes", "true", "on", "y", TRAINVAL, "train,val", "val"):
        return TRAINVAL
    if word in ("test", ALL, "2"):
        return ALL
    raise MasksetError(f"RESPLIT={text!r}: use RESPLIT=1 (redraw train and val; test stays) or "
                       f"RESPLIT=test (redraw all three parts).")


# -- the result -------------------------------------------------------------------------------------
@dataclass
class SplitResult(Result):
    assignment: dict[str, str]        # image path as in the CSV -> "train" | "val" | "test"
    groups: int                       # duplicate groups with more than one image
    pairs: int                        # duplicate pairs among the exported images
    random_cross_pairs: int           # of those, how many a plain random split would put across
    counts: dict                      # {part: {"images": n, "boxes": {class: n}}}
    threshold: int
    dhash_threshold: int
    flip: bool = DEFAULT_FLIP
    val: float = DEFAULT_VAL
    test: float = DEFAULT_TEST
    seed: int = DEFAULT_SEED
    mode: str = "new"                 # new | kept (incremental) | trainval | all (RESPLIT)
    held_out: dict = field(default_factory=dict)   # image name -> why it is in no part
    drift: dict | None = None         # against the previous record (None: first split)
    hashed: int = 0                   # images hashed this run (the rest came from the cache)
    folds: dict | None = None         # FOLDS=k: {"k", "counts"}
    previous_kept: str | None = None  # where the old record was kept (RESPLIT)
    warnings: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def parts(self) -> list[str]:
        return [p for p in PARTS if p != "test" or self.test > 0 or self.counts.get("test", {}).get("images")]

    def summary(self) -> str:
        lines = [f"warning: {w}" for w in self.warnings]
        classes = sorted({c for part in self.counts.values() for c in part["boxes"]})
        totals = {c: sum(self.counts[p]["boxes"].get(c, 0) for p in self.counts) for c in classes}
        for part in self.parts():
            c = self.counts[part]
            boxes = ", ".join(f"{k} {v}" for k, v in sorted(c["boxes"].items()))
            lines.append(f"{part}: {c['images']} images, boxes {boxes or 'none'}")
        for part, share in (("val", self.val), ("test", self.test)):
            if part in self.parts():
                shares = ", ".join(f"{k} {self.counts[part]['boxes'].get(k, 0) / v:.1%}"
                                   for k, v in sorted(totals.items()) if v)
                lines.append(f"{part} share of boxes per class (asked {share:.0%}): {shares or 'no boxes'}")
        if self.held_out:
            shown = ", ".join(sorted(self.held_out)[:5])
            lines.append(f"held out: {len(self.held_out)} images in no part, each a duplicate that no part "
                         f"can take without a leak ({shown}{' ...' if len(self.held_out) > 5 else ''}; "
                         f"reasons in split.json)")
        if self.drift:
            lines.append(drift_line(self.drift))
            shares = [after for after_before in self.drift["shares"].get("test", {}).values()
                      for after in after_before[1:] if after is not None]
            if self.test and shares and min(shares) < 0.75 * self.test:
                lines.append(f"test now holds {min(shares):.1%} of a class's boxes (asked {self.test:.0%}): new "
                             f"images go to train and val only. RESPLIT=test draws the test part again (then "
                             f"train again: earlier figures are not comparable with later ones).")
        lines.append(f"leakage prevented: {self.pairs} duplicate pairs in {self.groups} groups kept "
                     f"in one part; a plain random split would have put {self.random_cross_pairs} "
                     f"pairs across the parts")
        lines.append(f"hashed {self.hashed} new or changed images (the rest from the cache); mirror images "
                     f"{'counted as duplicates' if self.flip else 'not counted (FLIP=0)'}")
        if self.folds:
            sizes = ", ".join(str(c["images"]) for c in self.folds["counts"].values())
            lines.append(f"folds: {self.folds['k']} grouped, stratified folds of train+val ({sizes} images)")
        if self.previous_kept:
            lines.append(f"the previous split's record is kept as {self.previous_kept}")
        if self.written:
            lines.append(f"wrote {', '.join(self.written)}")
        return "\n".join(lines)


def drift_line(drift: dict) -> str:
    """One line: what changed since the previous split, and how the val/test shares moved."""
    added = ", ".join(f"{p} {n}" for p, n in drift["added"].items() if n) or "none"
    left = ", ".join(f"{p} {n}" for p, n in drift["left"].items() if n) or "none"
    moves = [f"{part} {name} {_pct(before)} -> {_pct(after)}"
             for part in ("val", "test") for name, (before, after) in sorted(drift["shares"].get(part, {}).items())
             if before is None or after is None or abs(before - after) >= 0.0005]
    moved = f"; {drift['moved']} earlier images changed part" if drift.get("moved") else ""
    return (f"drift since the split of {drift.get('since') or 'an earlier version'}: new images {added}; "
            f"left {left}{moved}; shares of boxes " + ("; ".join(moves) if moves else "unchanged"))


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


# -- reading ---------------------------------------------------------------------------------------
def read_annotations(csv_path: Path) -> list[list[str]]:
    if not csv_path.exists():
        raise MasksetError(f"{csv_path}: not found. Run `make export` first.")
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if len(row) != 6:
                raise MasksetError(f"{csv_path}:{number}: expected 6 fields (path,x1,y1,x2,y2,class), "
                                   f"got {len(row)}. Re-run `make export`.")
            rows.append(row)
    return rows


def read_record(dataset: Dataset) -> dict | None:
    """export/split.json as a version-2 record ({"parts": {name: part}, ...}), or None if there is
    none. A record written before version 2 (keys were CSV paths, two parts) is read too."""
    path = dataset.export / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if record.get("version") != VERSION:  # the two-part record: {"images": {csv path: part}}
            record = {**record, "parts": {Path(k).name: v for k, v in (record.get("images") or {}).items()},
                      "test": record.get("test", 0.0)}
        parts = record.get("parts")
        if not isinstance(parts, dict) or any(p not in PARTS for p in parts.values()):
            raise ValueError("'parts' must map image names to train, val or test")
        for key in ("val", "test"):
            float(record.get(key) or 0)
    except (OSError, ValueError, TypeError) as error:
        raise MasksetError(f"{path}: cannot read the split's record ({error}). It records which part each "
                           f"image is in; restore it from a backup, or draw a new split with "
                           f"`make split RESPLIT=test` (the unreadable file is kept beside).") from None
    return record


def _settings(record_path: Path, previous: dict | None, resplit: str | None, val, test, seed, threshold,
              dhash_threshold, flip=None) -> dict:
    """The split's settings: the values given, else the record's, else the defaults. Keeping a
    split (no RESPLIT) with other values than it was drawn with is an error that says how."""
    defaults = {"val": DEFAULT_VAL, "test": DEFAULT_TEST, "seed": DEFAULT_SEED,
                "threshold": neighbours.DEFAULT_THRESHOLD, "dhash_threshold": neighbours.DEFAULT_DHASH_THRESHOLD,
                "flip": DEFAULT_FLIP}
    given = {"val": val, "test": test, "seed": seed, "threshold": threshold, "dhash_threshold": dhash_threshold,
             "flip": flip}
    recorded = {k: (previous or {}).get(k) for k in defaults}
    settings = {k: given[k] if given[k] is not None else recorded[k] if recorded[k] is not None else d
                for k, d in defaults.items()}
    changed = [k for k in defaults if given[k] is not None and recorded[k] is not None
               and float(given[k]) != float(recorded[k])]
    if changed and (resplit is None or ("test" in changed and resplit != ALL)):
        was = ", ".join(f"{k.upper()}={recorded[k]}" for k in changed)
        asked = ", ".join(f"{k.upper()}={given[k]}" for k in changed)
        fix = ("RESPLIT=test (draws all three parts again)" if "test" in changed else
               "RESPLIT=1 (draws train and val again; test stays) or RESPLIT=test (all three)")
        raise MasksetError(
            f"{record_path} holds the split drawn with {was}; running again keeps it and places only "
            f"new images. To draw it again with {asked}, add {fix}; the old record is kept beside the new one.")
    val, test = float(settings["val"]), float(settings["test"])
    if not 0 < val < 1:
        raise MasksetError(f"VAL={val}: the val share must be between 0 and 1 (e.g. VAL=0.2).")
    if not 0 <= test < 1:
        raise MasksetError(f"TEST={test}: the test share must be from 0 (no test part) to below 1 (e.g. TEST=0.1).")
    if val + test >= 1:
        raise MasksetError(f"VAL={val} and TEST={test} leave nothing to train on: keep VAL+TEST below 1.")
    neighbours.check_thresholds(int(settings["threshold"]), int(settings["dhash_threshold"]))
    settings.update(val=val, test=test, seed=int(settings["seed"]), threshold=int(settings["threshold"]),
                    dhash_threshold=int(settings["dhash_threshold"]), flip=bool(settings["flip"]))
    return settings


# -- placing groups ----------------------------------------------------------------------------------
def balance(vectors: list[list[float]], allowed: list[tuple[str, ...]], base: dict[str, list[float]],
            shares: dict[str, float], seed: int, sweeps: int = 50) -> list[str]:
    """The part of each movable group.

    vectors: one per group, its boxes per class and its image count; allowed: the parts each may
    go to (the first wins ties); base: what fixed images already put in each part (updated);
    shares: the target share of the parts that have one (a part without one, train, takes the
    rest). Greedy, largest groups first (ties in a seeded random order), each placed where it
    brings every targeted part's shares nearer its target; then single groups are moved while
    that lowers the cost, since the greedy pass cannot take back an early choice."""
    dims = len(vectors[0]) if vectors else len(next(iter(base.values()), []))
    totals = [sum(v[j] for v in vectors) + sum(s[j] for s in base.values()) for j in range(dims)]
    weight = [1.0 / t ** 2 if t else 0.0 for t in totals]
    target = {p: [share * t for t in totals] for p, share in shares.items()}
    sums = {p: list(base.get(p, [0.0] * dims)) for p in set(base) | set(shares) | {p for a in allowed for p in a}}

    def added(part, x):  # change of cost when x joins part
        if part not in target:
            return 0.0
        s, t = sums[part], target[part]
        return sum(w * xj * (2 * (sj - tj) + xj) for w, xj, sj, tj in zip(weight, x, s, t) if xj)

    def removed(part, x):  # change of cost when x leaves part
        if part not in target:
            return 0.0
        s, t = sums[part], target[part]
        return sum(w * xj * (xj - 2 * (sj - tj)) for w, xj, sj, tj in zip(weight, x, s, t) if xj)

    def move(part, x, sign):
        s = sums[part]
        for j, xj in enumerate(x):
            s[j] += sign * xj

    order = list(range(len(vectors)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -sum(vectors[g]))
    placed = [""] * len(vectors)
    for g in order:
        best = min(allowed[g], key=lambda p: added(p, vectors[g]))  # min keeps the first of equals
        placed[g] = best
        move(best, vectors[g], 1)
    for _sweep in range(sweeps):
        improved = False
        for g in order:
            here, x = placed[g], vectors[g]
            leave = removed(here, x)
            for there in allowed[g]:
                if there != here and leave + added(there, x) < -1e-12:
                    move(here, x, -1)
                    move(there, x, 1)
                    placed[g], improved = there, True
                    break
        if not improved:
            break
    return placed


def random_parts(images: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """The plain split this stage replaces: a seeded shuffle of images, the first VAL of them to
    val, the next TEST to test, the rest to train."""
    shuffled = sorted(images)
    random.Random(seed).shuffle(shuffled)
    n_val, n_test = round(val * len(shuffled)), round(test * len(shuffled))
    return {image: "val" if i < n_val else "test" if i < n_val + n_test else "train"
            for i, image in enumerate(shuffled)}


def random_split(images: list[str], share: float, seed: int) -> set[str]:
    """The plain two-part split: the images random_parts puts in val."""
    return {i for i, part in random_parts(images, share, 0.0, seed).items() if part == "val"}


def digest(names_and_sha: list[tuple[str, str]]) -> dict:
    """{"images": n, "sha256": ...} of a list of images: the sha256 of its sorted "name sha256"
    lines. Training records one per part in config.json; evaluate compares them."""
    lines = "".join(f"{name}\t{sha}\n" for name, sha in sorted(set(names_and_sha)))
    return {"images": len(set(names_and_sha)), "sha256": hashlib.sha256(lines.encode("utf-8")).hexdigest()}


def csv_digest(csv_path: Path | str, images: Path | str | None = None) -> dict:
    """digest() of the images a CSV names (each image read and hashed): an image is known by its
    file name, and its bytes are those in `images` (the dataset's images/, so a pre-resized copy
    counts as its original), else the file the CSV points at."""
    csv_path = Path(csv_path)
    found = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if row:
                name = Path(row[0]).name
                if name not in found:
                    original = Path(images) / name if images else None
                    found[name] = original if original is not None and original.is_file() else csv_path.parent / row[0]
    return digest([(name, manifest.sha256_file(path)) for name, path in found.items()])


# -- the split --------------------------------------------------------------------------------------
@dataclass
class _Plan:
    result: SplitResult
    rows: list[list[str]]
    names: dict[str, str]          # CSV path -> image name
    parts: dict[str, str]          # image name -> part (placed images only)
    sha: dict[str, str]
    groups: list[list[str]]
    departed: dict[str, str]
    folds: dict[str, int]


def split(dataset: Dataset, val: float | None = None, seed: int | None = None, threshold: int | None = None,
          progress: bool = True, dhash_threshold: int | None = None, test: float | None = None,
          resplit: str | None = None, folds: int | None = None, flip: bool | None = None) -> _Plan:
    """Decide the split (nothing written but the hash cache)."""
    resplit = parse_resplit(resplit)
    try:
        previous = read_record(dataset)
    except MasksetError:
        if resplit != ALL:
            raise
        previous = None  # drawn anew; write_split keeps the unreadable file beside
    settings = _settings(dataset.export / RECORD, previous, resplit, val, test, seed, threshold, dhash_threshold,
                         flip)
    if folds is None and previous is not None and isinstance(previous.get("folds"), dict):
        folds = previous["folds"].get("k")  # kept like the other settings: the folds follow the split
    if folds is not None and folds != 0 and not 2 <= folds <= 50:
        raise MasksetError(f"FOLDS={folds}: give the number of cross-validation folds, from 2 to 50 (e.g. FOLDS=5; "
                           f"FOLDS=0: none).")
    export = dataset.export
    rows = read_annotations(export / "annotations.csv")
    names: dict[str, str] = {}              # CSV path -> image name
    box_counts: dict[str, Counter] = {}     # image name -> its boxes per class
    for row in rows:
        name = names.get(row[0])
        if name is None:
            name = names[row[0]] = os.path.basename(row[0])
            box_counts[name] = Counter()
        if row[5]:
            box_counts[name][row[5]] += 1
    missing = [p for p in names if not os.path.exists(os.path.join(export, p))]
    if missing:
        raise MasksetError(f"{dataset.export / 'annotations.csv'}: {missing[0]} does not exist "
                           f"({len(missing)} such). Re-run `make export`.")
    images = sorted(box_counts)
    counted: dict = {}
    records = hashcache.image_records(dataset, files=images, progress=progress, counts=counted)
    fingerprints = {n: fp for n, (fp, _) in records.items()}
    sha = {n: s for n, (_, s) in records.items()}
    verdicts = Verdicts(verdicts_path(dataset))
    duplicates = find_duplicates(fingerprints, settings["threshold"], settings["dhash_threshold"], settings["flip"],
                                 progress, {n: dataset.images / n for n in images}, sha, verdicts)
    if dataset.writable():
        verdicts.save(keep=hashcache.cached_digests(dataset))
    groups = duplicates.groups()

    known = dict(previous.get("departed") or {}) if previous else {}
    known.update(previous["parts"] if previous else {})
    if previous is None or resplit == ALL:
        fixed: dict[str, str] = {}
    elif resplit == TRAINVAL:
        fixed = {n: "test" for n in images if known.get(n) == "test"}
    else:
        fixed = {n: known[n] for n in images if n in known}
    held_out = _conflicts(fixed, duplicates)  # earlier images that have become duplicates across parts
    draw_test = previous is None or resplit == ALL   # new images may go to test only in a new draw
    open_parts = ("train", "val", "test") if draw_test and settings["test"] > 0 else ("train", "val")

    parts: dict[str, str] = {}
    movable: list[list[str]] = []
    for group in groups:
        earlier = {n: fixed[n] for n in group if n in fixed}
        newcomers = [n for n in group if n not in fixed and n not in held_out]
        parts.update(earlier)
        where = set(earlier.values())
        if not where:
            movable.append(newcomers)
        elif len(where) > 1:
            listing = ", ".join(f"{n} ({p})" for n, p in sorted(earlier.items())[:4])
            for n in newcomers:
                held_out[n] = f"a duplicate joining images of different parts: {listing}"
        elif where == {"test"} and "test" not in open_parts:
            first = min(earlier)
            for n in newcomers:
                held_out[n] = (f"a duplicate of {first}, in test: test changes only with RESPLIT=test, "
                               f"and in train or val it would leak")
        else:
            parts.update({n: next(iter(where)) for n in newcomers})
    movable = [g for g in movable if g]

    classes = sorted({c for boxes in box_counts.values() for c in boxes})

    def vector(members):
        total = [0.0] * len(classes) + [float(len(members))]
        for n in members:
            for j, c in enumerate(classes):
                total[j] += box_counts[n].get(c, 0)
        return total

    base = {p: vector([n for n, q in parts.items() if q == p]) for p in PARTS}
    shares = {"val": settings["val"], **({"test": settings["test"]} if "test" in open_parts else {})}
    placed = balance([vector(g) for g in movable], [open_parts] * len(movable), base, shares, settings["seed"])
    for group, part in zip(movable, placed):
        parts.update({n: part for n in group})

    counts = {part: {"images": 0, "boxes": Counter()} for part in PARTS}
    for n, part in parts.items():
        counts[part]["images"] += 1
        counts[part]["boxes"].update(box_counts[n])
    for part in PARTS:
        counts[part]["boxes"] = dict(sorted(counts[part]["boxes"].items()))
    naive = random_parts([n for n in images if n not in held_out], settings["val"], settings["test"],
                         settings["seed"])
    random_cross = duplicates.across(naive)
    mode = ALL if resplit == ALL else "new" if previous is None else {None: "kept", TRAINVAL: TRAINVAL}[resplit]
    result = SplitResult(
        assignment={path: parts[name] for path, name in sorted(names.items()) if name in parts},
        groups=sum(len(g) > 1 for g in groups), pairs=duplicates.count(), random_cross_pairs=random_cross,
        counts=counts, threshold=settings["threshold"], dhash_threshold=settings["dhash_threshold"],
        flip=settings["flip"], val=settings["val"], test=settings["test"], seed=settings["seed"], mode=mode,
        held_out=held_out,
        hashed=counted.get("hashed", 0))
    departed = {n: p for n, p in known.items() if n not in box_counts
                and (resplit is None or (resplit == TRAINVAL and p == "test"))}
    if previous is not None:
        result.drift = _drift(previous, counts, parts, known, images, departed)
        result.drift["since"] = (last_run(dataset) or {}).get("time")
    for part in ("train", "val") + (("test",) if settings["test"] > 0 else ()):
        if counts[part]["images"] == 0:
            why = (f"{len(images)} images in {len(groups)} duplicate group(s)" if images
                   else "no annotated images")
            share = {"train": 1 - settings["val"] - settings["test"], "val": settings["val"],
                     "test": settings["test"]}[part]
            result.warnings.append(f"{part} is empty: {why} cannot give it {share:.0%}. "
                                   f"Annotate more (distinct) images, then split again.")
    fold_of = {}
    if folds:
        fold_of, result.folds = _folds(box_counts, parts, groups, classes, folds, settings["seed"], vector)
    return _Plan(result, rows, names, parts, sha, groups, departed, fold_of)


KEEP_FIRST = ("test", "train", "val")  # which part keeps a group of earlier images that now conflict


def _conflicts(fixed: dict[str, str], duplicates: Duplicates) -> dict[str, str]:
    """Earlier images that now pair with an earlier image of another part (its bytes changed, or a
    returning image duplicates one placed meanwhile): each such group stays in one part (test
    first, then train: the benchmark and the training data change least) and the others are held
    out, removed from `fixed`, so that no pair straddles a boundary. {image: why}."""
    crossing = []
    if duplicates.across(fixed):  # rarely: only then are the fixed images' pairs gone through
        crossing = [(a, b) for a, b, _ in duplicates.pairs(keep=fixed.__contains__) if fixed[a] != fixed[b]]
    held = {}
    for group in neighbours.groups([], crossing):
        keep = next(p for p in KEEP_FIRST if any(fixed[n] == p for n in group))
        kept = min(n for n in group if fixed[n] == keep)
        for n in group:
            if fixed[n] != keep:
                held[n] = (f"was in {fixed[n]}, and is now a duplicate of {kept} in {keep} (changed bytes, "
                           f"or back in the dataset): held out so that no pair straddles two parts")
    for n in held:
        del fixed[n]
    return held


def _drift(previous: dict, counts: dict, parts: dict, known: dict, images: list[str], departed: dict) -> dict:
    """How the parts changed since the previous record: images added to each part, images that
    left each part, and each class's share of boxes in each part before and after."""
    before_parts = previous["parts"]
    present = set(images)
    added = Counter(parts[n] for n in parts if n not in before_parts)
    left = Counter(p for n, p in before_parts.items() if n not in present or n not in parts)
    moved = sum(1 for n, p in before_parts.items() if parts.get(n) not in (None, p))
    shares = {}
    old_counts = previous.get("counts") or {}
    classes = sorted({c for part in list(counts.values()) + list(old_counts.values()) if isinstance(part, dict)
                      for c in (part.get("boxes") or {})})

    def share(table, part, name):
        total = sum(((table.get(p) or {}).get("boxes") or {}).get(name, 0) for p in PARTS)
        if not total or not isinstance(table.get(part), dict):
            return None if table is old_counts else 0.0
        return ((table[part].get("boxes") or {}).get(name, 0)) / total

    for part in PARTS:
        shares[part] = {c: [share(old_counts, part, c), share(counts, part, c)] for c in classes}
    return {"since": None, "added": {p: added.get(p, 0) for p in PARTS},
            "left": {p: left.get(p, 0) for p in PARTS}, "moved": moved,
            "images": {p: [(old_counts.get(p) or {}).get("images", 0), counts[p]["images"]] for p in PARTS},
            "shares": shares, "departed_remembered": len(departed)}


def _folds(box_counts, parts, groups, classes, k, seed, vector):
    """Grouped, stratified k folds of the train+val images: every duplicate group in one fold,
    each class's boxes spread evenly."""
    pool = [g for g in ([n for n in group if parts.get(n) in ("train", "val")] for group in groups) if g]
    names = tuple(f"fold-{i}" for i in range(1, k + 1))
    base = {n: [0.0] * (len(classes) + 1) for n in names}
    placed = balance([vector(g) for g in pool], [names] * len(pool), base, {n: 1.0 / k for n in names}, seed)
    fold_of = {n: int(fold.split("-")[1]) for group, fold in zip(pool, placed) for n in group}
    counts = {f"fold-{number}": {"images": 0, "boxes": Counter()} for number in range(1, k + 1)}
    for n, number in fold_of.items():
        counts[f"fold-{number}"]["images"] += 1
        counts[f"fold-{number}"]["boxes"].update(box_counts[n])
    for fold in counts.values():
        fold["boxes"] = dict(sorted(fold["boxes"].items()))
    return fold_of, {"k": k, "counts": counts}


# -- writing ---------------------------------------------------------------------------------------
def write_split(dataset: Dataset, plan: _Plan) -> list[str]:
    """train.csv, val.csv (test.csv when there is a test part), folds/ (FOLDS=k) and split.json;
    a redrawn split keeps the old record beside as split-<time>.json."""
    result = plan.result
    written = []
    for part in ("train", "val", "test"):
        path = dataset.export / f"{part}.csv"
        if part == "test" and result.test == 0 and result.counts["test"]["images"] == 0:
            if path.exists():
                path.unlink()  # derived from the previous record, which is kept; no test part now
            continue
        atomic.write_text(path, csv_text(r for r in plan.rows if plan.parts.get(plan.names[r[0]]) == part))
        written.append(str(path))
    folder = dataset.export / "folds"
    for old in folder.glob("fold-*.csv") if folder.is_dir() else []:
        old.unlink()  # derived: the folds of the split before (written again below if kept)
    if plan.folds:
        k = result.folds["k"]
        for number in range(1, k + 1):
            for role, keep in (("train", lambda f: f != number), ("val", lambda f: f == number)):
                path = folder / f"fold-{number}-{role}.csv"
                atomic.write_text(path, csv_text(r for r in plan.rows if plan.names[r[0]] in plan.folds
                                                 and keep(plan.folds[plan.names[r[0]]])))
        written.append(f"{folder}/fold-{{1..{k}}}-{{train,val}}.csv")
    record_path = dataset.export / RECORD
    if result.mode in (TRAINVAL, ALL) and record_path.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(record_path.stat().st_mtime))
        kept = atomic.copy_file(record_path, atomic.unique_path(dataset.export / f"split-{stamp}.json"))
        result.previous_kept = str(kept)
    atomic.write_json(record_path, record_of(plan))
    written.append(str(record_path))
    jsonl.append(dataset.export / LOG, [{
        "time": manifest.now(), "mode": result.mode, "val": result.val, "test": result.test, "seed": result.seed,
        "counts": result.counts, "held_out": len(result.held_out), "hashed": result.hashed,
        "drift": result.drift, "previous": result.previous_kept}])
    written.append(str(dataset.export / LOG))
    return written


def last_run(dataset: Dataset) -> dict | None:
    """The last line of export/split-log.jsonl: when the split was last run, how, and its drift."""
    records = jsonl.read(dataset.export / LOG, strict=False).records
    return records[-1] if records else None


def record_of(plan: _Plan) -> dict:
    """split.json: the settings, every placed image's part and sha256, the held-out images, the
    images that left (remembered, so they return to their part), the counts, the leakage
    prevented, the parts' digests and the folds: the split's state alone, so the same state gives
    the same bytes (when and how it was run, and the drift, go to export/split-log.jsonl)."""
    result = plan.result
    placed = sorted(plan.parts)
    return {
        "version": VERSION, "val": result.val, "test": result.test, "seed": result.seed,
        "threshold": result.threshold, "dhash_threshold": result.dhash_threshold,
        "flip": result.flip, "finder": FINDER_VERSION,
        "parts": {n: plan.parts[n] for n in placed},
        "sha256": {n: plan.sha[n] for n in placed},
        "held_out": dict(sorted(result.held_out.items())),
        "departed": dict(sorted(plan.departed.items())),
        "groups": result.groups,
        "near_duplicate_groups": [g for g in plan.groups if len(g) > 1],
        "counts": result.counts,
        "digests": {p: digest([(n, plan.sha[n]) for n in placed if plan.parts[n] == p]) for p in PARTS},
        "leakage": {"near_duplicate_pairs": result.pairs, "random_split_cross_pairs": result.random_cross_pairs},
        "folds": {**result.folds, "images": dict(sorted(plan.folds.items()))} if result.folds else None,
    }


def make_split(dataset: Dataset, val: float | None = None, seed: int | None = None, threshold: int | None = None,
               progress: bool = True, dhash_threshold: int | None = None, test: float | None = None,
               resplit: str | None = None, folds: int | None = None, flip: bool | None = None) -> SplitResult:
    plan = split(dataset, val, seed, threshold, progress, dhash_threshold, test, resplit, folds, flip)
    plan.result.written = write_split(dataset, plan)
    return plan.result
