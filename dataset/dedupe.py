"""`make dedupe [THRESHOLD=..] [DRY_RUN=1]`: exact and near duplicates.

Each group of duplicates (same sha256, or pHash within THRESHOLD bits, joined with union-find)
keeps its best copy in images/: an annotated one first, then the larger resolution, then the
larger file. The others move, with their VOC files, to quarantine/duplicates/ as one crash-safe
change (dataset/moves.py), logged in quarantine/duplicates/log.jsonl and in the manifest.
Nothing is deleted, and restore (dataset/restore.py) puts every quarantined duplicate back. Two
annotated copies that disagree (classes, or boxes after scaling to the same size) are reported as
conflicts: one of them is a labelling mistake.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, hashcache, hashing, moves, neighbours, manifest, voc
from . import progress as progress_bars
from .boxes import iou, match
from .errors import MasksetError
from .images import NotAnImage, open_image
from .layout import Dataset
from .results import Result

EXACT = "exact-duplicate"
NEAR = "near-duplicate"
MATCH_IOU = 0.5  # boxes of two copies overlapping less than this (after scaling) disagree


# -- the plan (pure: reads the dataset, writes only the hash cache) --------------------------------
@dataclass
class Member:
    file: str
    sha256: str
    phash: int
    width: int = 0
    height: int = 0
    size: int = 0
    annotation: str | None = None    # relative to the dataset root
    draft: bool = False              # a machine prelabel nobody has reviewed yet
    objects: list | None = None      # VocObjects, or None when unannotated or unreadable
    ann_size: tuple[int, int] | None = None
    keep: bool = False               # a curator restored it on purpose: never quarantined again

    @property
    def annotated(self) -> bool:
        return self.annotation is not None

    def rank(self):
        """Higher is better: human annotation, any annotation, pixels, bytes; then the first name."""
        return (self.annotated and not self.draft, self.annotated, self.width * self.height,
                self.size, _reverse_name(self.file))


class _reverse_name(str):
    """Sorts backwards, so that among equals the alphabetically first name ranks highest."""
    def __lt__(self, other):
        return str.__gt__(self, other)

    def __gt__(self, other):
        return str.__lt__(self, other)


@dataclass
class Duplicate:
    member: Member
    reason: str      # EXACT or NEAR
    distance: int    # pHash bits from `of`
    of: str          # the keeper, or for an exact copy the better-ranked file with the same bytes


@dataclass
class Group:
    keeper: Member
    duplicates: list[Duplicate]
    kept: list[Member] = field(default_factory=list)  # restored-on-purpose members left in place


@dataclass
class Conflict:
    keeper: str
    duplicate: str
    why: str

    def as_dict(self):
        return {"keeper": self.keeper, "duplicate": self.duplicate, "why": self.why}


@dataclass
class Plan:
    threshold: int
    images: int
    groups: list[Group]
    conflicts: list[Conflict]
    dhash_threshold: int

    @property
    def moves(self) -> list[Duplicate]:
        return [d for g in self.groups for d in g.duplicates]


def _member(dataset: Dataset, name: str, fingerprint: hashing.Fingerprint, sha: str, keep: bool) -> Member:
    path = dataset.images / name
    member = Member(name, sha, fingerprint.phash, size=path.stat().st_size, keep=keep)
    try:
        with open_image(path) as image:  # header only: no decode
            member.width, member.height = image.size
    except (NotAnImage, OSError):
        pass  # hashcache.image_records decoded it already; a race with another tool at worst
    xml = dataset.annotation_for(path)
    if xml.exists():
        member.annotation = str(xml.relative_to(dataset.root))
        try:
            ann = voc.parse(xml)
            member.draft, member.objects = ann.draft, ann.objects
            if ann.width and ann.height:
                member.ann_size = (ann.width, ann.height)
        except MasksetError:
            member.objects = None  # unreadable: still the user's work, so it still ranks as annotated
    return member


def _scaled_boxes(member: Member, to_size: tuple[int, int]):
    # Boxes are in the real image's pixels (a wrong <size> is validate's finding, not ours).
    width, height = (member.width, member.height) if member.width else member.ann_size or (1, 1)
    sx, sy = to_size[0] / max(width, 1), to_size[1] / max(height, 1)
    return [(o.name, (o.xmin * sx, o.ymin * sy, o.xmax * sx, o.ymax * sy)) for o in member.objects]


def disagreement(keeper: Member, other: Member) -> str | None:
    """Why two annotated copies of one picture disagree, or None if they agree."""
    if keeper.objects is None or other.objects is None:
        return None  # an unreadable VOC file is validate's finding, not a conflict
    classes_a = Counter(o.name for o in keeper.objects)
    classes_b = Counter(o.name for o in other.objects)
    if classes_a != classes_b:
        def fmt(c):
            return ", ".join(f"{n} x{k}" for n, k in sorted(c.items())) or "no boxes"
        return f"classes differ: {fmt(classes_a)} in {keeper.file}, {fmt(classes_b)} in {other.file}"
    size = (keeper.width, keeper.height) if keeper.width else keeper.ann_size or (1, 1)
    mine = _scaled_boxes(keeper, size)
    theirs = _scaled_boxes(other, size)
    # Within each class, pair boxes best-IoU first; any box left without a good partner disagrees.
    for name in sorted(classes_a):
        left = [b for n, b in mine if n == name]
        right = [b for n, b in theirs if n == name]
        paired_left = {i for i, _, _ in match(left, right, MATCH_IOU)}
        for i, box in enumerate(left):
            if i not in paired_left:
                best = max((iou(box, y) for y in right), default=0.0)
                return (f"{keeper.file}'s {name} box {[round(v) for v in box]} has no partner in "
                        f"{other.file} scaled to the same size (best IoU {best:.2f} "
                        f"< {MATCH_IOU})")
    return None


def plan(dataset: Dataset, threshold: int = neighbours.DEFAULT_THRESHOLD, progress: bool = True,
         dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD) -> Plan:
    """Decide groups, keepers and conflicts without moving anything."""
    neighbours.check_thresholds(threshold, dhash_threshold)
    records = hashcache.image_records(dataset, progress=progress)
    hashes = {name: fingerprint for name, (fingerprint, _) in records.items()}
    pairs = neighbours.similar_pairs(hashes, threshold, dhash_threshold, progress=progress)
    pairs += neighbours.same_bytes_pairs({name: sha for name, (_, sha) in records.items()})
    state = manifest.state(dataset)
    curated = {f for f, r in state.items() if r.get("event") == manifest.RESTORED and r.get("keep")}

    groups, conflicts = [], []
    for names in neighbours.groups(sorted(hashes), pairs):
        if len(names) < 2:
            continue
        members = [_member(dataset, n, *records[n], keep=n in curated) for n in names]
        members.sort(key=Member.rank, reverse=True)
        keeper, rest = members[0], members[1:]
        group = Group(keeper, [])
        first_with_bytes = {keeper.sha256: keeper.file}  # best-ranked member holding each content
        for member in rest:
            twin = first_with_bytes.setdefault(member.sha256, member.file)
            if member.keep:
                group.kept.append(member)
            elif twin != member.file:
                group.duplicates.append(Duplicate(member, EXACT, 0, twin))
            else:
                group.duplicates.append(Duplicate(member, NEAR, neighbours.hamming(member.phash, keeper.phash),
                                                  keeper.file))
        for other in rest:
            if other.annotated and keeper.annotated and not other.draft and not keeper.draft:
                why = disagreement(keeper, other)
                if why:
                    conflicts.append(Conflict(keeper.file, other.file, why))
        if group.duplicates or group.kept:
            groups.append(group)
    return Plan(threshold, len(hashes), groups, conflicts, dhash_threshold)


# -- carrying it out -------------------------------------------------------------------------------
def duplicates_folder(dataset: Dataset) -> Path:
    return dataset.quarantine / "duplicates"


def log_file(dataset: Dataset) -> Path:
    return duplicates_folder(dataset) / "log.jsonl"


def _relative(dataset: Dataset, path: Path) -> str:
    return str(path.relative_to(dataset.root))


def quarantine(dataset: Dataset, the_plan: Plan, progress: bool = True) -> list[dict]:
    """Move every planned duplicate (and its VOC file) to quarantine/duplicates/ as one
    crash-safe change, logging each."""
    folder = duplicates_folder(dataset)
    planned = [(g.keeper.file, d) for g in the_plan.groups for d in g.duplicates]
    wanted = []
    for _, dup in planned:
        wanted.append(_relative(dataset, folder / dup.member.file))
        if dup.member.annotation:
            wanted.append(_relative(dataset, folder / Path(dup.member.annotation).name))
    destinations = iter(moves.free_destinations(dataset, wanted))
    changes = []
    for keeper, dup in planned:
        member = dup.member
        image_to = next(destinations)
        files = [(_relative(dataset, dataset.images / member.file), image_to)]
        record = {"file": member.file, "event": manifest.QUARANTINED, "reason": dup.reason,
                  "duplicate_of": dup.of, "distance": dup.distance, "keeper": keeper,
                  "moved_to": image_to, "threshold": the_plan.threshold,
                  "dhash_threshold": the_plan.dhash_threshold}
        if member.annotation:
            xml_to = next(destinations)
            files.append((member.annotation, xml_to))
            record["annotation"] = member.annotation
            record["annotation_moved_to"] = xml_to
        changes.append(moves.Move(files, record))
    bar = lambda items: progress_bars.bar(items, desc="quarantine", enabled=progress)  # noqa: E731
    return moves.carry_out(dataset, "dedupe", changes, log_file(dataset), bar)


def summary_dict(the_plan: Plan, dry_run: bool, seconds: float, moved: int) -> dict:
    reasons = Counter(d.reason for d in the_plan.moves)
    return {
        "threshold": the_plan.threshold,
        "dhash_threshold": the_plan.dhash_threshold,
        "groups": len(the_plan.groups),
        "quarantined": moved,
        "would_quarantine": len(the_plan.moves),
        "exact": reasons[EXACT],
        "near": reasons[NEAR],
        "conflicts": [c.as_dict() for c in the_plan.conflicts],
        "time": manifest.now(),
        "seconds": round(seconds, 3),
        "dry_run": dry_run,
        "images_before": the_plan.images,
        "images_after": the_plan.images - (0 if dry_run else moved),
        "details": [
            {"keeper": g.keeper.file,
             "kept": [m.file for m in g.kept],
             "duplicates": [{"file": d.member.file, "reason": d.reason, "distance": d.distance,
                             "duplicate_of": d.of}
                            for d in g.duplicates]}
            for g in the_plan.groups
        ],
    }


@dataclass
class DedupeResult(Result):
    plan: Plan
    moved: list[dict]
    report: dict
    page: Path | None
    recovered: int = 0
    folder: Path | None = None    # where duplicates go

    def summary_line(self) -> str:
        verb = "would be quarantined (dry run)" if self.report["dry_run"] else "quarantined"
        return (f"{self.report['groups']} groups, {self.report['would_quarantine']} files {verb} "
                f"({self.report['exact']} exact, {self.report['near']} near), "
                f"{len(self.plan.conflicts)} conflicts")

    def summary(self) -> str:
        lines = [f"conflict: {c.duplicate} duplicates {c.keeper} but their labels disagree: {c.why}"
                 for c in self.plan.conflicts]
        if self.recovered:
            lines.append(f"recovered: {self.recovered} moves of an interrupted dedupe recorded")
        lines.append(f"dedupe: {self.summary_line()}; {self.report['images_after']} images left "
                     f"(threshold {self.plan.threshold}, dHash {self.plan.dhash_threshold}, "
                     f"{self.report['seconds']:.1f}s)")
        if self.page:
            lines.append(f"review page: {self.page}")
        if self.moved:
            lines.append(f"moved to {self.folder} (log.jsonl there); `make restore` puts them back")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return self.report


def dedupe(dataset: Dataset, threshold: int = neighbours.DEFAULT_THRESHOLD, dry_run: bool = False,
           progress: bool = True, page: bool = True,
           dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD) -> DedupeResult:
    """Plan, write the review page, then (unless dry_run) quarantine. The caller holds the lock."""
    from .dedupe_page import write_page
    started = time.monotonic()
    if not dataset.images.is_dir():
        raise MasksetError(f"{dataset.images}: no images folder. Run `make scrape` or `make import` first.")
    recovered = 0 if dry_run else moves.recover(dataset, "dedupe", log_file(dataset))
    the_plan = plan(dataset, threshold, progress, dhash_threshold)
    dataset.export.mkdir(parents=True, exist_ok=True)
    # The page is written before moving so that the thumbnails come from images/ in one place.
    page_path = write_page(dataset, the_plan, dry_run=dry_run, progress=progress) if page else None
    moved = [] if dry_run else quarantine(dataset, the_plan, progress)
    report = summary_dict(the_plan, dry_run, time.monotonic() - started, len(moved))
    atomic.write_json(dataset.export / "dedupe.json", report)
    return DedupeResult(the_plan, moved, report, page_path, recovered, duplicates_folder(dataset))
