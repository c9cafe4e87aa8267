"""`make dedupe [THRESHOLD=..] [DRY_RUN=1]` and `make restore`: exact and near duplicates.

Each group of duplicates (same sha256, or pHash within THRESHOLD bits, joined with union-find)
keeps its best copy in images/: an annotated one first, then the larger resolution, then the
larger file. The others move, with their VOC files, to quarantine/duplicates/; each move is logged
in quarantine/duplicates/log.jsonl and in the manifest. Nothing is deleted, and `--restore` puts
every quarantined duplicate back byte for byte. Two annotated copies that disagree (classes, or
boxes after scaling to the same size) are reported as conflicts: one of them is a labelling mistake.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import atomic, grouping, manifest, voc
from .boxes import iou, match
from .cli import dataset_from, parser, run
from .errors import MasksetError
from .layout import Dataset

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


def _member(dataset: Dataset, name: str, fingerprint: grouping.Fingerprint, sha: str, keep: bool) -> Member:
    path = dataset.images / name
    member = Member(name, sha, fingerprint.phash, size=path.stat().st_size, keep=keep)
    try:
        with Image.open(path) as image:  # header only: no decode
            member.width, member.height = image.size
    except OSError:
        pass  # grouping.image_records decoded it already; a race with another tool at worst
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


def plan(dataset: Dataset, threshold: int = grouping.DEFAULT_THRESHOLD, progress: bool = True,
         dhash_threshold: int = grouping.DEFAULT_DHASH_THRESHOLD) -> Plan:
    """Decide groups, keepers and conflicts without moving anything."""
    grouping.check_thresholds(threshold, dhash_threshold)
    records = grouping.image_records(dataset, progress=progress)
    hashes = {name: fingerprint for name, (fingerprint, _) in records.items()}
    pairs = grouping.similar_pairs(hashes, threshold, dhash_threshold, progress=progress)
    pairs += grouping.same_bytes_pairs({name: sha for name, (_, sha) in records.items()})
    state = manifest.state(dataset)
    curated = {f for f, r in state.items() if r.get("event") == manifest.RESTORED and r.get("keep")}

    groups, conflicts = [], []
    for names in grouping.groups(sorted(hashes), pairs):
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
                group.duplicates.append(Duplicate(member, NEAR, grouping.hamming(member.phash, keeper.phash),
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
    """Move every planned duplicate (and its VOC file) to quarantine/duplicates/, logging each."""
    from tqdm import tqdm
    folder = duplicates_folder(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    moves = [(g.keeper.file, d) for g in the_plan.groups for d in g.duplicates]
    for keeper, dup in tqdm(moves, desc="quarantine", unit="img", disable=not progress):
        member = dup.member
        image_to = atomic.move_file(dataset.images / member.file, folder / member.file)
        record = {"file": member.file, "event": manifest.QUARANTINED, "reason": dup.reason,
                  "duplicate_of": dup.of, "distance": dup.distance, "keeper": keeper,
                  "moved_to": _relative(dataset, image_to), "threshold": the_plan.threshold,
                  "dhash_threshold": the_plan.dhash_threshold}
        if member.annotation:
            xml = dataset.root / member.annotation
            xml_to = atomic.move_file(xml, folder / xml.name)
            record["annotation"] = member.annotation
            record["annotation_moved_to"] = _relative(dataset, xml_to)
        record = manifest.append(dataset, record)
        atomic.append_line(log_file(dataset), json.dumps(record, sort_keys=True, ensure_ascii=False))
        moved.append(record)
    return moved


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
class DedupeResult:
    plan: Plan
    moved: list[dict]
    report: dict
    page: Path

    def summary(self) -> str:
        verb = "would be quarantined (dry run)" if self.report["dry_run"] else "quarantined"
        return (f"{self.report['groups']} groups, {self.report['would_quarantine']} files {verb} "
                f"({self.report['exact']} exact, {self.report['near']} near), "
                f"{len(self.plan.conflicts)} conflicts")


def dedupe(dataset: Dataset, threshold: int = grouping.DEFAULT_THRESHOLD, dry_run: bool = False,
           progress: bool = True, page: bool = True,
           dhash_threshold: int = grouping.DEFAULT_DHASH_THRESHOLD) -> DedupeResult:
    """Plan, write the review page, then (unless dry_run) quarantine. The caller holds the lock."""
    from .dedupe_page import write_page
    started = time.monotonic()
    dataset.require()
    if not dataset.images.is_dir():
        raise MasksetError(f"{dataset.images}: no images folder. Run `make scrape` or `make import` first.")
    the_plan = plan(dataset, threshold, progress, dhash_threshold)
    dataset.export.mkdir(parents=True, exist_ok=True)
    # The page is written before moving so that the thumbnails come from images/ in one place.
    page_path = write_page(dataset, the_plan, dry_run=dry_run, progress=progress) if page else None
    moved = [] if dry_run else quarantine(dataset, the_plan, progress)
    report = summary_dict(the_plan, dry_run, time.monotonic() - started, len(moved))
    atomic.write_json(dataset.export / "dedupe.json", report)
    return DedupeResult(the_plan, moved, report, page_path)


# -- restore ---------------------------------------------------------------------------------------
@dataclass
class RestoreResult:
    restored: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def quarantined_duplicates(dataset: Dataset) -> dict[str, dict]:
    """file -> its quarantine record, for duplicates still in quarantine."""
    return {f: r for f, r in manifest.state(dataset).items()
            if r.get("event") == manifest.QUARANTINED and r.get("reason") in (EXACT, NEAR)}


def restore(dataset: Dataset, files=None, progress: bool = True) -> RestoreResult:
    """Move quarantined duplicates back (all, or the named ones) under their original names.

    Naming files means a curator decided they are not duplicates: dedupe will keep them from now on.
    """
    from tqdm import tqdm
    waiting = quarantined_duplicates(dataset)
    if files:
        unknown = [f for f in files if f not in waiting]
        if unknown:
            raise MasksetError(f"{', '.join(unknown)}: not a quarantined duplicate of {dataset.root}. "
                               f"{log_file(dataset)} lists the quarantined files.")
        waiting = {f: waiting[f] for f in files}
    result = RestoreResult()
    for name, record in tqdm(sorted(waiting.items()), desc="restore", unit="img", disable=not progress):
        source = dataset.root / record["moved_to"]
        target = dataset.images / name
        xml_source = dataset.root / record["annotation_moved_to"] if record.get("annotation_moved_to") else None
        xml_target = dataset.root / record["annotation"] if record.get("annotation") else None
        if not source.exists():
            result.skipped.append((name, f"{source} is gone (moved by hand?)"))
            continue
        if target.exists():
            result.skipped.append((name, f"{target} exists already; move one of them aside by hand"))
            continue
        if xml_target is not None and xml_target.exists():
            result.skipped.append((name, f"{xml_target} exists already (a new annotation); "
                                        f"restore {source} by hand"))
            continue
        atomic.move_file(source, target)
        entry = {"file": name, "event": manifest.RESTORED, "restored_from": record["moved_to"],
                 "keep": bool(files)}
        if xml_source is not None and xml_source.exists():
            atomic.move_file(xml_source, xml_target)
            entry["annotation_restored_from"] = record["annotation_moved_to"]
        entry = manifest.append(dataset, entry)
        atomic.append_line(log_file(dataset), json.dumps(entry, sort_keys=True, ensure_ascii=False))
        result.restored.append(name)
    return result


# -- CLI -------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = parser("Find exact and near-duplicate images; keep the best copy, quarantine the rest.")
    grouping.add_threshold_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="write the review page and report, move nothing")
    p.add_argument("--restore", nargs="*", metavar="FILE",
                   help="put quarantined duplicates back: all, or only the named files (those are "
                        "then kept by later runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    dataset = dataset_from(args).require()
    with dataset.lock("dedupe"):
        if args.restore is not None:
            result = restore(dataset, args.restore, progress=not args.quiet)
            for name, why in result.skipped:
                print(f"not restored: {name}: {why}")
            print(f"restore: {len(result.restored)} files back in {dataset.images}"
                  + (f", {len(result.skipped)} skipped" if result.skipped else ""))
            return 1 if result.skipped else 0
        result = dedupe(dataset, args.threshold, args.dry_run, progress=not args.quiet,
                        dhash_threshold=args.dhash_threshold)
    for conflict in result.plan.conflicts:
        print(f"conflict: {conflict.duplicate} duplicates {conflict.keeper} but their labels disagree: "
              f"{conflict.why}")
    print(f"dedupe: {result.summary()}; {result.report['images_after']} images left "
          f"(threshold {args.threshold}, dHash {args.dhash_threshold}, {result.report['seconds']:.1f}s)")
    print(f"review page: {result.page}")
    if result.moved:
        print(f"moved to {duplicates_folder(dataset)} (log.jsonl there); `make restore` puts them back")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
