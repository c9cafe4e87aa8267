"""`make validate`: check every VOC file against its real image.

One line per problem, naming file and field, then a summary; exit status 1 on errors.
Images with no VOC file are pending, not errors; machine drafts (`make prelabel`) count as
pending too unless include_drafts. `FIX=1` applies the safe fixes (correct <size>, clamp boxes
to the image, drop exact duplicate boxes, clear an EXIF orientation labelImg ignored) and keeps
each original under quarantine/fixed/.

Incremental: the result of checking a VOC file against its image is remembered in
.cache/validate-v1.json, keyed by both files' size and mtime, the images its stem names,
classes.txt and INCLUDE_DRAFTS, and is checked again only when one of them changes. An image is
decoded once in its life: import or scrape decoded it already and recorded its size, format and
EXIF orientation (with its byte size and mtime) in the manifest, which stands in for a decode
while the file is unchanged (a record saying "decoded": false, as older imports wrote, does not).
RECHECK=1 forgets all that and decodes everything again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic, boxes, manifest, voc
from . import progress as progress_bars
from .errors import MasksetError
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
    annotations: Mapping = field(default_factory=dict)  # image name -> VocAnnotation (annotated)
    fixed: list[str] = field(default_factory=list)      # what FIX=1 did, one line per file
    fix_asked: bool = False
    checked: int = 0    # VOC files checked this run (the others were unchanged: remembered)
    decoded: int = 0    # images decoded this run (the others were known)
    signature: str = ""  # of every file the run saw (and INCLUDE_DRAFTS): the same for an unchanged dataset

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
VERSION = 3                      # of the file's layout


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
    mtime. Derived data: a damaged or older file is simply rebuilt.

    Two JSON lines: a small header (the classes it was checked against, and the last run's
    report with the signature of every file it saw), then the body (the checks and the image
    facts), parsed only when a run needs it: a run over a dataset that has not changed since the
    last reads the header alone."""

    def __init__(self, dataset: Dataset, classes: list[str], recheck: bool = False):
        self.dataset = dataset
        self.path = dataset.cache / CACHE_NAME
        self.classes = hashlib.sha256("\n".join(classes).encode("utf-8")).hexdigest()
        self.header: dict = {}
        self.changed = self.recheck = recheck
        self._body: str | None = None
        self._entries: dict[str, list] | None = None
        self._images: dict[str, list] | None = None
        self._manifest: dict | None = None
        self._lock = threading.Lock()
        self.decoded = 0
        if recheck:
            self._entries, self._images = {}, {}
            return
        try:
            with open(self.path, encoding="utf-8") as handle:
                header = json.loads(handle.readline())
                if isinstance(header, dict) and header.get("version") == VERSION:
                    self.header, self._body = header, handle.read()
        except (OSError, ValueError):
            pass
        if not self.header:
            self._entries, self._images, self.changed = {}, {}, True

    def _load(self) -> None:
        if self._entries is not None:
            return
        try:
            body = json.loads(self._body or "{}")
            images, entries = body.get("images") or {}, body.get("entries") or {}
        except (ValueError, AttributeError):
            images, entries, self.changed = {}, {}, True
        self._images = images
        self._entries = entries if self.header.get("classes") == self.classes else {}
        if self.header.get("classes") != self.classes:
            self.changed = True  # classes.txt changed: every VOC file is checked again
        self._body = None

    @property
    def entries(self) -> dict:
        self._load()
        return self._entries

    @property
    def images(self) -> dict:
        self._load()
        return self._images

    def last_run(self, signature: str) -> dict | None:
        """The last run's report if it saw exactly these files (and these classes)."""
        last = self.header.get("last") or {}
        if self.recheck or self.header.get("classes") != self.classes or last.get("signature") != signature:
            return None
        return last

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
        if [record.get("bytes"), record.get("mtime_ns")] != key or record.get("decoded") is False:
            return None  # not recorded, the file changed since, or import only read its header: decode it
        from .images import ImageInfo
        try:
            return ImageInfo(int(record["width"]), int(record["height"]), str(record.get("format") or ""),
                             int(record.get("exif_orientation") or 1))
        except (KeyError, TypeError, ValueError):
            return None

    def lookup(self, xml_name: str, key: list):
        hit = self.entries.get(xml_name)
        return hit[1] if hit and hit[0] == key else None

    def remember(self, xml_name: str, key: list, result: list) -> None:
        self.entries[xml_name] = [key, result]
        self.changed = True

    def stored_annotations(self, annotated: list[str]) -> dict[str, tuple]:
        """image name -> (stored check, VOC file name) of the annotated images, from the body."""
        wanted = set(annotated)
        found = {stored[0]: (stored, name) for name, (_, stored) in self.entries.items()
                 if stored[0] in wanted and len(stored) > 3 and not stored[1]}
        if len(found) != len(wanted):
            raise MasksetError(f"{self.path}: damaged (it lacks {len(wanted) - len(found)} annotations it "
                               f"should hold). Delete it and run `make validate` again.")
        return found

    def save(self, xml_names, image_names, last: dict) -> None:
        """Write the cache (only files still in the dataset are kept) and this run's report."""
        pruned = {k: v for k, v in self.entries.items() if k in xml_names}
        images = {k: v for k, v in self.images.items() if k in image_names}
        unchanged = (not self.changed and len(pruned) == len(self.entries) and len(images) == len(self.images)
                     and (self.header.get("last") or {}).get("signature") == last["signature"])
        if unchanged or not self.dataset.writable():
            return
        header = {"version": VERSION, "classes": self.classes, "last": last}
        atomic.write_text(self.path, json.dumps(header, separators=(",", ":")) + "\n"
                          + json.dumps({"entries": pruned, "images": images}, separators=(",", ":")) + "\n")


