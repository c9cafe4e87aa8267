"""`make split VAL=0.2 SEED=n`: export/train.csv and export/val.csv from export/annotations.csv.

Exact and near-duplicate images (as `make dedupe` finds them: dataset.grouping) form one group,
and a group is never split across train and val: otherwise val holds copies of training images
and every score is inflated. Groups are assigned greedily, largest first, to keep each class's
share of val boxes (and of images) close to VAL. The same input and seed give byte-identical
files. It also counts the leakage it prevented: the near-duplicate pairs a plain random image
split with the same VAL and seed would have put across train and val.
"""
from __future__ import annotations

import csv
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, hashcache, neighbours
from .errors import MasksetError
from .export import csv_text
from .layout import Dataset
from .results import Result

log = logging.getLogger(__name__)


@dataclass
class SplitResult(Result):
    assignment: dict[str, str]        # image path as in the CSV -> "train" | "val"
    groups: int                       # groups of near duplicates with more than one image
    pairs: int                        # near-duplicate pairs among the exported images
    random_cross_pairs: int           # of those, how many a plain random split would put across
    counts: dict                      # {"train"|"val": {"images": n, "boxes": {class: n}}}
    threshold: int
    dhash_threshold: int
    warnings: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"warning: {w}" for w in self.warnings]
        for part in ("train", "val"):
            c = self.counts[part]
            boxes = ", ".join(f"{k} {v}" for k, v in sorted(c["boxes"].items()))
            lines.append(f"{part}: {c['images']} images, boxes {boxes or 'none'}")
        total = {k: self.counts["train"]["boxes"].get(k, 0) + self.counts["val"]["boxes"].get(k, 0)
                 for k in set(self.counts["train"]["boxes"]) | set(self.counts["val"]["boxes"])}
        shares = ", ".join(f"{k} {self.counts['val']['boxes'].get(k, 0) / v:.0%}"
                           for k, v in sorted(total.items()) if v)
        lines.append(f"val share of boxes per class: {shares}")
        lines.append(f"leakage prevented: {self.pairs} near-duplicate pairs in {self.groups} groups kept "
                     f"on one side; a plain random split would have put {self.random_cross_pairs} "
                     f"pairs across train and val")
        if self.written:
            lines.append(f"wrote {', '.join(self.written)}")
        return "\n".join(lines)


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


def _cost(val_boxes: Counter, val_images: int, totals: Counter, total_images: int, share: float) -> float:
    cost = sum(((val_boxes[c] - share * n) / n) ** 2 for c, n in totals.items() if n)
    return cost + ((val_images - share * total_images) / max(1, total_images)) ** 2


