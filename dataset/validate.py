"""`make validate`: check every VOC file against its real image.

One line per problem, naming file and field, then a summary; exit status 1 on errors.
Images with no VOC file are pending, not errors; machine drafts (`make prelabel`) count as
pending too unless include_drafts. `FIX=1` applies the safe fixes (correct <size>, clamp boxes
to the image, drop exact duplicate boxes, clear an EXIF orientation labelImg ignored) and keeps
each original under quarantine/fixed/.

Incremental: the result of checking a VOC file against its image is remembered in
.cache/validate-v1.json, keyed by both files' size and mtime, the images its stem names,
classes.txt and INCLUDE_DRAFTS, and is checked again only when one of them changes. An image is
decoded once in its life: import and scrape decoded it already and recorded its size, format and
EXIF orientation (with its byte size and mtime) in the manifest, which stands in for a decode
while the file is unchanged. RECHECK=1 forgets all that and decodes everything again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic, boxes, manifest, voc
from . import progress as progress_bars
from .layout import IMAGE_SUFFIXES, Dataset
from .results import Result

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"


@dataclass
class Finding:
    file: str      # relative to the dataset folder
    field: str     # e.g. "<size><width>", "<object> #2 <bndbox><xmax>"
    kind: str      # a stable key: size-mismatch, out-of-bounds ...
    message: str   # what is wrong and how to fix it
    severity: str = ERROR
    fixable: bool = False

    def line(self) -> str:
        return f"{self.severity}: {self.file}: {self.field}: {self.message}"


@dataclass
class Report(Result):
    findings: list[Finding] = field(default_factory=list)
    images: int = 0
    annotated: list[str] = field(default_factory=list)  # image names with a usable VOC file
    pending: list[str] = field(default_factory=list)    # image names still to annotate
    drafts: list[str] = field(default_factory=list)     # image names with an unreviewed draft
    boxes: Counter = field(default_factory=Counter)     # per class, annotated images only
    annotations: dict = field(default_factory=dict)     # image name -> VocAnnotation (annotated)
    fixed: list[str] = field(default_factory=list)      # what FIX=1 did, one line per file
    fix_asked: bool = False
    checked: int = 0    # VOC files checked this run (the others were unchanged: remembered)
    decoded: int = 0    # images decoded this run (the others were known)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def counts(self) -> dict:
        return {"images": self.images, "annotated": len(self.annotated), "pending": len(self.pending),
                "drafts": len(self.drafts), "errors": len(self.errors), "warnings": len(self.warnings),
                "boxes": sum(self.boxes.values()), "boxes_per_class": dict(sorted(self.boxes.items()))}

    def summary_line(self) -> str:
        s = self.counts()
        per_class = ", ".join(f"{k} {v}" for k, v in s["boxes_per_class"].items()) or "none"
        drafts = f" ({s['drafts']} of them drafts)" if s["drafts"] else ""
        return (f"validate: {s['images']} images, {s['annotated']} annotated ({s['boxes']} boxes: "
                f"{per_class}), {s['pending']} pending{drafts}; "
                f"{s['errors']} errors, {s['warnings']} warnings; {self.checked} VOC files checked, "
                f"{self.decoded} images decoded (the rest unchanged)")

    def summary(self, limit: int | None = None) -> str:
        lines = [f"fixed: {line}" for line in self.fixed] or (["fixed: nothing to fix"] if self.fix_asked else [])
        lines += [finding.line() for finding in self.findings[:limit]]
        if limit is not None and len(self.findings) > limit:
            lines.append(f"... and {len(self.findings) - limit} more (all in export/validate.json)")
        lines.append(self.summary_line())
        fixable = sum(f.fixable for f in self.errors)
        if fixable and not self.fix_asked:
            lines.append(f"{fixable} of the errors can be fixed automatically: make validate FIX=1")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"summary": self.counts(), "time": manifest.now(),
                "findings": [asdict(f) for f in self.findings]}


def _check_boxes(rel: str, ann: voc.VocAnnotation, width: int, height: int, classes: list[str]):
    findings = []
    seen: dict[tuple, int] = {}
    for index, obj in enumerate(ann.objects, 1):
        where = f"<object> #{index}"
        if obj.name not in classes:
            findings.append(Finding(rel, f"{where} <name>", "unknown-class",
                                    f"class {obj.name!r} is not in classes.txt ({', '.join(classes)}). "
                                    f"Rename the box in labelImg, or add the class to classes.txt."))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            text = obj.raw.get(tag, str(value))
            if not value.is_integer():
                findings.append(Finding(rel, f"{where} <bndbox><{tag}>", "non-integer",
                                        f"{text} is not a whole pixel; labelImg writes integers. "
                                        f"Redraw the box in labelImg."))
            elif not text.lstrip("-").isdigit():
                findings.append(Finding(rel, f"{where} <bndbox><{tag}>", "integer-as-float",
                                        f"{text} written as a float; accepted as {int(value)}.", WARNING))
        if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
            findings.append(Finding(rel, f"{where} <bndbox>", "degenerate-box",
                                    f"box {tuple(int(v) for v in obj.box)} has zero or negative size. "
                                    f"Delete it in labelImg and draw it again."))
            continue
        for tag, value, limit in (("xmin", obj.xmin, width), ("ymin", obj.ymin, height),
                                  ("xmax", obj.xmax, width), ("ymax", obj.ymax, height)):
            if value < 0 or value > limit:
                findings.append(Finding(rel, f"{where} <bndbox><{tag}>", "out-of-bounds",
                                        f"{value:g} is outside the image (0..{limit}). FIX=1 clamps it "
                                        f"to the image.", fixable=True))
        key = (obj.name, *obj.box)
        if key in seen:
            findings.append(Finding(rel, f"{where} <bndbox>", "duplicate-box",
                                    f"same class and box as <object> #{seen[key]}. FIX=1 removes the "
                                    f"copy.", fixable=True))
        else:
            seen[key] = index
    return findings


def _check_one(dataset: Dataset, xml: Path, images_by_stem: dict, classes: list[str], include_drafts: bool,
               facts_of=None):
    """(image name or None, VocAnnotation or None, findings, is_draft) for one VOC file.
    facts_of(image path) -> images.ImageInfo (or images.NotAnImage): a decode, or what is known
    of it. (Pillow is imported only when a file must be checked: a run over unchanged files
    needs none of it.)"""
    from .images import NotAnImage, inspect
    facts_of = facts_of or inspect
    rel = str(xml.relative_to(dataset.root))
    try:
        ann = voc.parse(xml)
    except voc.VocError as error:
        kind = "malformed-xml" if "malformed" in error.detail else "missing-field"
        return None, None, [Finding(rel, error.field, kind, error.detail)], False
    candidates = images_by_stem.get(xml.stem, [])
    if not candidates:
        return None, None, [Finding(rel, "<filename>", "orphan-annotation",
                                    f"no image images/{xml.stem}.* for this VOC file (it names "
                                    f"{ann.filename!r}). Put the image back, or move this file out of "
                                    f"annotations/.")], False
    image = candidates[0]
    findings = []
    if len(candidates) > 1:
        findings.append(Finding(rel, "<filename>", "ambiguous-image",
                                f"several images share this stem ({', '.join(p.name for p in candidates)}); "
                                f"labelImg gives them one VOC file. Rename all but one."))
    if ann.draft and not include_drafts:
        return image.name, ann, findings, True
    if Path(ann.filename).name != image.name:
        findings.append(Finding(rel, "<filename>", "filename-mismatch",
                                f"names {ann.filename!r}, but this file belongs to {image.name} (labelImg "
                                f"pairs by name). Harmless; labelImg rewrites it on save.", WARNING))
    try:
        info = facts_of(image)
    except NotAnImage as why:
        return image.name, None, findings + [Finding(
            f"images/{image.name}", "image", "image-unreadable",
            f"cannot be decoded ({why}). Replace it with a readable JPEG/PNG, or quarantine it.")], False
    if info.orientation not in (0, 1):
        findings.append(Finding(f"images/{image.name}", "EXIF Orientation", "exif-orientation",
                                f"is {info.orientation}: labelImg and keras-retinanet use the stored pixels, "
                                f"but tools that honour EXIF (OpenCV's imread, browsers, phones) turn the "
                                f"picture, so there the boxes land elsewhere. FIX=1 clears the tag "
                                f"(losslessly) so every tool sees what labelImg showed.",
                                WARNING, fixable=True))
    for tag, value, real in (("width", ann.width, info.width), ("height", ann.height, info.height)):
        if value is None:
            findings.append(Finding(rel, f"<size><{tag}>", "missing-field",
                                    f"missing; the image's is {real}. FIX=1 writes it.", fixable=True))
        elif value != real:
            findings.append(Finding(rel, f"<size><{tag}>", "size-mismatch",
                                    f"says {value}, the image is {real}. FIX=1 writes the real size "
                                    f"(check the boxes: they may have been drawn on another copy).",
                                    fixable=True))
    findings += _check_boxes(rel, ann, info.width, info.height, classes)
    return image.name, ann, findings, False


# -- what is remembered between runs -------------------------------------------------------------
CACHE_NAME = "validate-v1.json"  # bump when a check changes: older results are then checked again
VERSION = 2                      # of the file's layout


def _listing(folder: Path, suffixes) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of the regular files in folder with one of the suffixes (hidden
    and temp files skipped): the rules of Dataset.image_files()/annotation_files(), one stat each."""
    found = {}
    if not folder.is_dir():
        return found
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in suffixes:
                continue
            try:
                if entry.is_file():
                    stat = entry.stat()
                    found[name] = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                continue
    return found


