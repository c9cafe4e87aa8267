"""COCO detection JSON (`instances*.json`) in and out.

In: SRC is an `instances*.json` file or a folder holding them (or an `annotations/` folder that
does), with the images beside them: in IMAGES= when given, else found by `file_name` in
SRC/images/<part>, SRC/<part>, SRC/images, SRC or the JSON's folder (`<part>` is what follows
`instances_`, e.g. `train2017`). Every JSON file is read; every listed image, every category id
and every bbox is checked before anything is copied. A bbox is [x, y, width, height] in 0-based
float pixels; it becomes a VOC box through dataset/boxes.py. `iscrowd` 1 boxes come in as VOC
`difficult` (both mean: not one countable object). An image listed with no annotations is an
image with no objects.

Out: `export/coco/instances_<part>.json` for each part of the split (`instances_all.json` when
there is none), with the images hard-linked into `export/coco/images/`. Category ids are 1.. in
classes.txt order; a VOC `difficult` or `truncated` flag travels as `"attributes"`, which
other COCO tools ignore and this reader reads back.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from .. import atomic, boxes, manifest, voc
from ..errors import MasksetError
from ..importer import Source, SourceItem
from ..layout import Dataset
from . import common

FIX = "Correct it in the JSON (or export it again from the tool that made it)."


def find(src: Path) -> list[Path]:
    """The COCO files SRC names: itself, or the instances*.json in it or in its annotations/."""
    if src.is_file():
        return [src]
    found = sorted(p for folder in (src, src / "annotations") if folder.is_dir()
                   for p in folder.glob("instances*.json") if p.is_file())
    if not found:
        raise MasksetError(f"SRC={src}: no instances*.json in it or in its annotations/ folder. Point SRC= "
                           f"at the COCO file (SRC=path/to/instances_train.json) or its folder.")
    return found


def _image_folders(src: Path, json_path: Path, images_dir: Path | None) -> list[Path]:
    if images_dir is not None:
        return [images_dir]
    root = src if src.is_dir() else src.parent
    stem = json_path.stem
    part = stem[len("instances_"):] if stem.startswith("instances_") else ""
    bases = [root, json_path.parent] + ([json_path.parent.parent] if json_path.parent != root else [])
    candidates = []
    for base in dict.fromkeys(bases):
        if part:
            candidates += [base / "images" / part, base / part]
        candidates += [base / "images", base]
    return [c for c in dict.fromkeys(candidates) if c.is_dir()]


class _Finder:
    """Finds an image file by its `file_name` in the candidate folders, listing each folder once
    (a 20,000-image COCO file costs one directory read, not 20,000 lookups per folder)."""

    def __init__(self, roots: list[Path]):
        self.roots = roots
        self.listings: dict[Path, dict[str, os.DirEntry]] = {}

    def _listing(self, folder: Path) -> dict[str, os.DirEntry]:
        if folder not in self.listings:
            with os.scandir(folder) as entries:
                self.listings[folder] = {e.name: e for e in entries}
        return self.listings[folder]

    def find(self, file_name: str, folders: list[Path], where: str) -> Path | None:
        name = file_name.replace("\\", "/")
        for folder in folders:
            if "/" not in name:
                entry = self._listing(folder).get(name)
                if entry is None:
                    continue
                path = Path(entry.path)
                if entry.is_symlink():
                    common.inside(path, self.roots, where)
                if entry.is_file():
                    return path
                continue
            path = common.inside(folder / name, self.roots, where)
            if path.is_file():
                return path
        return None


def _checked_list(data: dict, key: str, path: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise MasksetError(f"{path}: \"{key}\" is missing or not a list; a COCO detection file has "
                           f"\"images\", \"annotations\" and \"categories\". Is it a COCO instances file?")
    return value


def _record(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise MasksetError(f"{where}: not a JSON object. {FIX}")
    return value


def _id(record: dict, key: str, where: str):
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MasksetError(f"{where}: \"{key}\" is {value!r}, not an id (a whole number). {FIX}")
    return value


def _categories(path: Path, data: dict) -> dict:
    categories = {}
    for index, category in enumerate(_checked_list(data, "categories", path)):
        where = f"{path}: categories[{index}]"
        category = _record(category, where)
        cid = _id(category, "id", where)
        name = str(category.get("name") or "").strip()
        if not name:
            raise MasksetError(f"{where} (id {cid}): no \"name\". {FIX}")
        if cid in categories:
            raise MasksetError(f"{where}: id {cid} is declared twice ({categories[cid]!r} and {name!r}). "
                               f"Give each category its own id.")
        categories[cid] = name
    return categories


def _images(path: Path, data: dict, folders: list[Path], finder: _Finder, seen: dict) -> dict:
    """id -> (image path, width, height, where) for every image the file lists."""
    listed, first = {}, {}
    for index, image in enumerate(_checked_list(data, "images", path)):
        where = f"{path}: images[{index}]"
        image = _record(image, where)
        iid = _id(image, "id", where)
        if iid in first:
            raise MasksetError(f"{where}: image id {iid} is used twice (images[{first[iid]}] has it too). "
                               f"Image ids must be unique: renumber one of them (and its annotations' "
                               f"image_id). Nothing was imported.")
        first[iid] = index
        where = f"{where} (id {iid})"
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise MasksetError(f"{where}: no \"file_name\". {FIX}")
        found = finder.find(file_name.strip(), folders, where)
        if found is None:
            searched = ", ".join(str(f) for f in folders) or "(no image folder found)"
            raise MasksetError(f"{where}: image {file_name!r} is missing: not in {searched}. Nothing was "
                               f"imported. Put the image there, pass IMAGES=<its folder>, or remove the "
                               f"entry (and its annotations) from the JSON.")
        key = str(found.resolve())
        if key in seen:
            raise MasksetError(f"{where}: {file_name!r} is listed again ({seen[key]}). List each image once.")
        seen[key] = where
        if image.get("width") is None and image.get("height") is None:
            width, height = common.image_size(found, where)
        else:
            width, height = (common.number(image.get(k), f"{where} \"{k}\"", FIX) for k in ("width", "height"))
            if width <= 0 or height <= 0 or not width.is_integer() or not height.is_integer():
                raise MasksetError(f"{where}: width/height {image.get('width')!r}x{image.get('height')!r} is "
                                   f"not an image size in pixels. {FIX}")
        listed[iid] = (found, int(width), int(height), where)
    return listed


def _objects(path: Path, data: dict, listed: dict, categories: dict) -> tuple[dict, int]:
    """image id -> VocObjects, and how many were crowd boxes."""
    objects = defaultdict(list)
    crowd = 0
    for index, ann in enumerate(_checked_list(data, "annotations", path)):
        where = f"{path}: annotations[{index}]"
        ann = _record(ann, where)
        where = f"{where} (id {ann.get('id')})"
        image_id = ann.get("image_id")
        if image_id not in listed:
            raise MasksetError(f"{where}: image_id {image_id!r} is not among the file's images. Add the image "
                               f"to \"images\", or remove the annotation.")
        category_id = ann.get("category_id")
        if category_id not in categories:
            declared = ", ".join(f"{k} ({v})" for k, v in categories.items()) or "none"
            raise MasksetError(f"{where}: category_id {category_id!r} is not declared in \"categories\" "
                               f"(declared: {declared}). Add it to \"categories\", or remove the annotation.")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise MasksetError(f"{where}: bbox {bbox!r} is not [x, y, width, height]. {FIX}")
        x, y, w, h = (common.number(v, f"{where} bbox", FIX) for v in bbox)
        image_path, width, height, _ = listed[image_id]
        if w <= 0 or h <= 0:
            raise MasksetError(f"{where}: bbox {bbox} has no area (width and height must be above 0). {FIX}")
        if boxes.edges_outside(x, y, x + w, y + h, width, height):
            raise MasksetError(f"{where}: bbox {bbox} leaves the {width}x{height} image {image_path.name} "
                               f"(a COCO bbox is [x, y, width, height] in 0-based pixels, inside the image). "
                               f"Correct or remove it; nothing was imported.")
        attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        is_crowd = ann.get("iscrowd") in (1, True)
        crowd += is_crowd
        xmin, ymin, xmax, ymax = boxes.voc_from_coco((x, y, w, h), width, height)
        objects[image_id].append(voc.VocObject(categories[category_id], xmin, ymin, xmax, ymax,
                                               difficult=is_crowd or bool(attributes.get("difficult")),
                                               truncated=bool(attributes.get("truncated"))))
    return objects, crowd


def read(src: Path, images_dir: Path | None = None) -> Source:
    src = Path(src)
    roots = [src if src.is_dir() else src.parent] + ([Path(images_dir)] if images_dir else [])
    source = Source("coco", src)
    finder = _Finder(roots)
    seen: dict[str, str] = {}
    crowd = 0
    for path in find(src):
        data = common.load_json(path)
        if not isinstance(data, dict):
            raise MasksetError(f"{path}: not a JSON object; a COCO file is {{\"images\": [...], "
                               f"\"annotations\": [...], \"categories\": [...]}}.")
        categories = _categories(path, data)
        listed = _images(path, data, _image_folders(src, path, Path(images_dir) if images_dir else None),
                         finder, seen)
        objects, crowded = _objects(path, data, listed, categories)
        crowd += crowded
        for iid, (image, width, height, where) in listed.items():
            annotation = voc.VocAnnotation(filename=image.name, width=width, height=height,
                                           objects=objects.get(iid, []))
            source.items.append(SourceItem(image, annotation=annotation, where=where))
    if crowd:
        source.notes.append(f"{crowd} crowd boxes (iscrowd 1) came in marked difficult: SKIP_DIFFICULT=1 "
                            f"leaves them out of the export, as COCO's evaluation leaves crowds out.")
    return source


def write(dataset: Dataset, annotations: dict, parts: dict[str, list[str]], folder: Path,
          result: common.FormatExport, skip_difficult: bool = False) -> None:
    """instances_<part>.json for each part, images linked into folder/images/."""
    category = {name: number for number, name in enumerate(dataset.classes(), 1)}
    image_id = {name: number for number, name in enumerate(sorted(annotations), 1)}
    annotation_id = 0
    for part, names in parts.items():
        listed, written = [], []
        for name in names:
            # the file itself, not validate's remembered summary of it: the flags travel too
            ann = voc.parse(annotations[name].source)
            objects = common.kept_objects(ann, skip_difficult, result)
            if objects is None:
                continue
            common.place_image(dataset, name, folder / "images" / name)
            listed.append({"id": image_id[name], "file_name": name, "width": ann.width, "height": ann.height})
            for obj in objects:
                annotation_id += 1
                x, y, w, h = boxes.coco_from_voc(obj.box, ann.width, ann.height)
                entry = {"id": annotation_id, "image_id": image_id[name], "category_id": category[obj.name],
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": []}
                flags = {flag: True for flag in ("difficult", "truncated") if getattr(obj, flag)}
                if flags:
                    entry["attributes"] = flags
                written.append(entry)
            result.count(part, objects)
        document = {
            "info": {"description": f"{dataset.root.name}: maskset export, part {part}",
                     "date_created": manifest.now(), "version": "1.0"},
            "licenses": [],
            "images": listed,
            "annotations": written,
            "categories": [{"id": number, "name": name, "supercategory": "face"}
                           for name, number in category.items()],
        }
        atomic.write_json(folder / f"instances_{part}.json", document, indent=None)
        result.written.append(f"instances_{part}.json")
    result.written.append("images/")
