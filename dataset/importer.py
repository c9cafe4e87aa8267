"""`make import SRC=...`: bring another dataset in, all or nothing, safe to kill.

A source (a labelImg/VOC folder here; COCO, YOLO and keras-retinanet CSV in dataset/formats/)
is read into SourceItems. Everything is checked before anything is copied: every image read once
(its header, size and every coded byte: images.inspect), every class known (or
mapped with CLASSES=, or left out with DROP=), every annotation read from another format made
for the image's real size. Then the plan is written to a
journal, images are copied and VOC files written, the folder is synced once, and the manifest
records are appended in one durable write. A run killed at any point is completed by the next
import (recover): an image that landed gets its record, nothing is copied twice.

Images are copied, never moved. LINK=1 hard-links them instead where SRC is on the same file
system (a second name for the same bytes, made in one step, no byte copied: much faster, but a
later in-place write to either file, such as `cp x.jpg DATA/images/`, changes both). A VOC file from a VOC source keeps
everything it holds, with <folder>, <filename> and <path> pointing at the new place. An annotation already in the
dataset is never overwritten. Re-importing the same folder adds nothing but what is new: new
images, and VOC files added to SRC for images imported earlier.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, hashcache, hashing, images, jsonl, manifest, voc
from . import progress as progress_bars
from .errors import MasksetError, UnsafePath
from .faults import point
from .layout import IMAGE_SUFFIXES, MAX_NAME_BYTES, Dataset
from .results import Result

log = logging.getLogger(__name__)

IMAGE_FOLDER_NAMES = ("images", "JPEGImages", "Images", "imgs", "img")
ANNOTATION_FOLDER_NAMES = ("annotations", "Annotations", "xml", "labels", "voc")
JOURNAL = "import.jsonl"
CHECK_BATCH = 16


# -- what a source holds ----------------------------------------------------------------------
@dataclass
class SourceItem:
    image: Path                                  # the image file in the source
    xml: Path | None = None                      # a VOC file carried over as written (VOC sources)
    annotation: voc.VocAnnotation | None = None  # an annotation read from another format
    where: str = ""                              # its record in the source, for messages


@dataclass
class Source:
    format: str
    root: Path
    items: list[SourceItem] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)               # annotations with no image
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, why): links out of SRC ...
    notes: list[str] = field(default_factory=list)                 # what a reader did, said once


@dataclass
class ClassMap:
    """CLASSES="with_mask=mask,without_mask=noMask" renames, DROP="face,other" leaves out."""
    rename: dict[str, str] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, classes: str | None = None, drop: str | None = None) -> "ClassMap":
        rename = {}
        for item in re.split(r"[,\n]", classes or ""):
            if not item.strip():
                continue
            old, sep, new = item.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise MasksetError(f"CLASSES: {item.strip()!r} is not old=new. Example: "
                                   f'CLASSES="with_mask=mask,without_mask=no_mask"')
            if "," in new:
                raise MasksetError(f"CLASSES: {new.strip()!r}: a class name cannot hold a comma.")
            rename[old.strip()] = new.strip()
        dropped = {name.strip() for name in re.split(r"[,\n]", drop or "") if name.strip()}
        both = dropped & set(rename)
        if both:
            raise MasksetError(f"CLASSES and DROP both name {', '.join(sorted(both))}: keep it (CLASSES) "
                               f"or leave it out (DROP), not both.")
        return cls(rename, dropped)

    def __call__(self, name: str) -> str | None:
        """The class a box of `name` gets, or None when it is dropped."""
        return None if name in self.drop else self.rename.get(name, name)

    def is_identity(self) -> bool:
        return not self.rename and not self.drop


# -- reading a VOC (labelImg) folder ------------------------------------------------------------
def locate(src: Path, images_dir: Path | None = None, annotations_dir: Path | None = None) -> tuple[Path, Path]:
    """The image folder and the annotation folder of a labelImg dataset (flat or split)."""
    src = Path(src)
    if images_dir is None:
        images_dir = next((src / n for n in IMAGE_FOLDER_NAMES if (src / n).is_dir()), src)
    if annotations_dir is None:
        annotations_dir = next((src / n for n in ANNOTATION_FOLDER_NAMES if (src / n).is_dir()), images_dir)
    for folder, what in ((images_dir, "image"), (annotations_dir, "annotation")):
        if not Path(folder).is_dir():
            raise MasksetError(f"{folder}: no such {what} folder. Pass SRC= (and IMAGES=/ANNOTATIONS= "
                               f"for separate folders) pointing at an existing dataset.")
    return Path(images_dir), Path(annotations_dir)


def _below(folder: Path):
    """Every file below folder (hidden folders and links to folders not entered)."""
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield from (Path(top) / name for name in files)


def safe_files(folder: Path, roots: list[Path], suffixes, skipped: list, recursive: bool = False) -> list[Path]:
    """Regular files in folder (and below it, if recursive) with one of the suffixes, sorted.
    A symbolic link is followed only when its target stays inside one of `roots` (the source's
    folders); anything else (a link out of SRC, a FIFO, a device) is listed in `skipped`, never
    read."""
    found = []
    resolved_roots = [Path(r).resolve() for r in roots]
    for path in sorted(_below(folder) if recursive else folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if path.is_symlink():
            target = path.resolve()
            if not any(target.is_relative_to(r) for r in resolved_roots):
                skipped.append((str(path), f"a symbolic link to {target}, outside SRC: not read"))
                continue
        if not path.is_file():
            skipped.append((str(path), "not a regular file: not read"))
            continue
        found.append(path)
    return found


def _xml_filename(xml_path: Path) -> str | None:
    try:
        return voc.parse(xml_path).filename
    except voc.VocError:
        return None


def read_voc_folder(src: Path, images_dir: Path | None = None, annotations_dir: Path | None = None) -> Source:
    """A labelImg dataset: images paired with VOC files by stem, or else by the <filename> a
    VOC file names (labelImg's rule: x.jpg <-> x.xml)."""
    images_dir, xml_dir = locate(src, images_dir, annotations_dir)
    source = Source("voc", Path(src))
    roots = [Path(src), images_dir, xml_dir]
    image_files = safe_files(images_dir, roots, IMAGE_SUFFIXES, source.skipped)
    xml_files = safe_files(xml_dir, roots, (".xml",), source.skipped)
    by_stem = {p.stem: p for p in xml_files}
    by_name = {p.name.lower(): p for p in image_files}
    paired: dict[Path, Path] = {}
    used = set()
    for image in image_files:
        xml = by_stem.get(image.stem)
        if xml is not None and xml not in used:  # x.jpg and x.png: the first takes x.xml
            paired[image] = xml
            used.add(xml)
    for xml in xml_files:
        if xml in used:
            continue
        name = _xml_filename(xml)
        image = by_name.get(Path(name).name.lower()) if name else None
        if image is not None and image not in paired:
            paired[image] = xml
        else:
            source.orphans.append(str(xml))
    source.items = [SourceItem(image, paired.get(image)) for image in image_files]
    return source


# -- the plan -----------------------------------------------------------------------------------
@dataclass
class Planned:
    record: dict                     # the manifest record (None-free)
    source: Path
    annotation: bytes | None = None  # the VOC file to write beside it
    image_is_new: bool = True        # False: only the annotation is new (added to SRC later)
    fingerprint: hashing.Fingerprint | None = None  # from the check's decode: seeds dedupe's cache


@dataclass
class ImportResult(Result):
    format: str = "voc"
    source: str = ""
    images_added: int = 0
    images_linked: int = 0                                        # of those, hard links (no copy)
    annotations_added: int = 0
    already_imported: int = 0
    annotations_kept: list[str] = field(default_factory=list)  # ours existed: never overwritten
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source file, why)
    unparsable_xml: list[str] = field(default_factory=list)       # copied as they were
    orphan_xml: list[str] = field(default_factory=list)           # no image in the source
    skipped: list[tuple[str, str]] = field(default_factory=list)  # links out of SRC ...
    classes_found: list[str] = field(default_factory=list)
    classes_written: bool = False
    boxes: Counter = field(default_factory=Counter)               # per class, as imported
    dropped: Counter = field(default_factory=Counter)             # boxes left out by DROP=
    renamed: dict = field(default_factory=dict)
    recovered: int = 0                                            # finished for a killed import
    notes: list[str] = field(default_factory=list)                # from the format's reader

    def summary_line(self) -> str:
        parts = [f"{self.images_added} images and {self.annotations_added} annotations imported",
                 f"{self.already_imported} already there"]
        if self.images_linked:
            parts.append(f"{self.images_linked} images hard-linked (no bytes copied)")
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected")
        if self.annotations_kept:
            parts.append(f"{len(self.annotations_kept)} existing annotations kept")
        if self.orphan_xml:
            parts.append(f"{len(self.orphan_xml)} annotations without image skipped")
        if self.dropped:
            parts.append(f"{sum(self.dropped.values())} boxes dropped ("
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) + ")")
        if self.recovered:
            parts.append(f"{self.recovered} finished for an interrupted import")
        return ", ".join(parts)

    def summary(self) -> str:
        lines = [f"rejected: {source}: {why}" for source, why in self.rejected]
        lines += [f"warning: {xml}: not valid VOC XML; copied as it was, `make validate` shows the problem"
                  for xml in self.unparsable_xml]
        lines += [f"warning: {xml}: no image for this annotation in the source; not imported"
                  for xml in self.orphan_xml]
        lines += [f"skipped: {path}: {why}" for path, why in self.skipped]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"kept: {kept} exists already and was not overwritten" for kept in self.annotations_kept]
        if self.classes_written:
            lines.append(f"classes.txt written: {', '.join(self.classes_found)}")
        if self.renamed:
            lines.append("classes renamed: " + ", ".join(f"{a} -> {b}" for a, b in self.renamed.items()))
        lines.append(f"import: {self.summary_line()} from {self.source} ({self.format})")
        return "\n".join(lines)


