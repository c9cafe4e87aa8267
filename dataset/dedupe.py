"""`make dedupe [THRESHOLD=..] [FLIP=1] [DRY_RUN=1]`: exact and near duplicates.

Each group of duplicates (same sha256; or pHash within THRESHOLD bits and dHash within
DHASH_THRESHOLD; or a crop, small rotation or, with FLIP=1, mirror image confirmed by geometric
verification, dataset/verify.py; joined with union-find) keeps its best copy in images/, judged
by content (`choose_keeper`): an annotated one first, then the resolution of the picture inside
uniform frames (an upscaled copy counts at its source's resolution), then not upscaled, then the
JPEG quality (a lossless re-save of a JPEG counts as that JPEG), then the larger file. The
others move, with their VOC files, to quarantine/duplicates/ as one crash-safe
change (dataset/moves.py), logged in quarantine/duplicates/log.jsonl and in the manifest.
Nothing is deleted, and restore (dataset/restore.py) puts every quarantined duplicate back. Two
annotated copies that disagree (classes, or boxes after scaling to the same size) are reported as
conflicts: one of them is a labelling mistake.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import atomic, hashcache, hashing, moves, neighbours, manifest, verify, voc
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
    content: float = 1.0             # share of the area inside uniform frames (hashing)
    quality: float = 101.0           # compression rank: a JPEG's quality, 101 lossless (see below)
    upscaled: float = 1.0            # found upscaled by this factor from another member

    @property
    def annotated(self) -> bool:
        return self.annotation is not None

    @property
    def tier(self) -> int:
        """2: a person's annotation; 1: a machine draft; 0: none."""
        return 2 if self.annotated and not self.draft else 1 if self.annotated else 0

    @property
    def pixels(self) -> float:
        """The picture's resolution: pixels inside uniform frames, at its source's resolution
        when it is an upscaled copy."""
        return self.width * self.height * self.content / (self.upscaled * self.upscaled)


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
    match: str | None = None  # how it was matched to the keeper directly: direct | view | mirror
                              # (None: through other members of its group)


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
    flip: bool = False
    found: verify.Found | None = None

    @property
    def moves(self) -> list[Duplicate]:
        return [d for g in self.groups for d in g.duplicates]


def _member(dataset: Dataset, name: str, fingerprint: hashing.Fingerprint, sha: str, keep: bool) -> Member:
    path = dataset.images / name
    member = Member(name, sha, fingerprint.phash, size=path.stat().st_size, keep=keep,
                    content=fingerprint.content or 1.0)
    try:
        with open_image(path) as image:  # header only: no decode
            member.width, member.height = image.size
            tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
        member.quality = jpeg_quality(tables) if tables else \
            fingerprint.ghost - 0.5 if fingerprint.ghost else 101.0
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


# -- the keeper --------------------------------------------------------------------------------------
# IJG's standard luminance quantisation table (JPEG Annex K), in natural order.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)
_IJG_SUMS = np.array([np.clip(np.floor((_IJG_LUMA * (5000 / q if q < 50 else 200 - 2 * q) + 50) / 100), 1, 255).sum()
                      for q in range(1, 101)])


def jpeg_quality(quantization: dict) -> float:
    """IJG-equivalent quality (1-100) of a JPEG's luminance quantisation table: the quality whose
    standard table has the same sum (as ImageMagick estimates it; another encoder's tables map to
    a comparable number)."""
    table = quantization.get(0) if 0 in quantization else next(iter(quantization.values()))
    return round(float(np.interp(-float(np.sum(table)), -_IJG_SUMS, np.arange(1, 101))), 1)


UPSCALED_DETAIL = 0.45   # tune half: upscaled copies 0.30 at the median (0.41 at the 97th
                         # percentile); real originals over their resized copies 0.53 at least
MIN_UPSCALE = 1.2        # linear size ratio below which two copies count as the same size
DETAIL_WINDOW = 256      # the smaller copy's centre window compared (the larger's: u times it)
RESOLUTION_TIE = 0.7     # within this share of the best resolution counts as as good: a
                         # half-size copy at quality 95 must not beat a full-size one at 90
UPSCALE_TESTS = 8        # smaller members an apparent winner is tested against, largest first (2: keeper
                         # 0.920 on the test half, 6 upscales kept; 8: 0.940, 2 kept; a brightened or
                         # cropped smaller copy can hide the upscaling, so more than one is tried)