class Memory:
    """.cache/validate-v1.json: each VOC file's check, keyed by what it depends on, and each
    image's facts (size, format, orientation, or why it does not decode) keyed by its size and
    mtime. Derived data: a damaged or older file is simply rebuilt."""

    def __init__(self, dataset: Dataset, classes: list[str], recheck: bool = False):
        self.dataset = dataset
        self.path = dataset.cache / CACHE_NAME
        self.classes = hashlib.sha256("\n".join(classes).encode("utf-8")).hexdigest()
        self.entries: dict[str, list] = {}
        self.images: dict[str, list] = {}
        self.changed = self.recheck = recheck
        self._manifest: dict | None = None
        self._lock = threading.Lock()
        self.decoded = 0
        if recheck:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == VERSION:
                self.images = data.get("images") or {}
                if data.get("classes") == self.classes:
                    self.entries = data.get("entries") or {}
                else:
                    self.changed = True  # classes.txt changed: every VOC file is checked again
        except (OSError, ValueError, AttributeError):
            self.changed = True

    def facts(self, stats: dict[str, tuple[int, int]]):
        """facts_of(image path) for _check_one: remembered, else from the manifest's record of
        the file as import or scrape decoded it, else a decode (remembered from then on)."""
        def facts_of(path: Path):
            from .images import ImageInfo, NotAnImage, inspect
            key = list(stats[path.name])
            known = self.images.get(path.name)
            if known and known[:2] == key:
                if known[2] is None:
                    raise NotAnImage(known[6])
                return ImageInfo(*known[2:6])
            facts = None if self.recheck else self._from_manifest(path.name, key)
            why = None
            if facts is None:
                try:
                    facts = inspect(path)
                except NotAnImage as error:
                    why = str(error)
                with self._lock:
                    self.decoded += 1
            with self._lock:
                self.images[path.name] = (key + [facts.width, facts.height, facts.format, facts.orientation, None]
                                          if facts else key + [None, None, None, None, why])
                self.changed = True
            if facts is None:
                raise NotAnImage(why)
            return facts
        return facts_of

    def _from_manifest(self, name: str, key: list):
        with self._lock:
            if self._manifest is None:
                try:
                    self._manifest = manifest.state(self.dataset)
                except Exception:  # a damaged manifest is report's and import's business: decode instead
                    self._manifest = {}
        record = self._manifest.get(name) or {}
        if [record.get("bytes"), record.get("mtime_ns")] != key:
            return None  # not recorded, or the file changed since: decode it
        from .images import ImageInfo
        try:
            return ImageInfo(int(record["width"]), int(record["height"]), str(record.get("format") or ""),
                             int(record.get("exif_orientation") or 1))
        except (KeyError, TypeError, ValueError):
            return None

    def lookup(self, xml_name: str, key: list):
        hit = self.entries.get(xml_name)
        return hit[1] if hit and hit[0] == key else None

    def remember(self, xml_name: str, key: list, result: dict) -> None:
        self.entries[xml_name] = [key, result]
        self.changed = True

    def save(self, xml_names, image_names) -> None:
        """Write the cache (only files still in the dataset are kept), if anything changed."""
        pruned = {k: v for k, v in self.entries.items() if k in xml_names}
        images = {k: v for k, v in self.images.items() if k in image_names}
        if not self.changed and len(pruned) == len(self.entries) and len(images) == len(self.images):
            return
        if not self.dataset.writable():
            return
        atomic.write_text(self.path, json.dumps({"version": VERSION, "classes": self.classes, "entries": pruned,
                                                 "images": images}, separators=(",", ":")))