def _safe_name(name: str) -> str:
    """A file name fit for images/: no path parts, no odd characters, short enough for its VOC
    file and temp files to fit beside it."""
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._") or "image"
    stem = stem.encode("utf-8")[:MAX_NAME_BYTES - 16].decode("utf-8", "ignore").rstrip("._") or "image"
    return stem + suffix


def _free_name(name: str, taken_stems: set[str], present: set[str]) -> str:
    """name, or with -1, -2 ... before the suffix, whose stem no other image uses and that no
    file in the folder (`present`: its listing) has."""
    stem, suffix = os.path.splitext(name)
    candidate, candidate_stem, n = name, stem, 0
    while candidate_stem in taken_stems or candidate in present:
        n += 1
        candidate_stem = f"{stem}-{n}"
        candidate = candidate_stem + suffix
    return candidate


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _check_image(path: Path) -> tuple[str, images.ImageInfo | None, str, hashing.Fingerprint | None]:
    """(sha256, ImageInfo or None, why not, Fingerprint or None) of a source image, from one read
    of its bytes and one decode. The ImageInfo also carries the file's byte size and mtime: the
    copy keeps both, so validate knows the facts are the file's while it is unchanged. The
    fingerprint (dedupe's hashes, from the same pixels) goes to the hash cache once it landed."""
    try:
        with open(path, "rb", buffering=0) as handle:
            stat = os.fstat(handle.fileno())
            data = handle.readall()
    except OSError as error:
        return "", None, f"cannot read: {error.strerror or error}", None
    sha = hashlib.sha256(data).hexdigest()
    try:
        info, fingerprint = hashing.inspect_and_fingerprint(data)  # decoded once in its life
        info.file = (len(data), stat.st_mtime_ns)
    except images.NotAnImage as why:
        return sha, None, f"not a readable image: {why}", None
    return sha, info, "", fingerprint