def _detail_energy(gray: np.ndarray, factor: float) -> float:
    """Mean squared detail lost by shrinking by `factor` (area) and growing back (cubic)."""
    h, w = gray.shape
    small = cv2.resize(gray, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return float(np.mean((gray - cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)) ** 2))


def _centre(gray: np.ndarray, side: int) -> np.ndarray:
    h, w = gray.shape
    side = min(side, h, w)
    return gray[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]


def upscaled_from(larger: np.ndarray, smaller: np.ndarray) -> bool:
    """Is `larger` an upscaled copy of the picture `smaller` shows (both frame-trimmed, full
    resolution)? The detail `larger` loses when shrunk to `smaller`'s scale, against the finest
    detail `smaller` holds: a real higher-resolution original holds detail there, an upscaled
    copy only interpolation ringing and JPEG noise. A test within a group, because it needs the
    two copies' relative scale (a per-image test found 65 % at 2.5 % false alarms)."""
    u = math.sqrt(larger.size / max(1, smaller.size))
    if u < MIN_UPSCALE:
        return False
    a = _centre(smaller.astype(np.float32), DETAIL_WINDOW)
    b = _centre(larger.astype(np.float32), int(round(DETAIL_WINDOW * u)))
    reference = _detail_energy(a, 1.25)
    if reference <= 1e-3:
        return False  # a flat picture: nothing to tell by
    return _detail_energy(b, u) / reference < UPSCALED_DETAIL


def _trimmed_gray(path: Path) -> np.ndarray:
    """The whole picture in grey at full resolution, uniform frames trimmed (the upscale test)."""
    gray, _ = hashing.decode_gray(path.read_bytes(), str(path), min_short=1 << 30)
    top, bottom, left, right = hashing.trimmed_box(gray.astype(np.float32))
    return gray[top:bottom, left:right]


def choose_keeper(members: list[Member], load) -> Member:
    """The copy to keep: annotation tier; resolution (Member.pixels) within RESOLUTION_TIE of the
    tier's best; not upscaled; compression rank; file size; the first name.

    An apparent winner with MIN_UPSCALE times the side of a smaller member is tested
    (upscaled_from, on full decodes: `load(member)` -> trimmed grey) against the largest such
    members; found upscaled, it counts at their resolution and the choice is made again. Only
    winners are tested, so a group costs one or two full decodes, not one per member."""
    grays: dict[str, np.ndarray] = {}

    def gray(m: Member) -> np.ndarray:
        if m.file not in grays:
            grays[m.file] = load(m)
        return grays[m.file]

    tested: set[str] = set()
    while True:
        top = max(m.tier for m in members)
        best = max(m.pixels for m in members if m.tier == top)
        winner = max(sorted(members, key=lambda m: m.file),  # among equals the first name wins
                     key=lambda m: (m.tier, m.pixels >= RESOLUTION_TIE * best, m.upscaled == 1.0, m.quality,
                                    m.size))
        if winner.file in tested or sum(m.tier == winner.tier for m in members) < 2:
            return winner
        tested.add(winner.file)
        smaller = sorted((m for m in members if m is not winner and m.tier <= winner.tier
                          and winner.pixels >= MIN_UPSCALE ** 2 * m.pixels > 0), key=lambda m: -m.pixels)
        for other in smaller[:UPSCALE_TESTS]:
            if upscaled_from(gray(winner), gray(other)):
                winner.upscaled = math.sqrt(winner.pixels / other.pixels)
                break
        else:
            return winner


def _rank(member: Member):
    """The order of the members that are not the keeper (whose bytes an exact copy names)."""
    return (member.tier, member.pixels, member.quality, member.size, _reverse_name(member.file))