def _number(value: float):
    return int(value) if float(value).is_integer() else value  # 12 rather than 12.0: a smaller cache


def _stored(image_name, ann, findings, is_draft) -> list:
    """A check's outcome as JSON, flat (the cache is read whole on every run): the image, whether
    it is a draft, the findings, and what the report needs of the annotation."""
    stored = [image_name, is_draft, [[f.file, f.field, f.kind, f.message, f.severity, f.fixable] for f in findings]]
    if ann is not None:
        stored += [ann.filename, ann.width, ann.height,
                   [[o.name, _number(o.xmin), _number(o.ymin), _number(o.xmax), _number(o.ymax), o.difficult]
                    for o in ann.objects]]
    return stored


def _restored(stored: list, folder: Path, name: str):
    image_name, is_draft, findings = stored[:3]
    ann = None
    if len(stored) > 3:
        filename, width, height, objects = stored[3:]
        VocObject = voc.VocObject
        ann = voc.VocAnnotation(filename, width, height, draft=is_draft, source=folder / name, objects=[
            VocObject(label, x1, y1, x2, y2, difficult) for label, x1, y1, x2, y2, difficult in objects])
    return image_name, ann, [Finding(*f) for f in findings] if findings else [], is_draft


def validate(dataset: Dataset, include_drafts: bool = False, progress: bool = True,
             write_report: bool = True, recheck: bool = False) -> Report:
    """Check every VOC file against its image; only what changed since the last run is checked
    again (recheck=True: everything, decoding every image)."""
    dataset.require()
    classes = dataset.classes()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two folders' stat calls at once
        listed = pool.submit(_listing, dataset.images, IMAGE_SUFFIXES)
        xml_stats = _listing(dataset.annotations, (".xml",))
        image_stats = listed.result()
    images = sorted(image_stats)
    names_by_stem: dict[str, list[str]] = {}
    for name in images:
        names_by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    report = Report(images=len(images))
    memory = Memory(dataset, classes, recheck)
    facts_of = memory.facts(image_stats)
    results, todo = [], []
    annotations = dataset.annotations
    for name in sorted(xml_stats):
        stem = os.path.splitext(name)[0]
        key = [*xml_stats[name], [[n, *image_stats[n]] for n in names_by_stem.get(stem, [])], include_drafts]
        hit = memory.lookup(name, key)
        if hit is not None:
            results.append((name, _restored(hit, annotations, name)))
        else:
            todo.append((name, key))
    images_by_stem = {os.path.splitext(name)[0]: [dataset.images / n for n in
                                                  names_by_stem.get(os.path.splitext(name)[0], [])]
                      for name, _ in todo}

    def check(item):
        name, key = item
        outcome = _check_one(dataset, annotations / name, images_by_stem, classes, include_drafts, facts_of)
        memory.remember(name, key, _stored(*outcome))
        return name, outcome

    with ThreadPoolExecutor(max_workers=4) as pool:  # lxml and Pillow work outside the GIL
        results += progress_bars.bar(pool.map(check, todo), total=len(todo), desc="validate", unit="file",
                                     enabled=progress and bool(todo))
    results.sort(key=lambda r: r[0])
    covered = set()
    for _, (image_name, ann, findings, is_draft) in results:
        report.findings += findings
        if image_name is None:
            continue
        covered.add(image_name)
        if is_draft:
            report.drafts.append(image_name)
        elif ann is not None:
            report.annotated.append(image_name)
            report.annotations[image_name] = ann
            report.boxes.update(o.name for o in ann.objects)
    report.pending = sorted(n for n in images if n not in covered) + sorted(report.drafts)
    report.checked, report.decoded = len(todo), memory.decoded
    memory.save(set(xml_stats), set(image_stats))
    if write_report:
        if dataset.writable():
            atomic.write_json(dataset.export / "validate.json", report.to_json())
        else:
            log.warning("%s: read-only; export/validate.json not written", dataset.root)
    return report