class Annotations(Mapping):
    """image name -> VocAnnotation, made when first asked for: a run over unchanged files counts
    boxes from what it remembered and builds an annotation object only for a caller that reads
    it (export, FIX=1)."""

    def __init__(self, folder: Path, stored: dict | None = None, load=None):
        self._folder = folder
        self._stored = stored if stored is not None else {}  # name -> (stored check, VOC file name)
        self._load = load                                      # () -> such a dict, when first needed
        self._made: dict = {}

    def _all(self) -> dict:
        if self._load is not None:
            self._stored, self._load = self._load(), None
        return self._stored

    def __getitem__(self, name):
        made = self._made.get(name)
        if made is None:
            stored, xml_name = self._all()[name]
            made = self._made[name] = _restored(stored, self._folder, xml_name)[1]
        return made

    def __iter__(self):
        return iter(self._all())

    def __len__(self):
        return len(self._all())


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


def _signature(image_stats: dict, xml_stats: dict, include_drafts: bool) -> str:
    """What a whole run depends on besides classes.txt: every image's and VOC file's name, size
    and mtime, and INCLUDE_DRAFTS."""
    digest = hashlib.sha256(f"{include_drafts}\n".encode())
    for stats in (image_stats, xml_stats):  # repr of sorted (name, (size, mtime)) pairs: exact, and quick
        digest.update(repr(sorted(stats.items())).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


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
    signature = _signature(image_stats, xml_stats, include_drafts)
    memory = Memory(dataset, classes, recheck)
    last = memory.last_run(signature)
    if last is not None:  # nothing changed since the last run: its report, as it was
        report = Report(images=last["images"], findings=[Finding(*f) for f in last["findings"]],
                        annotated=last["annotated"], pending=last["pending"], drafts=last["drafts"],
                        boxes=Counter(last["boxes"]), signature=signature,
                        annotations=Annotations(dataset.annotations,
                                                load=lambda: memory.stored_annotations(last["annotated"])))
    else:
        report = _check(dataset, memory, classes, image_stats, xml_stats, include_drafts, progress)
        report.signature = signature
        memory.save(set(xml_stats), set(image_stats), {
            "signature": signature, "images": report.images, "annotated": report.annotated,
            "pending": report.pending, "drafts": report.drafts, "boxes": dict(report.boxes),
            "findings": [[f.file, f.field, f.kind, f.message, f.severity, f.fixable] for f in report.findings]})
    if write_report:
        if not dataset.writable():
            log.warning("%s: read-only; export/validate.json not written", dataset.root)
        elif last is None or not _written(dataset.export / "validate.json", report):
            atomic.write_json(dataset.export / "validate.json", report.to_json())
    return report


def _written(path: Path, report: Report) -> bool:
    """Whether validate.json already says what this report says (a run over unchanged files)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["summary"] == report.counts() and data["findings"] == [asdict(f) for f in report.findings]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check(dataset: Dataset, memory: Memory, classes: list[str], image_stats: dict, xml_stats: dict,
           include_drafts: bool, progress: bool) -> Report:
    """The report, checking each VOC file whose check is not remembered."""
    images = sorted(image_stats)
    names_by_stem: dict[str, list[str]] = {}
    for name in images:
        names_by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
    report = Report(images=len(images))
    facts_of = memory.facts(image_stats)
    results, todo = [], []
    annotations = dataset.annotations
    stored = {}
    for name in sorted(xml_stats):
        stem = os.path.splitext(name)[0]
        key = [*xml_stats[name], [[n, *image_stats[n]] for n in names_by_stem.get(stem, [])], include_drafts]
        hit = memory.lookup(name, key)
        if hit is not None:
            results.append((name, hit))
        else:
            todo.append((name, key))
    images_by_stem = {os.path.splitext(name)[0]: [dataset.images / n for n in
                                                  names_by_stem.get(os.path.splitext(name)[0], [])]
                      for name, _ in todo}

    def check(item):
        name, key = item
        outcome = _stored(*_check_one(dataset, annotations / name, images_by_stem, classes, include_drafts,
                                      facts_of))
        memory.remember(name, key, outcome)
        return name, outcome

    with ThreadPoolExecutor(max_workers=4) as pool:  # lxml and Pillow work outside the GIL
        results += progress_bars.bar(pool.map(check, todo), total=len(todo), desc="validate", unit="file",
                                     enabled=progress and bool(todo))
    results.sort(key=lambda r: r[0])
    covered = set()
    for name, outcome in results:
        image_name, is_draft, findings = outcome[:3]
        report.findings += [Finding(*f) for f in findings]
        if image_name is None:
            continue
        covered.add(image_name)
        if is_draft:
            report.drafts.append(image_name)
        elif len(outcome) > 3:
            report.annotated.append(image_name)
            stored[image_name] = (outcome, name)
            report.boxes.update(o[0] for o in outcome[6])
    report.annotations = Annotations(annotations, stored)
    report.pending = sorted(n for n in images if n not in covered) + sorted(report.drafts)
    report.checked, report.decoded = len(todo), memory.decoded
    return report


def refuse_errors(dataset: Dataset, report: Report, refusal: str, then: str) -> None:
    """A MasksetError when validate found errors: `refusal` says what the stage will not do,
    `then` what to run once they are corrected. Stages that write from annotations call it."""
    if not report.errors:
        return
    first = "\n  ".join(f.line() for f in report.errors[:5])
    raise MasksetError(
        f"{dataset.root}: validate finds {len(report.errors)} errors; {refusal}. First ones:\n  {first}\n"
        f"Run `make validate` (FIX=1 fixes the safe ones), correct the rest in labelImg, then {then}.")


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
