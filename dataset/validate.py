"""`make validate`: check every VOC file against its real image.

One line per problem, naming file and field, then a summary; exit status 1 on errors.
Images with no VOC file are pending, not errors; machine drafts (`make prelabel`) count as
pending too unless include_drafts. `FIX=1` applies the safe fixes (correct <size>, clamp boxes
to the image, drop exact duplicate boxes, clear an EXIF orientation labelImg ignored) and keeps
each original under quarantine/fixed/.
"""
from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree
from tqdm import tqdm

from . import atomic, exif, manifest, voc
from .cli import dataset_from, parser, run
from .images import NotAnImage, inspect
from .layout import Dataset

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
class Report:
    findings: list[Finding] = field(default_factory=list)
    images: int = 0
    annotated: list[str] = field(default_factory=list)  # image names with a usable VOC file
    pending: list[str] = field(default_factory=list)    # image names still to annotate
    drafts: list[str] = field(default_factory=list)     # image names with an unreviewed draft
    boxes: Counter = field(default_factory=Counter)     # per class, annotated images only
    annotations: dict = field(default_factory=dict)     # image name -> VocAnnotation (annotated)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def summary(self) -> dict:
        return {"images": self.images, "annotated": len(self.annotated), "pending": len(self.pending),
                "drafts": len(self.drafts), "errors": len(self.errors), "warnings": len(self.warnings),
                "boxes": sum(self.boxes.values()), "boxes_per_class": dict(sorted(self.boxes.items()))}

    def summary_line(self) -> str:
        s = self.summary()
        per_class = ", ".join(f"{k} {v}" for k, v in s["boxes_per_class"].items()) or "none"
        drafts = f" ({s['drafts']} of them drafts)" if s["drafts"] else ""
        return (f"validate: {s['images']} images, {s['annotated']} annotated ({s['boxes']} boxes: "
                f"{per_class}), {s['pending']} pending{drafts}; "
                f"{s['errors']} errors, {s['warnings']} warnings")


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
        results = list(tqdm(pool.map(lambda x: _check_one(dataset, x, images_by_stem, classes,
                                                          include_drafts), xml_files),
                            total=len(xml_files), desc="validate", unit="file", disable=not progress))
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
        atomic.write_json(dataset.export / "validate.json", {
            "summary": report.summary(), "time": manifest.now(),
            "findings": [asdict(f) for f in report.findings]})
    return report


def apply_fixes(dataset: Dataset, report: Report) -> list[str]:
    """Apply the fixable findings; originals go to quarantine/fixed/<time>/. Returns what was done."""
    backup = dataset.quarantine / "fixed" / time.strftime("%Y%m%dT%H%M%S")
    image_of_xml = {str(a.source.relative_to(dataset.root)): name for name, a in report.annotations.items()}
    by_file: dict[str, set[str]] = {}
    for finding in report.findings:
        if finding.fixable:
            by_file.setdefault(finding.file, set()).add(finding.kind)
    done = []
    for rel, kinds in sorted(by_file.items()):
        path = dataset.root / rel
        original = atomic.copy_file(path, atomic.unique_path(backup / rel))
        if rel.startswith("images/"):
            image_name = path.name
            atomic.write_bytes(path, exif.clear_orientation(path.read_bytes()))
        else:
            image_name = image_of_xml[rel]
            info = inspect(dataset.images / image_name, decode=False)
            atomic.write_bytes(path, _fixed_xml(path, info.width, info.height))
        done.append(f"{rel}: {', '.join(sorted(kinds))}")
        manifest.append(dataset, {"file": image_name, "event": "fixed", "what": sorted(kinds),
                                  "original": str(original.relative_to(dataset.root))})
    return done


def fix(dataset: Dataset, report: Report, include_drafts: bool = False) -> tuple[list[str], Report]:
    """Apply the report's safe fixes, then validate again: (what was done, the new report)."""
    if not any(f.fixable for f in report.findings):
        return [], report
    done = apply_fixes(dataset, report)
    return done, validate(dataset, include_drafts=include_drafts, progress=False)


def _fixed_xml(xml: Path, width: int, height: int) -> bytes:
    """The VOC file with the real <size>, boxes clamped to it and exact duplicate boxes dropped."""
    root = etree.parse(str(xml), voc._PARSER).getroot()
    size = root.find("size")
    if size is None:
        size = etree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height)):
        node = size.find(tag)
        if node is None:
            node = etree.SubElement(size, tag)
        node.text = str(value)
    seen = set()
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        key = [obj.findtext("name")]
        for tag, limit in (("xmin", width), ("ymin", height), ("xmax", width), ("ymax", height)):
            node = box.find(tag)
            value = float(node.text)
            clamped = min(max(value, 0), limit)
            if clamped != value:
                node.text = str(int(round(clamped)))
            key.append(clamped)  # by value, as the check compares them: 210 and 210.0 are one box
        if tuple(key) in seen:
            root.remove(obj)
        seen.add(tuple(key))
    return etree.tostring(root, pretty_print=True, encoding="utf-8")


def print_report(report: Report, limit: int | None = None) -> None:
    for finding in report.findings[:limit]:
        print(finding.line())
    if limit is not None and len(report.findings) > limit:
        print(f"... and {len(report.findings) - limit} more (all in export/validate.json)")
    print(report.summary_line())


def main(argv=None) -> int:
    p = parser("Check every VOC file against its real image.")
    p.add_argument("--fix", action="store_true", help="apply the safe fixes, keeping originals in quarantine/fixed/")
    p.add_argument("--include-drafts", action="store_true", help="validate unreviewed drafts as annotations")
    args = p.parse_args(argv)
    dataset = dataset_from(args)
    with dataset.lock("validate"):
        report = validate(dataset, include_drafts=args.include_drafts)
        if args.fix:
            done, report = fix(dataset, report, args.include_drafts)
            for line in done or ["nothing to fix"]:
                print(f"fixed: {line}")
    print_report(report)
    if report.errors:
        fixable = sum(f.fixable for f in report.errors)
        if fixable and not args.fix:
            print(f"{fixable} of the errors can be fixed automatically: make validate FIX=1")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
