"""`make validate`: check every VOC file against its real image.

One line per problem, naming file and field, then a summary; exit status 1 on errors.
Images with no VOC file are pending, not errors; machine drafts (`make prelabel`) count as
pending too unless include_drafts. `FIX=1` applies the safe fixes (correct <size>, clamp boxes
to the image, drop exact duplicate boxes, clear an EXIF orientation labelImg ignored) and keeps
each original under quarantine/fixed/.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import atomic, boxes, exif, manifest, voc
from . import progress as progress_bars
from .errors import MasksetError
from .images import NotAnImage, inspect
from .layout import Dataset
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
                f"{s['errors']} errors, {s['warnings']} warnings")

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


def _check_one(dataset: Dataset, xml: Path, images_by_stem: dict, classes: list[str], include_drafts: bool):
    """(image name or None, VocAnnotation or None, findings, is_draft) for one VOC file."""
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
        info = inspect(image)
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


def validate(dataset: Dataset, include_drafts: bool = False, progress: bool = True,
             write_report: bool = True) -> Report:
    dataset.require()
    classes = dataset.classes()
    images = dataset.image_files()
    images_by_stem: dict[str, list[Path]] = {}
    for image in images:
        images_by_stem.setdefault(image.stem, []).append(image)
    report = Report(images=len(images))
    xml_files = dataset.annotation_files()
    with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow decodes outside the GIL
        results = list(progress_bars.bar(pool.map(lambda x: _check_one(dataset, x, images_by_stem, classes,
                                                                       include_drafts), xml_files),
                                         total=len(xml_files), desc="validate", unit="file", enabled=progress))
    covered = set()
    for image_name, ann, findings, is_draft in results:
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
    report.pending = sorted(p.name for p in images if p.name not in covered) + sorted(report.drafts)
    if write_report:
        if dataset.writable():
            atomic.write_json(dataset.export / "validate.json", report.to_json())
        else:
            log.warning("%s: read-only; export/validate.json not written", dataset.root)
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
            image_name, fixed = path.name, exif.clear_orientation(path.read_bytes())
        else:
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
        report = validate(dataset, include_drafts=include_drafts, progress=False)
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