def _check_batch(task) -> tuple[int, list]:
    """_check_image for a batch (start, paths), in the worker pool: decoding and fingerprinting
    hold the GIL in part, so forked processes where it is safe (hashcache.run_tasks)."""
    start, paths = task
    return start, [_check_image(path) for path in paths]


def _check_size(item: SourceItem, info: images.ImageInfo) -> None:
    """An annotation read from another format must be for the image as it is: its boxes are in
    that image's pixels. Raised before anything is copied."""
    ann = item.annotation
    if ann is None or (ann.width, ann.height) == (info.width, info.height):
        return
    raise MasksetError(
        f"{item.where or item.image}: says the image is {ann.width}x{ann.height}, but {item.image} is "
        f"{info.width}x{info.height}. Nothing was imported. Correct the size there (the boxes must be "
        f"in the real image's pixels), or replace the image with the one that was annotated.")


def _mapped_xml(xml: Path, class_map: ClassMap, folder: str, name: str, image_path: str) -> bytes:
    """The VOC file for its new place: location rewritten, classes renamed or dropped."""
    def change(root):
        for tag, value in (("folder", folder), ("filename", name), ("path", image_path)):
            voc.set_text(root, tag, value)
        for node in root.findall("object"):
            old = (node.findtext("name") or "").strip()
            new = class_map(old)
            if new is None:
                root.remove(node)
            elif new != old:
                voc.set_text(node, "name", new)
    return voc.edited(xml, change)