def apply_fixes(dataset: Dataset, report: Report) -> list[str]:
    """Apply the fixable findings; originals go to quarantine/fixed/<time>/. Returns what was done.

    Every fixed file is computed before any is written, so a file that cannot be fixed stops the
    run with nothing changed."""
    backup = dataset.quarantine / "fixed" / time.strftime("%Y%m%dT%H%M%S")
    image_of_xml = {str(a.source.relative_to(dataset.root)): name for name, a in report.annotations.items()}
    by_file: dict[str, set[str]] = {}
    for finding in report.findings:
        if finding.fixable:
            by_file.setdefault(finding.file, set()).add(finding.kind)
    changes = []
    for rel, kinds in sorted(by_file.items()):
        path = dataset.inside(rel, "file to fix")
        if rel.startswith("images/"):
            from . import exif
            image_name, fixed = path.name, exif.clear_orientation(path.read_bytes())
        else:
            from .images import inspect
            image_name = image_of_xml[rel]
            info = inspect(dataset.images / image_name, decode=False)
            fixed = _fixed_xml(path, info.width, info.height)
        changes.append((rel, path, image_name, kinds, fixed))
    done, records = [], []
    for rel, path, image_name, kinds, fixed in changes:
        original = atomic.copy_file(path, atomic.unique_path(backup / rel))
        atomic.write_bytes(path, fixed)
        done.append(f"{rel}: {', '.join(sorted(kinds))}")
        records.append({"file": image_name, "event": "fixed", "what": sorted(kinds),
                        "original": str(original.relative_to(dataset.root))})
    manifest.append_many(dataset, records)
    return done


