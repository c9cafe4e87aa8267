"""What the format readers and writers share: paths that must stay inside SRC, text and JSON
files read with errors naming the file, the split's parts, and the result of an export.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..errors import MasksetError, UnsafePath
from ..images import NotAnImage, inspect
from ..layout import Dataset, decode_text
from ..results import Result

PART_ORDER = ("train", "val", "test")
ALL = "all"  # the one part when there is no split


# -- reading ----------------------------------------------------------------------------------
def inside(path: Path, roots: list[Path], where: str) -> Path:
    """path (absolute, or relative to the first root), which must stay inside one of the roots
    once links are followed: maskset reads nothing outside SRC."""
    path = Path(path)
    full = path if path.is_absolute() else roots[0] / path
    resolved = full.resolve()
    if not any(resolved.is_relative_to(Path(r).resolve()) for r in roots):
        raise UnsafePath(f"{where}: {path} leads outside SRC ({resolved}); maskset reads nothing outside "
                         f"the folder it imports. Point SRC= at a folder that holds the images too.")
    return full


def read_text(path: Path) -> str:
    """A text file as editors save it (UTF-8, with or without a BOM, or UTF-16 with its BOM); any
    other bytes are an error naming the file and the byte."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MasksetError(f"{path}: cannot read: {error.strerror or error}") from None
    return decode_text(data, path)


def load_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise MasksetError(f"{path}: line {error.lineno} column {error.colno}: not valid JSON ({error.msg}). "
                           f"Repair the file (or export it again from the tool that made it).") from None


def number(value, where: str, fix: str) -> float:
    """A finite number from a JSON value or a text field, else an error naming where."""
    if isinstance(value, bool):
        value = None
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise MasksetError(f"{where}: {value!r} is not a number. {fix}") from None
    if not math.isfinite(result):
        raise MasksetError(f"{where}: {value!r} is not a finite number. {fix}")
    return result


def image_size(path: Path, where: str) -> tuple[int, int]:
    """The stored image's width and height, from its header (the boxes' pixels)."""
    try:
        info = inspect(path, decode=False)
    except (NotAnImage, OSError) as why:
        raise MasksetError(f"{where}: {path} is not a readable image ({why}). Replace it, or remove it "
                           f"and its labels from the source.") from None
    return info.width, info.height


# -- writing ----------------------------------------------------------------------------------
@dataclass
class FormatExport(Result):
    """What `make export FORMAT=coco|yolo|voc` wrote."""
    format: str
    folder: Path
    images: int = 0
    negatives: int = 0
    boxes: Counter = field(default_factory=Counter)
    parts: dict = field(default_factory=dict)        # part -> {"images": n, "boxes": n}
    skipped_difficult: int = 0
    pending: int = 0
    written: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, part: str, objects: list) -> None:
        counts = self.parts.setdefault(part, {"images": 0, "boxes": 0})
        counts["images"] += 1
        counts["boxes"] += len(objects)
        self.images += 1
        self.negatives += not objects
        self.boxes.update(o.name for o in objects)

    def summary(self) -> str:
        per_class = ", ".join(f"{k} {v}" for k, v in sorted(self.boxes.items())) or "none"
        parts = "; ".join(f"{p} {c['images']} images, {c['boxes']} boxes" for p, c in self.parts.items())
        lines = [f"warning: {w}" for w in self.warnings]
        lines.append(f"export ({self.format}): {self.images} images ({self.negatives} with no objects), "
                     f"{sum(self.boxes.values())} boxes ({per_class}); {parts}; {self.pending} pending not exported"
                     + (f", {self.skipped_difficult} difficult boxes skipped" if self.skipped_difficult else ""))
        lines.append(f"wrote {self.folder}: " + ", ".join(self.written))
        return "\n".join(lines)


def split_parts(dataset: Dataset, names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The exported images by part of the split (export/split.json, read by dataset/split.py:
    train, val, and test when the split has one), or everything in one part "all" when there is
    no split; and warnings (annotated images the split does not know: added after `make split`)."""
    from ..split import read_record
    record = read_record(dataset)
    if record is None:
        return {ALL: sorted(names)}, []
    part_of = record["parts"]
    parts: dict[str, list[str]] = {}
    missing = []
    for name in sorted(names):
        if name in part_of:
            parts.setdefault(part_of[name], []).append(name)
        else:
            missing.append(name)
    order = {p: i for i, p in enumerate(PART_ORDER)}
    parts = dict(sorted(parts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} annotated images are not in {dataset.export / 'split.json'} (annotated "
                        f"or added after `make split`), e.g. {missing[0]}: left out of every part. Run "
                        f"`make export`, `make split`, then this export again.")
    return parts, warnings


def kept_objects(ann, skip_difficult: bool, result: FormatExport) -> list | None:
    """The objects to export (SKIP_DIFFICULT=1 leaves difficult ones out), or None when every
    object was difficult: such an image is not one without faces, so it is left out."""
    objects = [o for o in ann.objects if not (skip_difficult and o.difficult)]
    result.skipped_difficult += len(ann.objects) - len(objects)
    return None if ann.objects and not objects else objects


def place_image(dataset: Dataset, name: str, destination: Path) -> None:
    """The dataset's image at destination inside an export folder (a hard link: no bytes copied)."""
    atomic.link_or_copy(dataset.images / name, destination, durable=False)