def _class_counts(item: SourceItem) -> Counter | None:
    """Boxes per class in the item's annotation, None when it cannot be read."""
    if item.annotation is not None:
        return Counter(o.name for o in item.annotation.objects)
    if item.xml is None:
        return Counter()
    try:
        return Counter(o.name for o in voc.parse(item.xml).objects)
    except voc.VocError:
        return None


def check_classes(dataset: Dataset, counts: Counter, class_map: ClassMap) -> None:
    """Every class in the source is in classes.txt, renamed to one, or dropped; else stop before
    anything is copied, naming each class with its box count and the CLASSES= line that fixes it."""
    if not dataset.classes_file.exists():
        return  # classes.txt will be written from what is imported
    known = dataset.classes()
    unknown = {name: n for name, n in counts.items()
               if class_map(name) is not None and class_map(name) not in known}
    if not unknown:
        return
    listing = "; ".join(f"{name!r} ({n} boxes)" for name, n in sorted(unknown.items()))
    guess = ",".join(f"{name}={_closest(name, known)}" for name in sorted(unknown))
    raise MasksetError(
        f"{dataset.classes_file}: the source's classes {listing} are not in it "
        f"({', '.join(known)}). Nothing was imported. Map them on the way in, e.g. "
        f'CLASSES="{guess}", leave them out with DROP={",".join(sorted(unknown))}, or add them to '
        f"classes.txt.")


def _closest(name: str, known: list[str]) -> str:
    """The known class a source class most likely means (for the suggested CLASSES= line)."""
    plain = re.sub(r"[^a-z]", "", name.lower())
    negative = any(word in plain for word in ("without", "no", "not", "none", "incorrect"))
    scored = sorted(known, key=lambda k: (
        -(negative == any(w in re.sub(r"[^a-z]", "", k.lower()) for w in ("without", "no", "not"))),
        -len(os.path.commonprefix([plain, re.sub(r"[^a-z]", "", k.lower())]))))
    return scored[0] if scored else name