def fix(dataset: Dataset, report: Report, include_drafts: bool = False) -> Report:
    """Apply the report's safe fixes, then validate again: the new report, saying what was done."""
    done = apply_fixes(dataset, report) if any(f.fixable for f in report.findings) else []
    if done:
        report = validate(dataset, include_drafts=include_drafts, progress=False)  # the fixed files only
    report.fixed, report.fix_asked = done, True
    return report


def _fixed_xml(xml: Path, width: int, height: int) -> bytes:
    """The VOC file with the real <size>, boxes clamped to it and exact duplicate boxes dropped."""
    def change(root):
        size = root.find("size")
        if size is None:
            size = voc.set_text(root, "size", "")
        voc.set_text(size, "width", str(width))
        voc.set_text(size, "height", str(height))
        seen = set()
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            tags = ("xmin", "ymin", "xmax", "ymax")
            values = tuple(float(box.find(tag).text) for tag in tags)  # parse() checked them
            clamped = boxes.voc_clamped(values, width, height)
            for tag, value, new in zip(tags, values, clamped):
                if new != value:
                    box.find(tag).text = str(int(round(new)))
            # by value, as the check compares them: 210 and 210.0 are one box
            key = (obj.findtext("name"), *clamped)
            if key in seen:
                root.remove(obj)
            seen.add(key)
    return voc.edited(xml, change)