def _decide_group(task) -> tuple[Group, list[Conflict]]:
    """One group's keeper, duplicates and conflicts (in a worker: the keeper may decode)."""
    dataset, entries, kinds = task
    members = [_member(dataset, name, fingerprint, sha, keep) for name, fingerprint, sha, keep in entries]
    keeper = choose_keeper(members, lambda m: _trimmed_gray(dataset.images / m.file))
    rest = sorted((m for m in members if m is not keeper), key=_rank, reverse=True)
    group, conflicts = Group(keeper, []), []
    first_with_bytes = {keeper.sha256: keeper.file}  # best-ranked member holding each content
    for member in rest:
        twin = first_with_bytes.setdefault(member.sha256, member.file)
        if member.keep:
            group.kept.append(member)
        elif twin != member.file:
            group.duplicates.append(Duplicate(member, EXACT, 0, twin))
        else:
            group.duplicates.append(Duplicate(member, NEAR, neighbours.hamming(member.phash, keeper.phash),
                                              keeper.file, kinds.get(tuple(sorted((member.file, keeper.file))))))
    for other in rest:
        if other.annotated and keeper.annotated and not other.draft and not keeper.draft:
            why = disagreement(keeper, other)
            if why:
                conflicts.append(Conflict(keeper.file, other.file, why))
    return group, conflicts


def plan(dataset: Dataset, threshold: int = neighbours.DEFAULT_THRESHOLD, progress: bool = True,
         dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD, flip: bool = False) -> Plan:
    """Decide groups, keepers and conflicts without moving anything (writes only .cache/)."""
    neighbours.check_thresholds(threshold, dhash_threshold)
    records = hashcache.image_records(dataset, progress=progress)
    hashes = {name: fingerprint for name, (fingerprint, _) in records.items()}
    digests = {name: sha for name, (_, sha) in records.items()}
    verdicts = verify.Verdicts(verify.verdicts_path(dataset))
    found = verify.find_pairs(hashes, {n: dataset.images / n for n in hashes}, digests, threshold,
                              dhash_threshold, flip, verdicts, progress)
    if dataset.writable():
        verdicts.save(keep=hashcache.cached_digests(dataset))
    pairs = found.pairs + neighbours.same_bytes_pairs(digests)
    state = manifest.state(dataset)
    curated = {f for f, r in state.items() if r.get("event") == manifest.RESTORED and r.get("keep")}

    tasks = [(dataset, [(n, *records[n], n in curated) for n in names],
              {pair: kind for pair, kind in found.kinds.items() if pair[0] in names})
             for names in neighbours.groups(sorted(hashes), pairs) if len(names) > 1]
    decided = sorted(hashcache.run_tasks(_decide_group, tasks, progress, "keepers", [len(t[1]) for t in tasks]),
                     key=lambda d: min(m.file for m in [d[0].keeper, *d[0].kept, *(x.member for x in d[0].duplicates)]))
    groups = [group for group, _ in decided if group.duplicates or group.kept]
    conflicts = [c for _, found_conflicts in decided for c in found_conflicts]
    return Plan(threshold, len(hashes), groups, conflicts, dhash_threshold, flip, found)


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
                  "dhash_threshold": the_plan.dhash_threshold, "flip": the_plan.flip}
        if dup.match:
            record["match"] = dup.match
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
        "flip": the_plan.flip,
        "verification": verify.VERSION,
        "candidates": the_plan.found.candidates if the_plan.found else 0,
        "loner_candidates": the_plan.found.second_pass if the_plan.found else 0,
        "verified": the_plan.found.verified if the_plan.found else 0,
        "verdicts_remembered": the_plan.found.remembered if the_plan.found else 0,
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
                             "duplicate_of": d.of, **({"match": d.match} if d.match else {})}
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
                     f"mirrored copies {'included' if self.plan.flip else 'not included (FLIP=1 includes them)'}, "
                     f"{self.report['verified']} pairs verified, "
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
           dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD, flip: bool = False) -> DedupeResult:
    """Plan, write the review page, then (unless dry_run) quarantine. The caller holds the lock."""
    from .dedupe_page import write_page
    started = time.monotonic()
    if not dataset.images.is_dir():
        raise MasksetError(f"{dataset.images}: no images folder. Run `make scrape` or `make import` first.")
    recovered = 0 if dry_run else moves.recover(dataset, "dedupe", log_file(dataset))
    the_plan = plan(dataset, threshold, progress, dhash_threshold, flip)
    dataset.export.mkdir(parents=True, exist_ok=True)
    # The page is written before moving so that the thumbnails come from images/ in one place.
    page_path = write_page(dataset, the_plan, dry_run=dry_run, progress=progress) if page else None
    moved = [] if dry_run else quarantine(dataset, the_plan, progress)
    report = summary_dict(the_plan, dry_run, time.monotonic() - started, len(moved))
    atomic.write_json(dataset.export / "dedupe.json", report)
    return DedupeResult(the_plan, moved, report, page_path, recovered, duplicates_folder(dataset))