def assign_groups(group_boxes: list[Counter], group_sizes: list[int], share: float, seed: int) -> list[bool]:
    """Which groups go to val: greedy, largest groups first (ties in a seeded random order),
    each placed where it brings the val shares of every class (and of images) nearer `share`."""
    order = list(range(len(group_boxes)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -(sum(group_boxes[g].values()) + group_sizes[g]))
    totals = sum(group_boxes, Counter())
    total_images = sum(group_sizes)
    in_val = [False] * len(group_boxes)
    val_boxes, val_images = Counter(), 0

    def cost(boxes, n_images):
        return _cost(boxes, n_images, totals, total_images, share)

    for g in order:
        if cost(val_boxes + group_boxes[g], val_images + group_sizes[g]) < cost(val_boxes, val_images):
            in_val[g] = True
            val_boxes += group_boxes[g]
            val_images += group_sizes[g]
    # The greedy pass cannot take back an early choice; moving single groups across while that
    # lowers the cost brings the per-class shares close to `share`.
    for _sweep in range(50):
        improved = False
        for g in order:
            sign = -1 if in_val[g] else 1
            moved_boxes = val_boxes + group_boxes[g] if sign > 0 else val_boxes - group_boxes[g]
            moved_images = val_images + sign * group_sizes[g]
            if cost(moved_boxes, moved_images) < cost(val_boxes, val_images) - 1e-12:
                in_val[g] = not in_val[g]
                val_boxes, val_images, improved = moved_boxes, moved_images, True
        if not improved:
            break
    return in_val


def random_split(images: list[str], share: float, seed: int) -> set[str]:
    """The plain split this stage replaces: a seeded shuffle of images, the first VAL to val."""
    shuffled = sorted(images)
    random.Random(seed).shuffle(shuffled)
    return set(shuffled[:round(share * len(shuffled))])


def split(dataset: Dataset, val: float = 0.2, seed: int = 0, threshold: int | None = None,
          progress: bool = True, dhash_threshold: int | None = None
          ) -> tuple[SplitResult, list[list[str]], list[list[str]]]:
    """The split and what write_split needs: the CSV rows and the near-duplicate groups."""
    if not 0 < val < 1:
        raise MasksetError(f"VAL={val}: the val share must be between 0 and 1 (e.g. VAL=0.2).")
    threshold = neighbours.DEFAULT_THRESHOLD if threshold is None else threshold
    dhash_threshold = neighbours.DEFAULT_DHASH_THRESHOLD if dhash_threshold is None else dhash_threshold
    neighbours.check_thresholds(threshold, dhash_threshold)
    rows = read_annotations(dataset.export / "annotations.csv")
    by_image: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        by_image[row[0]].append(row)
    images = sorted(by_image)
    name_of = {path: Path(path).name for path in images}
    missing = [p for p in images if not (dataset.export / p).exists()]
    if missing:
        raise MasksetError(f"{dataset.export / 'annotations.csv'}: {missing[0]} does not exist "
                           f"({len(missing)} such). Re-run `make export`.")

    hashes = hashcache.image_hashes(dataset, files=[name_of[p] for p in images], progress=progress)
    by_name = {name_of[p]: p for p in images}
    pairs = [(by_name[a], by_name[b], d) for a, b, d in neighbours.similar_pairs(hashes, threshold, dhash_threshold)]
    image_groups = neighbours.groups(images, [(a, b) for a, b, _ in pairs])

    def boxes(image_rows):
        return Counter(r[5] for r in image_rows if r[5])
    group_boxes = [sum((boxes(by_image[i]) for i in g), Counter()) for g in image_groups]
    in_val = assign_groups(group_boxes, [len(g) for g in image_groups], val, seed)
    assignment = {i: ("val" if in_val[n] else "train") for n, g in enumerate(image_groups) for i in g}

    naive_val = random_split(images, val, seed)
    random_cross = sum((a in naive_val) != (b in naive_val) for a, b, _ in pairs)
    counts = {part: {"images": 0, "boxes": Counter()} for part in ("train", "val")}
    for image in images:
        counts[assignment[image]]["images"] += 1
        counts[assignment[image]]["boxes"] += boxes(by_image[image])
    counts = {k: {"images": v["images"], "boxes": dict(sorted(v["boxes"].items()))} for k, v in counts.items()}
    result = SplitResult(assignment, sum(len(g) > 1 for g in image_groups), len(pairs), random_cross,
                         counts, threshold, dhash_threshold)
    for part in ("train", "val"):
        if counts[part]["images"] == 0:
            why = (f"{len(images)} images in {len(image_groups)} duplicate group(s)" if images
                   else "no annotated images")
            result.warnings.append(f"{part} is empty: {why} cannot be split {1 - val:.0%}/{val:.0%}. "
                                   f"Annotate more (distinct) images, then split again.")
    return result, rows, image_groups


def write_split(dataset: Dataset, result: SplitResult, rows, image_groups, val: float, seed: int) -> None:
    for part in ("train", "val"):
        part_rows = [r for r in rows if result.assignment[r[0]] == part]
        atomic.write_text(dataset.export / f"{part}.csv", csv_text(part_rows))
    atomic.write_json(dataset.export / "split.json", {
        "val": val, "seed": seed, "threshold": result.threshold, "dhash_threshold": result.dhash_threshold,
        "images": dict(sorted(result.assignment.items())),
        "groups": result.groups,
        "near_duplicate_groups": [g for g in image_groups if len(g) > 1],
        "counts": result.counts,
        "leakage": {"near_duplicate_pairs": result.pairs, "random_split_cross_pairs": result.random_cross_pairs},
    })


def make_split(dataset: Dataset, val: float = 0.2, seed: int = 0, threshold: int | None = None,
               progress: bool = True, dhash_threshold: int | None = None) -> SplitResult:
    result, rows, image_groups = split(dataset, val, seed, threshold, progress, dhash_threshold)
    write_split(dataset, result, rows, image_groups, val, seed)
    result.written = [str(dataset.export / name) for name in ("train.csv", "val.csv", "split.json")]
    return result
