"""`make export`: write keras-retinanet's CSV files from the validated VOC files.

export/annotations.csv: `path,x1,y1,x2,y2,class_name`, no header, integer 0-based pixels
(VOC's are 1-based: keras-retinanet's own VOC reader subtracts 1, and so do we), paths relative
to export/; an annotated image with no objects is `path,,,,,`. export/classes.csv: `class,id`
from 0 in classes.txt order. Refuses to export while validate finds errors.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field

from . import atomic, boxes, memo
from . import progress as progress_bars
from .errors import MasksetError
from .layout import Dataset
from .results import Result
from .validate import Report, refuse_errors, validate


@dataclass
class ExportResult(Result):
    images: int = 0
    negatives: int = 0
    boxes: Counter = field(default_factory=Counter)
    skipped_difficult: int = 0
    pending: int = 0
    drafts: int = 0
    written: list[str] = field(default_factory=list)
    checked: int = 0   # VOC files validate checked for this export (0: it reused the last validation)
    unchanged: bool = False  # nothing changed since the last export: its files stand as they are

    def summary_line(self) -> str:
        per_class = ", ".join(f"{k} {v}" for k, v in sorted(self.boxes.items()))
        return (f"export: {self.images} images ({self.negatives} with no objects), "
                f"{sum(self.boxes.values())} boxes ({per_class}); {self.pending} pending not exported"
                + (f", {self.skipped_difficult} difficult boxes skipped" if self.skipped_difficult else "")
                + f"; validation: {self.checked} VOC files checked, the rest as the last validate found them")

    def summary(self) -> str:
        if self.unchanged:
            return self.summary_line() + "\nnothing changed since the last export: its CSV files are up to date"
        return self.summary_line() + (f"\nwrote {' and '.join(self.written)}" if self.written else "")


def csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def resized_copy(dataset: Dataset, image_name: str, sides: tuple[int, int]) -> tuple[str, float]:
    """(CSV path, scale) of the image as training will see it: when it is larger than
    keras-retinanet's resize (shorter side to min, longer side at most max) a copy scaled that
    way is written once under export/resized/<min>x<max>/, so training skips decoding and
    shrinking a large photo at every step; otherwise the image itself, at scale 1."""
    from PIL import Image
    source = dataset.images / image_name
    with Image.open(source) as image:
        width, height = image.size
        scale = min(sides[0] / min(width, height), sides[1] / max(width, height))
        if scale >= 1:
            return f"../{dataset.images.name}/{image_name}", 1.0
        # same file name as the image: make split finds each row's image (and its hash) by name
        copy = dataset.export / "resized" / f"{sides[0]}x{sides[1]}" / image_name
        if not copy.exists() or copy.stat().st_mtime < source.stat().st_mtime:
            # keras-retinanet reads with PIL, ignoring EXIF, and resizes bilinearly: so do we
            small = image.convert("RGB").resize((round(width * scale), round(height * scale)),
                                                Image.Resampling.BILINEAR)
            with atomic.writing(copy) as tmp:
                small.save(tmp, quality=95)
    return str(copy.relative_to(dataset.export)), scale


def annotation_rows(dataset: Dataset, report: Report, skip_difficult: bool = False,
                    resize: tuple[int, int] | None = None):
    """The CSV rows for every annotated image, sorted by image name, and what was counted.
    resize=(min_side, max_side): point the rows at pre-resized copies, boxes scaled to match."""
    result = ExportResult(pending=len(report.pending), drafts=len(report.drafts))
    rows = []
    folder = f"../{dataset.images.name}/"
    for image_name in progress_bars.bar(sorted(report.annotations), desc="export", enabled=bool(resize)):
        ann = report.annotations[image_name]
        path, scale = resized_copy(dataset, image_name, resize) if resize else (folder + image_name, 1.0)
        objects = [o for o in ann.objects if not (skip_difficult and o.difficult)]
        result.skipped_difficult += len(ann.objects) - len(objects)
        if ann.objects and not objects:
            continue  # every object was difficult: not a picture without faces, so leave it out
        result.images += 1
        if not objects:
            rows.append([path, "", "", "", "", ""])
            result.negatives += 1
        for obj in objects:
            x1, y1, x2, y2 = boxes.csv_from_voc(obj.box, ann.width, ann.height, scale)
            rows.append([path, x1, y1, x2, y2, obj.name])
            result.boxes[obj.name] += 1
    return rows, result


def export(dataset: Dataset, skip_difficult: bool = False, include_drafts: bool = False,
           progress: bool = True, resize: tuple[int, int] | None = None) -> ExportResult:
    report = validate(dataset, include_drafts=include_drafts, progress=progress)
    refuse_errors(dataset, report, "export refuses to write training data from them", "export again")
    classes = dataset.classes()
    # the same validated files, classes and options as the last export, whose files are untouched:
    # nothing to write (with RESIZE= the copies are files too: always written)
    inputs = {"writer": "keras-retinanet csv 1", "validation": report.signature, "classes": classes,
              "skip_difficult": skip_difficult, "include_drafts": include_drafts}
    done = None if resize else memo.previous(dataset, "export", inputs)
    if done is not None:
        return ExportResult(**{**done, "boxes": Counter(done["boxes"]), "written": [], "checked": report.checked,
                               "unchanged": True})
    rows, result = annotation_rows(dataset, report, skip_difficult, resize)
    result.checked = report.checked
    outputs = [dataset.export / "annotations.csv", dataset.export / "classes.csv"]
    atomic.write_text(outputs[0], csv_text(rows))
    atomic.write_text(outputs[1], csv_text([name, i] for i, name in enumerate(classes)))
    result.written = [str(path) for path in outputs]
    if not resize:
        memo.record(dataset, "export", inputs, outputs, result.to_json())
    return result


def parse_resize(text: str | None) -> tuple[int, int] | None:
    """RESIZE=800x1333 -> (800, 1333)."""
    if not text:
        return None
    try:
        resize = tuple(int(v) for v in text.lower().split("x"))
        if len(resize) != 2 or not 0 < resize[0] <= resize[1]:
            raise ValueError
    except ValueError:
        raise MasksetError(f"RESIZE={text}: give MINxMAX image sides, e.g. RESIZE=800x1333") from None
    return resize
