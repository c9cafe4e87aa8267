"""`make import SRC=folder`: bring an existing labelImg dataset into a maskset dataset.

Images are copied (never moved) into images/; each VOC file goes to annotations/ with
<folder>, <filename> and <path> rewritten for its new place; the manifest records the source.
Re-importing the same folder adds nothing: a source file already imported with the same bytes
is skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from tqdm import tqdm

from . import atomic, manifest, voc
from .cli import dataset_from, parser, run
from .errors import MasksetError
from .images import NotAnImage, inspect
from .layout import IMAGE_SUFFIXES, Dataset

IMAGE_FOLDER_NAMES = ("images", "JPEGImages", "Images", "imgs", "img")
ANNOTATION_FOLDER_NAMES = ("annotations", "Annotations", "xml", "labels", "voc")


@dataclass
class ImportResult:
    images_added: int = 0
    annotations_added: int = 0
    already_imported: int = 0
    annotations_kept: list[str] = field(default_factory=list)  # ours existed: never overwritten
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source file, why)
    unparsable_xml: list[str] = field(default_factory=list)       # copied as they were
    orphan_xml: list[str] = field(default_factory=list)           # no image in the source
    classes_found: list[str] = field(default_factory=list)
    classes_written: bool = False

    def summary(self) -> str:
        parts = [f"{self.images_added} images and {self.annotations_added} annotations imported",
                 f"{self.already_imported} already there"]
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected")
        if self.annotations_kept:
            parts.append(f"{len(self.annotations_kept)} existing annotations kept")
        if self.orphan_xml:
            parts.append(f"{len(self.orphan_xml)} VOC files without image skipped")
        return ", ".join(parts)


def locate(src: Path, images: Path | None = None, annotations: Path | None = None) -> tuple[Path, Path]:
    """The image folder and the annotation folder of a labelImg dataset (flat or split)."""
    src = Path(src)
    if images is None:
        images = next((src / n for n in IMAGE_FOLDER_NAMES if (src / n).is_dir()), src)
    if annotations is None:
        annotations = next((src / n for n in ANNOTATION_FOLDER_NAMES if (src / n).is_dir()), images)
    for folder, what in ((images, "image"), (annotations, "annotation")):
        if not Path(folder).is_dir():
            raise MasksetError(f"{folder}: no such {what} folder. Pass SRC= (and IMAGES=/ANNOTATIONS= "
                               f"for separate folders) pointing at an existing labelImg dataset.")
    return Path(images), Path(annotations)


def _xml_filename(xml_path: Path) -> str | None:
    """The <filename> a VOC file names, or None if it cannot be read."""
    try:
        return voc.parse(xml_path).filename
    except voc.VocError:
        return None


def pair_files(images: Path, annotations: Path):
    """[(image, xml or None)] and the XML files with no image.

    labelImg pairs by stem (x.jpg <-> x.xml); a VOC file whose stem differs is matched by the
    <filename> it names.
    """
    image_files = sorted(p for p in images.iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    xml_files = sorted(p for p in annotations.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    by_stem = {p.stem: p for p in xml_files}
    by_name = {p.name.lower(): p for p in image_files}
    paired: dict[Path, Path] = {}
    used = set()
    for image in image_files:
        xml = by_stem.get(image.stem)
        if xml is not None and xml not in used:  # x.jpg and x.png: the first takes x.xml
            paired[image] = xml
            used.add(xml)
    orphans = []
    for xml in xml_files:
        if xml in used:
            continue
        name = _xml_filename(xml)
        image = by_name.get(Path(name).name.lower()) if name else None
        if image is not None and image not in paired:
            paired[image] = xml
        else:
            orphans.append(xml)
    return [(image, paired.get(image)) for image in image_files], orphans


def _free_name(path: Path, taken_stems: set[str]) -> Path:
    """path, or path with -1, -2 ... before the suffix, whose stem no other image uses."""
    candidate, n = path, 0
    while candidate.stem in taken_stems or candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _safe_name(name: str) -> str:
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._") or "image"
    return stem + suffix


def import_folder(dataset: Dataset, src: Path | str, images: Path | str | None = None,
                  annotations: Path | str | None = None, progress: bool = True) -> ImportResult:
    src = Path(src).resolve()
    image_dir, xml_dir = locate(src, Path(images).resolve() if images else None,
                                Path(annotations).resolve() if annotations else None)
    dataset.ensure()
    result = ImportResult()
    records = manifest.read_records(dataset)
    imported = {(r.get("source_path"), r.get("sha256")) for r in records if r.get("event") == manifest.ADDED}
    # image stems, not names: labelImg pairs x.jpg and x.png with the same x.xml; a quarantined
    # image keeps its stem reserved too
    taken = {Path(name).stem for name in [p.name for p in dataset.image_files()] + [r["file"] for r in records]}
    pairs, result.orphan_xml = pair_files(image_dir, xml_dir)
    result.orphan_xml = [str(p) for p in result.orphan_xml]
    classes_seen: list[str] = []

    for image, xml in tqdm(pairs, desc="import", unit="img", disable=not progress):
        sha = manifest.sha256_file(image)
        if (str(image), sha) in imported:
            result.already_imported += 1
            continue
        try:
            info = inspect(image)
        except NotAnImage as why:
            result.rejected.append((str(image), f"not a readable image: {why}"))
            continue
        target = _free_name(dataset.images / _safe_name(image.name), taken)
        taken.add(target.stem)
        atomic.copy_file(image, target)
        record = {"file": target.name, "event": manifest.ADDED, "sha256": sha, "width": info.width,
                  "height": info.height, "origin": "import", "source_path": str(image)}
        if xml is not None:
            record["source_annotation"] = str(xml)
            destination = dataset.annotation_for(target)
            if destination.exists():
                result.annotations_kept.append(str(destination))
            else:
                try:
                    data = voc.rewrite_location(xml, dataset.images.name, target.name, str(target))
                    classes_seen += [o.name for o in voc.parse(xml).objects]
                except (voc.VocError, etree.XMLSyntaxError):
                    data = xml.read_bytes()  # keep the curator's file; validate names its problem
                    result.unparsable_xml.append(str(xml))
                atomic.write_bytes(destination, data)
                result.annotations_added += 1
        manifest.append(dataset, record)
        result.images_added += 1

    result.classes_found = list(dict.fromkeys(classes_seen))
    if result.classes_found and not dataset.classes_file.exists():
        dataset.write_classes(result.classes_found)
        result.classes_written = True
    return result


def main(argv=None) -> int:
    p = parser("Import an existing labelImg dataset (images + Pascal VOC) into DATA.")
    p.add_argument("--src", help="the folder to import: flat (images and XML together) or with "
                                 "images/ and annotations/ inside")
    p.add_argument("--images", help="the image folder, when it is not inside SRC")
    p.add_argument("--annotations", help="the VOC folder, when it is not inside SRC")
    args = p.parse_args(argv)
    if not (args.src or args.images):
        raise MasksetError("nothing to import: pass SRC=<folder> (e.g. make import SRC=../shared/data/seed-voc)")
    dataset = dataset_from(args)
    with dataset.lock("import"):
        result = import_folder(dataset, args.src or args.images, args.images, args.annotations)
    for source, why in result.rejected:
        print(f"rejected: {source}: {why}")
    for xml in result.unparsable_xml:
        print(f"warning: {xml}: not valid VOC XML; copied as it was, `make validate` shows the problem")
    for xml in result.orphan_xml:
        print(f"warning: {xml}: no image for this VOC file in the source; not imported")
    for kept in result.annotations_kept:
        print(f"kept: {kept} exists already and was not overwritten")
    if result.classes_written:
        print(f"classes.txt written: {', '.join(result.classes_found)}")
    else:
        unknown = [c for c in result.classes_found if c not in dataset.classes()]
        if unknown:
            print(f"warning: classes {unknown} are not in {dataset.classes_file}; add them there "
                  f"(one per line) or `make validate` will report those boxes")
    print(f"import: {result.summary()} into {dataset.root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