def plan_import(dataset: Dataset, source: Source, class_map: ClassMap, result: ImportResult,
                progress: bool = True) -> tuple[list[Planned], list[str]]:
    """What the import will do (nothing written yet): the planned entries, and the classes.txt
    to write (empty when it exists). Raises before anything is copied on an unknown class."""
    records = manifest.read_records(dataset)
    imported = {(r.get("source_path"), r.get("sha256")): r["file"]
                for r in records if r.get("event") == manifest.ADDED}
    # image stems, not names: labelImg pairs x.jpg and x.png with the same x.xml; a quarantined
    # image keeps its stem reserved too
    taken = {Path(name).stem for name in [p.name for p in dataset.image_files()] + [r["file"] for r in records]}

    counts: Counter = Counter()
    item_counts = []
    for item in source.items:
        found = _class_counts(item)
        item_counts.append(found)
        counts.update(found or {})
    check_classes(dataset, counts, class_map)
    for name, n in counts.items():
        target = class_map(name)
        if target is None:
            result.dropped[name] += n
        else:
            result.boxes[target] += n
            if target != name:
                result.renamed[name] = target
    result.classes_found = list(dict.fromkeys(class_map(n) for n in counts if class_map(n) is not None))
    classes_to_write = result.classes_found if not dataset.classes_file.exists() else []
    # classes are known to be fine: now read, check and fingerprint every image once, on every
    # core, in batches (a task per image costs more than a check)
    batches = [(start, [item.image for item in source.items[start:start + CHECK_BATCH]])
               for start in range(0, len(source.items), CHECK_BATCH)]
    checked: list = [None] * len(source.items)
    for start, results in hashcache.run_tasks(_check_batch, batches, progress, "checking",
                                              [len(paths) for _, paths in batches]):
        checked[start:start + len(results)] = results

    for item, (_sha, info, _why, _fingerprint) in zip(source.items, checked):
        if info is not None:
            _check_size(item, info)
    present_images, present_xml = _listing(dataset.images), _listing(dataset.annotations)
    source_root, mapped = str(source.root), not class_map.is_identity()
    planned: list[Planned] = []
    for item, (sha, info, why, fingerprint), found in zip(source.items, checked, item_counts):
        earlier = imported.get((str(item.image), sha))
        if earlier is not None:
            result.already_imported += 1
            destination = dataset.annotation_for(earlier)
            has_annotation = item.xml is not None or item.annotation is not None
            if has_annotation and not destination.exists() and (dataset.images / earlier).exists():
                data = _annotation_bytes(dataset, item, class_map, earlier, result)
                planned.append(Planned({"file": earlier, "event": "annotation-added",
                                        "source_annotation": item.where or str(item.xml or item.image)},
                                       item.image, data, image_is_new=False))
            continue
        if info is None:
            result.rejected.append((str(item.image), why))
            continue
        target = _free_name(_safe_name(item.image.name), taken, present_images)
        target_stem = os.path.splitext(target)[0]
        taken.add(target_stem)
        record = {"file": target, "event": manifest.ADDED, "sha256": sha, "width": info.width,
                  "height": info.height, "format": info.format, "origin": "import",
                  "source_path": str(item.image), "import_format": source.format,
                  "import_source": source_root}
        if info.orientation not in (0, 1):
            record["exif_orientation"] = info.orientation
        record["bytes"], record["mtime_ns"] = info.file  # the copy keeps both (copy_file's copystat)
        if mapped:
            record["class_map"] = {"rename": class_map.rename, "drop": sorted(class_map.drop)}
        data = None
        if item.xml is not None or item.annotation is not None:
            record["source_annotation"] = item.where or str(item.xml or item.image)
            if target_stem + ".xml" in present_xml:
                result.annotations_kept.append(str(dataset.annotation_for(target)))
            else:
                data = _annotation_bytes(dataset, item, class_map, target, result)
        planned.append(Planned(record, item.image, data, fingerprint=fingerprint))
    return planned, classes_to_write


def _annotation_bytes(dataset: Dataset, item: SourceItem, class_map: ClassMap, name: str,
                      result: ImportResult) -> bytes:
    image_path = os.path.join(dataset.images, name)
    if item.annotation is not None:
        ann = item.annotation
        objects = [o for o in ann.objects if class_map(o.name) is not None]
        for obj in objects:
            obj.name = class_map(obj.name)
        return voc.to_xml(voc.VocAnnotation(filename=name, width=ann.width, height=ann.height,
                                            depth=ann.depth, objects=objects, folder=dataset.images.name,
                                            path=image_path, verified=ann.verified))
    try:
        return _mapped_xml(item.xml, class_map, dataset.images.name, name, image_path)
    except voc.VocError:
        result.unparsable_xml.append(str(item.xml))
        return item.xml.read_bytes()  # keep the curator's file; validate names its problem


# -- carrying it out, crash-safe ---------------------------------------------------------------
def _journal(dataset: Dataset) -> Path:
    return dataset.journal / JOURNAL


def _write_annotation(dataset: Dataset, name: str, data: bytes, durable: bool) -> bool:
    try:
        atomic.write_bytes(os.path.join(dataset.annotations, os.path.splitext(name)[0] + ".xml"), data,
                           exclusive=True, durable=durable)
        return True
    except FileExistsError:
        return False  # a person's file appeared meanwhile: it wins


