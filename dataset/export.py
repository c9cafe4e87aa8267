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

from PIL import Image
from tqdm import tqdm

from . import atomic
from .cli import dataset_from, parser, run
from .errors import MasksetError
from .layout import Dataset
from .validate import Report, validate


@dataclass
class ExportResult:
    images: int = 0
    negatives: int = 0
    boxes: Counter = field(default_factory=Counter)
    skipped_difficult: int = 0
    pending: int = 0
    drafts: int = 0

    def summary(self) -> str:
        per_class = ", ".join(f"{k} {v}" for k, v in sorted(self.boxes.items()))
        return (f"export: {self.images} images ({self.negatives} with no objects), "
                f"{sum(self.boxes.values())} boxes ({per_class}); {self.pending} pending not exported"
                + (f", {self.skipped_difficult} difficult boxes skipped" if self.skipped_difficult else ""))


def csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def to_csv_box(xmin: float, ymin: float, xmax: float, ymax: float, width: int, height: int,
               scale: float = 1.0):
    """VOC 1-based inclusive pixels -> keras-retinanet 0-based integers, inside the image
    (of a copy resized by `scale`, as `resized_copy` writes it)."""
    def convert(value: float, limit: int) -> int:
        return min(max(int(round((int(round(value)) - 1) * scale)), 0), limit - 1)
    width, height = round(width * scale), round(height * scale)
    x1, y1, x2, y2 = convert(xmin, width), convert(ymin, height), convert(xmax, width), convert(ymax, height)
    # a box at the very edge written 0-based by another tool (xmin 0, xmax 1) would collapse to
    # x1 == x2, which keras-retinanet rejects: keep it one pixel wide
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def resized_copy(dataset: Dataset, image_name: str, sides: tuple[int, int]) -> tuple[str, float]:
    """(CSV path, scale) of the image as training will see it: when it is larger than
    keras-retinanet's resize (shorter side to min, longer side at most max) a copy scaled that
    way is written once under export/resized/<min>x<max>/, so training skips decoding and
    shrinking a large photo at every step; otherwise the image itself, at scale 1."""
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
    for image_name in tqdm(sorted(report.annotations), desc="export", unit="img", disable=not resize):
        ann = report.annotations[image_name]
        path, scale = resized_copy(dataset, image_name, resize) if resize else \
            (f"../{dataset.images.name}/{image_name}", 1.0)
        objects = [o for o in ann.objects if not (skip_difficult and o.difficult)]
        result.skipped_difficult += len(ann.objects) - len(objects)
        if ann.objects and not objects:
            continue  # every object was difficult: not a picture without faces, so leave it out
        result.images += 1
        if not objects:
            rows.append([path, "", "", "", "", ""])
            result.negatives += 1
        for obj in objects:
            x1, y1, x2, y2 = to_csv_box(*obj.box, ann.width, ann.height, scale)
            rows.append([path, x1, y1, x2, y2, obj.name])
            result.boxes[obj.name] += 1
    return rows, result


def export(dataset: Dataset, skip_difficult: bool = False, include_drafts: bool = False,
           progress: bool = True, resize: tuple[int, int] | None = None) -> ExportResult:
    report = validate(dataset, include_drafts=include_drafts, progress=progress)
    if report.errors:
        first = "\n  ".join(f.line() for f in report.errors[:5])
        raise MasksetError(
            f"{dataset.root}: validate finds {len(report.errors)} errors; export refuses to write "
            f"training data from them. First ones:\n  {first}\nRun `make validate` (FIX=1 fixes the "
            f"safe ones), correct the rest in labelImg, then export again.")
    rows, result = annotation_rows(dataset, report, skip_difficult, resize)
    classes = dataset.classes()
    atomic.write_text(dataset.export / "annotations.csv", csv_text(rows))
    atomic.write_text(dataset.export / "classes.csv", csv_text([name, i] for i, name in enumerate(classes)))
    return result


def main(argv=None) -> int:
    p = parser("Write keras-retinanet's CSV files (export/annotations.csv, export/classes.csv).")
    p.add_argument("--skip-difficult", action="store_true", help="leave out objects marked difficult")
    p.add_argument("--include-drafts", action="store_true", help="export unreviewed prelabel drafts too")
    p.add_argument("--resize", metavar="MINxMAX", help="point the CSV at copies pre-resized as training "
                   "resizes them (e.g. 800x1333, `make train`'s default): faster training on large photos")
    args = p.parse_args(argv)
    resize = None
    if args.resize:
        try:
            resize = tuple(int(v) for v in args.resize.lower().split("x"))
            assert len(resize) == 2 and 0 < resize[0] <= resize[1]
        except (ValueError, AssertionError):
            raise MasksetError(f"RESIZE={args.resize}: give MINxMAX image sides, e.g. RESIZE=800x1333") from None
    dataset = dataset_from(args)
    with dataset.lock("export"):
        result = export(dataset, args.skip_difficult, args.include_drafts, resize=resize)
    print(result.summary())
    print(f"wrote {dataset.export / 'annotations.csv'} and {dataset.export / 'classes.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
