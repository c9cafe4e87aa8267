"""`make leakcheck OTHER=<folder | CSV | COCO json> [PART=train|val|test|all]`: near duplicates
between this dataset (or one part of its split) and any other image set.

A model's figures on a public benchmark mean little if copies of the benchmark's images are in
its training data; a dataset's test part means little if it holds copies of another set the model
trained on. This stage finds those copies with the same finder as `make dedupe` and `make split`
(same bytes, pHash and dHash within its thresholds, a crop or small rotation confirmed by
geometric verification, and a mirror image unless FLIP=0), writes export/leakcheck.html (each pair
side by side) and export/leakcheck.json, and exits 1 when any pair is found.

OTHER is a folder (searched recursively), a CSV whose first column names images (keras-retinanet's
format: paths relative to the CSV's folder), or a COCO annotation file (`images[].file_name`,
looked up beside the file, in its parent's images/ or <set>/ folder, or in OTHER_IMAGES=).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, hashcache, hashing, html, images, neighbours, voc
from .errors import MasksetError
from .layout import IMAGE_SUFFIXES, Dataset
from .results import Result
from .split import DEFAULT_FLIP, PARTS, find_duplicates, read_record

log = logging.getLogger(__name__)

MAX_SHOWN = 300        # pairs drawn on the page; all of them are in leakcheck.json
THUMB = 260
OURS, THEIRS = "ours:", "other:"


@dataclass
class LeakResult(Result):
    other: str
    kind: str                               # folder | csv | coco
    part: str                               # all | train | val | test
    checked: int                            # our images compared
    other_images: int                       # their images compared
    pairs: list[dict] = field(default_factory=list)   # {"image", "part", "other", "distance", "exact"}
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # their files that would not decode
    threshold: int = neighbours.DEFAULT_THRESHOLD
    dhash_threshold: int = neighbours.DEFAULT_DHASH_THRESHOLD
    seconds: float = 0.0
    written: list[str] = field(default_factory=list)
    flip: bool = DEFAULT_FLIP

    @property
    def exit_code(self) -> int:
        return 1 if self.pairs else 0

    def summary(self) -> str:
        lines = [f"warning: {path}: not a readable image ({why}); not compared" for path, why in self.unreadable[:10]]
        if len(self.unreadable) > 10:
            lines.append(f"warning: ... and {len(self.unreadable) - 10} more unreadable files (in leakcheck.json)")
        for pair in self.pairs[:20]:
            how = "same bytes" if pair["exact"] else f"pHash distance {pair['distance']}"
            lines.append(f"pair: images/{pair['image']} ({pair['part']}) ~ {pair['other']} ({how})")
        if len(self.pairs) > 20:
            lines.append(f"... and {len(self.pairs) - 20} more pairs (all in leakcheck.json)")
        ours = sorted({p["image"] for p in self.pairs})
        verdict = (f"{len(self.pairs)} near-duplicate pairs ({sum(p['exact'] for p in self.pairs)} exact) "
                   f"involving {len(ours)} of our images" if self.pairs else "no near duplicates")
        lines.append(f"leakcheck: {self.checked} images of this dataset ({self.part}) against {self.other_images} "
                     f"images of {self.other} ({self.kind}): {verdict}")
        if self.written:
            lines.append(f"wrote {', '.join(self.written)}")
        return "\n".join(lines)


# -- the other image set ---------------------------------------------------------------------------
def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def folder_images(folder: Path) -> list[Path]:
    """Every image file under folder (hidden files and folders skipped); a link is followed only
    when it stays inside folder, as import reads SRC."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and _inside(Path(current) / d, folder))
        for name in sorted(files):
            path = Path(current) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if (path.is_symlink() and not _inside(path, folder)) or not path.is_file():
                continue
            found.append(path)
    return found


