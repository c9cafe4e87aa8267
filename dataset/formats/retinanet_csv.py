"""keras-retinanet's CSV in (the writer is dataset/export.py, `make export`).

SRC is the annotations CSV, or a folder holding it (`annotations.csv`, or the one CSV file other
than `classes.csv`; a maskset dataset's `export/annotations.csv` is found too), with
`classes.csv` (`class_name,id`) beside it. Each line is `path,x1,y1,x2,y2,class_name` in 0-based
integer pixels, no header; `path,,,,,` is an image with no objects. A relative path is relative to
the CSV's folder, as keras-retinanet reads it, and must stay inside SRC.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .. import boxes, voc
from ..errors import MasksetError
from ..importer import Source, SourceItem
from . import common

HEADER_WORDS = {"path", "image", "filename", "file", "x1", "xmin", "class", "class_name", "label"}


def find(src: Path) -> Path:
    if src.is_file():
        return src
    for candidate in (src / "annotations.csv", src / "export" / "annotations.csv"):
        if candidate.is_file():
            return candidate
    others = sorted(p for p in src.glob("*.csv") if p.name != "classes.csv")
    if len(others) == 1:
        return others[0]
    listed = ", ".join(p.name for p in others) or "none"
    raise MasksetError(f"SRC={src}: cannot tell which CSV holds the annotations (found: {listed}). Point SRC= at "
                       f"the file itself, e.g. SRC={src / 'train.csv'}.")


def _rows(path: Path):
    text = common.read_text(path)
    yield from enumerate(csv.reader(io.StringIO(text)), 1)


def read_classes(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise MasksetError(f"{path}: missing. keras-retinanet's CSV comes with a classes.csv (`class_name,id` "
                           f"a line) beside it; add it.")
    classes: dict[str, int] = {}
    for number, row in _rows(path):
        if not row or not "".join(row).strip():
            continue
        where = f"{path}:{number}"
        if len(row) != 2:
            raise MasksetError(f"{where}: {len(row)} fields; a line of classes.csv is `class_name,id`. Correct it.")
        name, cid = row[0].strip(), row[1].strip()
        if not cid.isdigit():
            first = " (a header row? classes.csv has none: delete it)" if number == 1 else ""
            raise MasksetError(f"{where}: id {cid!r} is not a whole number{first}.")
        if name in classes:
            raise MasksetError(f"{where}: class {name!r} is listed twice.")
        classes[name] = int(cid)
    return classes


def read(src: Path) -> Source:
    src = Path(src)
    path = find(src)
    root = src if src.is_dir() else src.parent
    classes = read_classes(path.parent / "classes.csv")
    source = Source("csv", src)
    items: dict[Path, SourceItem] = {}
    sizes: dict[Path, tuple[int, int]] = {}
    for number, row in _rows(path):
        if not row:
            continue
        where = f"{path}:{number}"
        if len(row) != 6:
            raise MasksetError(f"{where}: {len(row)} fields; a line is `path,x1,y1,x2,y2,class_name` (or "
                               f"`path,,,,,` for an image with no objects). Correct it.")
        if number == 1 and {f.strip().lower() for f in row} & HEADER_WORDS:
            raise MasksetError(f"{where}: a header row ({','.join(row)}); keras-retinanet's CSV has none (it "
                               f"would read {row[1]!r} as a coordinate and stop). Delete the first line.")
        image = common.inside(Path(row[0].strip()), [path.parent, root] if path.parent != root else [root],
                              where)
        if not image.is_file():
            raise MasksetError(f"{where}: image {row[0]} is missing ({image}). Put it there, or remove its lines.")
        if image not in sizes:
            sizes[image] = common.image_size(image, where)
        width, height = sizes[image]
        item = items.get(image)
        if item is None:
            item = items[image] = SourceItem(image, annotation=voc.VocAnnotation(image.name, width, height),
                                             where=where)
        if all(not f.strip() for f in row[1:]):
            continue  # an image with no objects
        name = row[5].strip()
        if name not in classes:
            raise MasksetError(f"{where}: class {name!r} is not in {path.parent / 'classes.csv'} "
                               f"({', '.join(classes)}). Add it there, or correct the line.")
        corners = []
        for label, text in zip(("x1", "y1", "x2", "y2"), row[1:5]):
            if not text.strip().lstrip("-").isdigit():
                raise MasksetError(f"{where}: {label} {text!r} is not a whole number (keras-retinanet reads "
                                   f"integer pixels). Correct the line.")
            corners.append(int(text))
        x1, y1, x2, y2 = corners
        if x2 <= x1 or y2 <= y1:
            raise MasksetError(f"{where}: x2 must be above x1 and y2 above y1 ({x1},{y1},{x2},{y2}). Correct it.")
        if boxes.edges_outside(x1, y1, x2 + 1, y2 + 1, width, height):
            raise MasksetError(f"{where}: box {x1},{y1},{x2},{y2} leaves the {width}x{height} image (0-based "
                               f"pixels, x up to {width - 1}). Correct it; nothing was imported.")
        xmin, ymin, xmax, ymax = boxes.clamp(boxes.voc_from_csv(corners), (1, 1), (width, height))
        item.annotation.objects.append(voc.VocObject(name, int(xmin), int(ymin), int(xmax), int(ymax)))
    source.items = list(items.values())
    return source