def recover(dataset: Dataset) -> int:
    """Finish an import that was killed: each journaled image that landed whole gets its
    annotation (if still missing) and its manifest record; the rest is dropped. Returns how
    many were finished."""
    path = _journal(dataset)
    if not path.exists():
        return 0
    entries = jsonl.read(path, strict=False).records
    recorded = {r["file"] for r in manifest.read_records(dataset) if r.get("event") == manifest.ADDED}
    finished = []
    for entry in entries:
        record = entry.get("record") or {}
        name = record.get("file")
        if not isinstance(name, str) or (record.get("event") == manifest.ADDED and name in recorded):
            continue
        image = dataset.inside(Path("images") / name, "journaled image")
        if not image.is_file() or (record.get("sha256") and manifest.sha256_file(image) != record["sha256"]):
            continue  # never copied whole: the next import copies it again
        if entry.get("annotation") is not None and not dataset.annotation_for(name).exists():
            _write_annotation(dataset, name, entry["annotation"].encode("utf-8"), durable=True)
        finished.append(record)
    manifest.append_many(dataset, finished)
    for leftover in dataset.images.glob(".*.tmp*"):
        if atomic.temp_target(leftover.name) is not None:
            leftover.unlink()  # a copy the kill interrupted: only ever a temp file of ours
    path.unlink()
    return len(finished)


def carry_out(dataset: Dataset, planned: list[Planned], classes_to_write: list[str],
              result: ImportResult, progress: bool = True, link: bool = False) -> None:
    dataset.ensure()
    # the journal first, in one durable write: recovery knows what was meant
    atomic.write_text(_journal(dataset), "".join(jsonl.dumps(
        {"record": p.record, "annotation": p.annotation.decode("utf-8", "replace") if p.annotation else None})
        + "\n" for p in planned))
    if classes_to_write:
        dataset.write_classes(classes_to_write)
        result.classes_written = True
    folder = str(dataset.images)
    # one thread: several threads making files in one folder wait on its lock (measured: 2-3x the
    # CPU for no gain in wall time)
    for item in progress_bars.bar(planned, desc="import", enabled=progress):
        name = item.record["file"]
        if item.image_is_new:
            target = os.path.join(folder, name)
            if link:
                result.images_linked += atomic.link_or_copy(item.source, target, durable=False)
            else:
                atomic.copy_file(item.source, target, durable=False)
            result.images_added += 1
        if item.annotation is not None:
            if _write_annotation(dataset, name, item.annotation, durable=False):
                result.annotations_added += 1
            else:
                result.annotations_kept.append(str(dataset.annotation_for(name)))
    atomic.sync_tree(dataset.root)  # one sync for every file, before any record names them
    manifest.append_many(dataset, [p.record for p in planned])
    _journal(dataset).unlink()
    point("import journal removed")
    # derived data, after the import is whole: dedupe hashes from the decode made above
    hashcache.remember(dataset, {p.record["file"]: (p.fingerprint, p.record["sha256"], p.record["bytes"],
                                                    p.record["mtime_ns"])
                                 for p in planned if p.image_is_new and p.fingerprint is not None})


def check_source(src: Path | str, data: Path | str) -> Path:
    """SRC must exist and must not be the dataset or inside it (that would import the dataset
    into itself, or its quarantined duplicates back)."""
    src_path = Path(src).expanduser()
    if not src_path.exists():
        raise MasksetError(f"SRC={src}: no such file or folder. Point SRC= at the dataset to import.")
    resolved, root = src_path.resolve(), Path(data).resolve()
    if resolved == root or resolved.is_relative_to(root):
        raise UnsafePath(f"SRC={src} is inside DATA={data}: importing a dataset into itself would copy "
                         f"its own images (or its quarantine) again. Point SRC= at another folder.")
    return src_path


def import_source(dataset: Dataset, source: Source, class_map: ClassMap | None = None,
                  progress: bool = True, link: bool = False) -> ImportResult:
    """Import a read source into dataset (the caller holds the lock)."""
    class_map = class_map or ClassMap()
    result = ImportResult(format=source.format, source=str(source.root), orphan_xml=list(source.orphans),
                          skipped=list(source.skipped), notes=list(source.notes))
    if dataset.root.exists():
        result.recovered = recover(dataset)
    planned, classes_to_write = plan_import(dataset, source, class_map, result, progress)
    if planned or classes_to_write:
        carry_out(dataset, planned, classes_to_write, result, progress, link)
    return result


def import_folder(dataset: Dataset, src: Path | str, images: Path | str | None = None,
                  annotations: Path | str | None = None, progress: bool = True,
                  class_map: ClassMap | None = None, link: bool = False) -> ImportResult:
    """Import a labelImg (VOC) folder."""
    src = check_source(src, dataset.root)
    source = read_voc_folder(Path(src), Path(images) if images else None,
                             Path(annotations) if annotations else None)
    return import_source(dataset, source, class_map, progress, link)
