"""Other people's dataset formats, in and out (docs/formats.md).

One module per format: voc.py (labelImg / Pascal VOC), coco.py (COCO detection JSON), yolo.py
(the ultralytics layout) and retinanet_csv.py (keras-retinanet's CSV; its writer is
dataset/export.py). A reader turns SRC into an importer.Source whose annotations are VOC boxes
(1-based inclusive pixels, through dataset/boxes.py), checked before anything is copied; the
importer does the rest (class maps, the journal, all or nothing). A writer fills a folder under
export/ from the validated VOC files, one part per part of the split.

    read_source(src, fmt=None)       -> Source   (fmt detected when None)
    export_format(dataset, fmt, ...) -> FormatExport
"""
from __future__ import annotations

from pathlib import Path

from .. import atomic
from ..errors import MasksetError
from ..importer import ANNOTATION_FOLDER_NAMES, Source
from ..layout import IMAGE_SUFFIXES, Dataset
from . import coco, common, retinanet_csv, voc, yolo
from .common import FormatExport

FORMATS = ("voc", "coco", "yolo", "csv")
EXPORTS = {"coco": coco.write, "yolo": yolo.write, "voc": voc.write}  # csv: dataset/export.py


def _first(paths):
    return next(iter(paths), None)


def signs(src: Path) -> dict[str, str]:
    """format -> the file that makes SRC look like it (for detection and its error message)."""
    found: dict[str, str] = {}
    if src.is_file():
        by_suffix = {".json": "coco", ".csv": "csv", ".yaml": "yolo", ".yml": "yolo", ".xml": "voc"}
        fmt = by_suffix.get(src.suffix.lower())
        return {fmt: src.name} if fmt else {}
    coco_file = _first(p for folder in (src, src / "annotations") if folder.is_dir()
                       for p in sorted(folder.glob("instances*.json")))
    if coco_file is not None:
        found["coco"] = str(coco_file.relative_to(src))
    labels = src / yolo.LABELS
    label_file = yolo.find_yaml(src) or (_first(labels.rglob("*.txt")) if labels.is_dir() else None)
    if label_file is None and (src / "classes.txt").is_file():  # labelImg's flat YOLO folder
        stems = {p.stem for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        label_file = _first(p for p in src.glob("*.txt") if p.name != "classes.txt" and p.stem in stems)
    if label_file is not None:
        found["yolo"] = str(label_file.relative_to(src))
    if (src / "classes.csv").is_file():
        found["csv"] = "classes.csv"
    xml = _first(p for folder in (src, *(src / n for n in ANNOTATION_FOLDER_NAMES)) if folder.is_dir()
                 for p in folder.glob("*.xml"))
    if xml is not None:
        found["voc"] = str(xml.relative_to(src))
    return found


def detect(src: Path) -> str:
    """The format of SRC when it is unambiguous; a folder of images alone is a VOC folder with
    nothing annotated yet."""
    src = Path(src)
    found = signs(src)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        if src.is_file():
            raise MasksetError(f"SRC={src}: not a format maskset reads by its name (.json COCO, .csv keras-"
                               f"retinanet, .yaml YOLO). Say which with FORMAT={'|'.join(FORMATS)}.")
        return "voc"
    evidence = ", ".join(f"{fmt} ({what})" for fmt, what in found.items())
    raise MasksetError(f"SRC={src} looks like more than one format: {evidence}. Say which to import with "
                       f"FORMAT={'|'.join(found)}.")


def read_source(src: Path | str, fmt: str | None = None, images: Path | str | None = None,
                annotations: Path | str | None = None) -> Source:
    """SRC read by the reader of its format (detected when fmt is None)."""
    src = Path(src)
    fmt = (fmt or detect(src)).strip().lower()
    if fmt not in FORMATS:
        raise MasksetError(f"FORMAT={fmt}: not a format maskset reads. Use one of {', '.join(FORMATS)}.")
    if fmt == "voc":
        return voc.read(src, Path(images) if images else None, Path(annotations) if annotations else None)
    if annotations:
        raise MasksetError(f"ANNOTATIONS= names a VOC folder; a {fmt} source keeps its annotations in its own "
                           f"files. Leave ANNOTATIONS= out.")
    if fmt == "coco":
        return coco.read(src, Path(images) if images else None)
    if images:
        raise MasksetError(f"IMAGES= is for VOC and COCO sources; a {fmt} source names its images itself. "
                           f"Leave IMAGES= out.")
    return yolo.read(src) if fmt == "yolo" else retinanet_csv.read(src)


def export_format(dataset: Dataset, fmt: str, skip_difficult: bool = False, include_drafts: bool = False,
                  progress: bool = True) -> FormatExport:
    """export/<fmt>/ written whole from the validated VOC files (refused while validate finds
    errors), one part per part of export/split.json."""
    from ..validate import refuse_errors, validate
    if fmt not in EXPORTS:
        raise MasksetError(f"FORMAT={fmt}: export writes {', '.join(['csv', *EXPORTS])}.")
    report = validate(dataset, include_drafts=include_drafts, progress=progress)
    refuse_errors(dataset, report, "export refuses to write training data from them", "export again")
    parts, warnings = common.split_parts(dataset, list(report.annotations))
    result = FormatExport(format=fmt, folder=dataset.export / fmt, pending=len(report.pending),
                          warnings=warnings)
    turned = sum(f.kind == "exif-orientation" for f in report.findings if f.file.startswith("images/")
                 and f.file[len("images/"):] in report.annotations)
    if turned and fmt != "voc":
        result.warnings.append(f"{turned} images carry an EXIF orientation: the boxes are written on the stored "
                               f"pixels (as labelImg shows them), but tools that turn the picture first "
                               f"(ultralytics, OpenCV) see them elsewhere. `make validate FIX=1` clears the tag.")
    with atomic.replacing_folder(result.folder) as folder:
        EXPORTS[fmt](dataset, report.annotations, parts, folder, result, skip_difficult)
    return result