def csv_images(csv_path: Path) -> list[Path]:
    """The images a CSV names in its first column (relative to the CSV's folder, or absolute)."""
    found: dict[Path, None] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or not row[0].strip():
                continue
            path = Path(row[0].strip())
            path = Path(os.path.normpath(path if path.is_absolute() else csv_path.parent / path))
            if not path.is_file():
                if number == 1 and path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue  # a header line
                raise MasksetError(f"{csv_path}:{number}: image {row[0]} does not exist (paths are relative to "
                                   f"the CSV's folder). Correct the path, or point OTHER= at the image folder.")
            found.setdefault(path)
    return list(found)


def coco_images(json_path: Path, image_folder: Path | None = None) -> list[Path]:
    """The images a COCO annotation file lists, found in image_folder (OTHER_IMAGES=) or beside it."""
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        names = [str(entry["file_name"]) for entry in data["images"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MasksetError(f"{json_path}: not a COCO annotation file ({type(error).__name__}: {error}); it must "
                           f"hold \"images\": [{{\"file_name\": ...}}, ...]. Point OTHER= at a COCO json, a CSV or "
                           f"a folder of images.") from None
    if not names:
        raise MasksetError(f"{json_path}: lists no images.")
    stem = json_path.stem.split("_")[-1]  # instances_val2017.json -> val2017
    candidates = [image_folder] if image_folder else [
        json_path.parent, json_path.parent.parent / "images", json_path.parent.parent / stem,
        json_path.parent / "images", json_path.parent / stem, json_path.parent.parent]
    for folder in candidates:
        if folder is not None and (Path(folder) / names[0]).is_file():
            missing = [n for n in names if not (Path(folder) / n).is_file()]
            if missing:
                raise MasksetError(f"{json_path}: {len(missing)} of its images are not in {folder} (first: "
                                   f"{missing[0]}). Put them there, or pass OTHER_IMAGES=<their folder>.")
            return [Path(folder) / n for n in names]
    where = str(image_folder) if image_folder else ", ".join(str(c) for c in candidates)
    raise MasksetError(f"{json_path}: cannot find its images (first: {names[0]}) in {where}. Pass "
                       f"OTHER_IMAGES=<the folder holding them>.")


def other_images(other: Path | str, image_folder: Path | str | None = None) -> tuple[str, list[Path]]:
    """(kind, image files) of OTHER: a folder, a CSV or a COCO json."""
    path = Path(other).expanduser()
    if not path.exists():
        raise MasksetError(f"OTHER={other}: no such file or folder. Point it at a folder of images, a CSV "
                           f"(path,... per line) or a COCO annotation file (.json).")
    if path.is_dir():
        kind, found = "folder", folder_images(path)
    elif path.suffix.lower() == ".csv":
        kind, found = "csv", csv_images(path)
    elif path.suffix.lower() == ".json":
        kind, found = "coco", coco_images(path, Path(image_folder).expanduser() if image_folder else None)
    else:
        raise MasksetError(f"OTHER={other}: expected a folder, a .csv or a COCO .json file.")
    if not found:
        raise MasksetError(f"OTHER={other}: no images in it ({', '.join(IMAGE_SUFFIXES)}).")
    return kind, found


def _hash_theirs(paths: list[Path], progress: bool):
    """{path: (Fingerprint, sha256)} and the files that would not decode: a broken file in
    another set is noted, not fatal."""
    try:
        return hashcache.hash_records(paths, progress), []
    except MasksetError:
        pass  # one of them is unreadable: hash one by one to find out which
    records, unreadable = {}, []

    def one(path):
        try:
            return path, hashing.hash_file(path), None
        except (MasksetError, OSError) as error:
            return path, None, str(error).split(": ", 1)[-1]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for path, record, why in pool.map(one, paths):
            if record is None:
                unreadable.append((str(path), why))
            else:
                records[path] = record
    return records, unreadable


# -- the check -------------------------------------------------------------------------------------
def our_images(dataset: Dataset, part: str) -> tuple[list[str], dict[str, str]]:
    """(image names, their parts) of PART: every image in images/ for all, else the split's part."""
    present = [p.name for p in dataset.image_files()]
    record = read_record(dataset)
    parts = dict(record["parts"]) if record else {}
    if part == "all":
        return present, {n: parts.get(n, "-") for n in present}
    if part not in PARTS:
        raise MasksetError(f"PART={part}: use train, val, test or all.")
    if record is None:
        raise MasksetError(f"PART={part}: {dataset.export / 'split.json'} does not exist: there are no parts "
                           f"yet. Run `make split` first, or check the whole dataset with PART=all.")
    chosen = [n for n in present if parts.get(n) == part]
    if not chosen:
        raise MasksetError(f"PART={part}: the split has no {part} images"
                           + (" (TEST=0: make split TEST=0.1 RESPLIT=test makes one)" if part == "test" else "")
                           + ". Pick another PART=, or PART=all.")
    return chosen, {n: part for n in chosen}


def leakcheck(dataset: Dataset, other: Path | str, part: str = "all", threshold: int | None = None,
              dhash_threshold: int | None = None, other_folder: Path | str | None = None,
              flip: bool | None = None, progress: bool = True) -> LeakResult:
    """Find the pairs (nothing written but the hash cache)."""
    started = time.monotonic()
    threshold = neighbours.DEFAULT_THRESHOLD if threshold is None else threshold
    dhash_threshold = neighbours.DEFAULT_DHASH_THRESHOLD if dhash_threshold is None else dhash_threshold
    neighbours.check_thresholds(threshold, dhash_threshold)
    names, parts = our_images(dataset, part)
    kind, theirs = other_images(other, other_folder)
    ours = hashcache.image_records(dataset, files=names, progress=progress)
    their_records, unreadable = _hash_theirs(theirs, progress)
    fingerprints = {OURS + n: fp for n, (fp, _) in ours.items()}
    digests = {OURS + n: sha for n, (_, sha) in ours.items()}
    for path, (fp, sha) in their_records.items():
        fingerprints[THEIRS + str(path)] = fp
        digests[THEIRS + str(path)] = sha
    paths = {OURS + n: dataset.images / n for n in ours}
    paths.update({THEIRS + str(path): path for path in their_records})
    duplicates = find_duplicates(fingerprints, threshold, dhash_threshold, DEFAULT_FLIP if flip is None else flip,
                                 progress, paths, digests)
    # Pairs of one of ours and one of theirs in one duplicate group (pairs within either set are
    # dedupe's business). A group, not only the pairs found directly: the finder does not verify
    # a pair already joined through other copies (a crop of ours joined through its rotated
    # copy), and such a pair leaks all the same. distance: the pair's own (a crop's: window to
    # frame) where it was found directly, else the whole frames' pHash bits.
    direct = {}
    for a, b, distance in duplicates.pairs():
        direct[(a, b)] = direct[(b, a)] = distance
    found = []
    for group in duplicates.groups():
        for image in (k for k in group if k.startswith(OURS)):
            for other_key in (k for k in group if k.startswith(THEIRS)):
                distance = direct.get((image, other_key),
                                      neighbours.hamming(fingerprints[image].phash, fingerprints[other_key].phash))
                found.append((image[len(OURS):], other_key[len(THEIRS):], distance))
    pairs = [{"image": image, "part": parts[image], "other": path, "distance": int(distance),
              "exact": digests[OURS + image] == digests[THEIRS + path]} for image, path, distance in found]
    pairs.sort(key=lambda p: (p["distance"], p["image"], p["other"]))
    return LeakResult(str(other), kind, part, len(names), len(their_records), pairs, unreadable,
                      threshold, dhash_threshold, round(time.monotonic() - started, 2),
                      flip=DEFAULT_FLIP if flip is None else flip)


# -- the page --------------------------------------------------------------------------------------
def _our_thumbnail(dataset: Dataset, name: str) -> bytes:
    boxes = []
    xml = dataset.annotation_for(name)
    if xml.exists():
        try:
            ann = voc.parse(xml)
            colours = {}
            for obj in ann.objects:
                colour = colours.setdefault(obj.name, images.COLOURS[len(colours) % len(images.COLOURS)])
                boxes.append((obj.xmin, obj.ymin, obj.xmax, obj.ymax, colour))
        except voc.VocError:
            pass  # an unreadable VOC file is validate's finding; the picture is still shown
    return images.thumbnail(dataset.images / name, THUMB, boxes)


def _thumb(source, alt: str) -> str:
    try:
        return html.jpeg_data(source(), alt)
    except (images.NotAnImage, OSError) as error:
        return html.esc(f"(cannot show: {error})")


def render(dataset: Dataset, result: LeakResult) -> str:
    pairs = result.pairs
    cards = html.cards(html.card(f"our images ({result.part})", result.checked),
                       html.card("their images", result.other_images),
                       html.card("pairs found", len(pairs), "bad" if pairs else "good"),
                       html.card("our images in a pair", len({p["image"] for p in pairs}), "bad" if pairs else "good"))
    note = (f"Compared with the duplicate finder of <code>make dedupe</code>: same bytes, or pHash within "
            f"{result.threshold} bits and dHash within {result.dhash_threshold}, or a crop or small rotation "
            f"confirmed by geometric verification; mirror images "
            f"{'included' if result.flip else 'not included (FLIP=0)'}. Left: this dataset's image "
            f"(its boxes drawn), right: the other set's.")
    if not pairs:
        body = html.section("pairs", "Pairs", "<p>No near duplicates: nothing of the other set is in this "
                                              "dataset's images.</p>", note)
    else:
        blocks = []
        for number, pair in enumerate(pairs[:MAX_SHOWN], 1):
            how = "same bytes" if pair["exact"] else f"pHash distance {pair['distance']}"
            left = html.figure(_thumb(lambda: _our_thumbnail(dataset, pair["image"]), pair["image"]),
                               f"{html.badge(pair['part'], 'info')} <code>images/{html.esc(pair['image'])}</code>",
                               "bad")
            right = html.figure(_thumb(lambda: images.thumbnail(pair["other"], THUMB), pair["other"]),
                                f"<code>{html.esc(pair['other'])}</code>", "other")
            blocks.append(f'<h3 id="p{number}">pair {number}: {how}</h3>' + html.figures([left, right]))
        more = (f"<p>{len(pairs) - MAX_SHOWN} more pairs are listed in leakcheck.json.</p>"
                if len(pairs) > MAX_SHOWN else "")
        body = html.section("pairs", f"{len(pairs)} pairs", html.grid(*blocks) + more, note)
    if result.unreadable:
        body += html.section("unreadable", "Not compared", html.table(
            ["file", "why"], [[path, why] for path, why in result.unreadable], numeric_from=9))
    return html.page("maskset leak check", cards + body,
                     subtitle=f"{dataset.root} ({result.part}) against {result.other}")


def write(dataset: Dataset, result: LeakResult, out: Path | None = None) -> list[str]:
    folder = Path(out) if out else dataset.export
    if out is None and not dataset.writable():
        log.warning("%s: read-only; the leak check's page is not written (pass OUT=<folder>)", dataset.root)
        return []
    page = atomic.write_text(folder / "leakcheck.html", render(dataset, result))
    data = atomic.write_json(folder / "leakcheck.json", result.to_json())
    return [str(page), str(data)]


def run(dataset: Dataset, other: Path | str, part: str = "all", threshold: int | None = None,
        dhash_threshold: int | None = None, other_folder: Path | str | None = None, out: Path | None = None,
        flip: bool | None = None, progress: bool = True) -> LeakResult:
    result = leakcheck(dataset, other, part, threshold, dhash_threshold, other_folder, flip, progress)
    result.written = write(dataset, result, out)
    return result
