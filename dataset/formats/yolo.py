"""YOLO (the ultralytics layout) in and out.

In: SRC holds images and one label file per image: `images/<part>/x.jpg` with
`labels/<part>/x.txt` (ultralytics' rule: the last `images` folder in the path becomes `labels`,
the suffix `.txt`; Roboflow's `train/images` + `train/labels` follows it too), or `x.txt` beside
`x.jpg`. Class names come from `data.yaml` (`names:` as a list or as {id: name}) or else from
`classes.txt` (one name a line, line 0 = class 0). Each label line is `class cx cy w h`, the
centre and size divided by the image's width and height; they become VOC pixels through the real
image's size (read from its header). An empty label file is an image with no objects; an image
with no label file comes in unannotated (pending), since a missing file more often means "not
labelled yet" than "nothing in it" (ultralytics reads it as background).

Out: `export/yolo/images/<part>/`, `export/yolo/labels/<part>/` for each part of the split
(`all` when there is none) and `export/yolo/data.yaml` naming train/val/test, the class count
and the names in classes.txt order. Images are hard-linked, not copied.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .. import boxes, voc
from ..errors import MasksetError
from ..importer import Source, SourceItem, safe_files
from ..layout import IMAGE_SUFFIXES, Dataset
from . import common

IMAGES, LABELS = "images", "labels"
DECIMALS = 6  # 1e-6 of a 20,000-pixel side is 0.02 px: the round trip stays exact
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def find_yaml(src: Path) -> Path | None:
    if src.is_file():
        return src
    found = [src / n for n in YAML_NAMES if (src / n).is_file()]
    return found[0] if found else None


def _from_yaml(path: Path) -> dict[int, str]:
    try:
        data = yaml.safe_load(common.read_text(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise MasksetError(f"{path}: {where}not valid YAML ({getattr(error, 'problem', None) or error}). "
                           f"Repair it.") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {number: str(name) for number, name in enumerate(names)}
    if isinstance(names, dict):
        result = {}
        for key, name in names.items():
            try:
                number = int(key)
            except (TypeError, ValueError):
                number = -1
            if isinstance(key, bool) or number < 0:
                raise MasksetError(f"{path}: names: {key!r} is not a class number (0, 1, ...). Write names "
                                   f"as a list, or as {{0: mask, 1: no_mask}}.")
            result[number] = str(name)
        return result
    raise MasksetError(f"{path}: no `names:` list. YOLO labels number their classes; say which number is "
                       f"which, e.g. `names: [mask, no_mask]`.")


def class_names(src: Path) -> tuple[dict[int, str], Path]:
    """Class number -> name, from data.yaml or else classes.txt, and the file it came from."""
    found = find_yaml(src)
    if found is not None:
        return _from_yaml(found), found
    for candidate in (src / "classes.txt", src / LABELS / "classes.txt"):
        if candidate.is_file():
            names = [line.strip() for line in common.read_text(candidate).splitlines()]
            return {n: name for n, name in enumerate(names) if name}, candidate
    raise MasksetError(f"SRC={src}: no data.yaml or classes.txt, so the label files' class numbers have no "
                       f"names. Add a data.yaml with `names: [...]` (class 0 first), or a classes.txt.")


def label_for(image: Path, root: Path) -> Path:
    """ultralytics' rule: images/.../x.jpg -> labels/.../x.txt (the last `images` folder);
    otherwise the label file lies beside the image."""
    parts = list(image.relative_to(root).parts)
    folders = parts[:-1]
    if IMAGES in folders:
        at = len(folders) - 1 - folders[::-1].index(IMAGES)
        parts[at] = LABELS
        return (root / Path(*parts)).with_suffix(".txt")
    return image.with_suffix(".txt")


def _line_error(where: str, fields: list[str]) -> str:
    count = len(fields)
    if count == 6:
        why = ("6 fields: a sixth (a confidence?) is what a detector's predictions add; a label line "
               "is `class cx cy w h`. Remove the last field")
    elif count > 6:
        why = (f"{count} fields: a segmentation polygon, not a box. Export the set as detection "
               f"(boxes), or keep only `class cx cy w h`")
    else:
        why = f"{count} fields; a label line is `class cx cy w h` (5). Complete or delete the line"
    return f"{where}: {why}; nothing was imported."


def _read_labels(path: Path, names: dict[int, str], names_file: Path, width: int, height: int) -> list:
    objects = []
    for number, line in enumerate(common.read_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise MasksetError(_line_error(where, fields))
        try:
            cls = float(fields[0])
        except ValueError:
            cls = -1.0
        if not cls.is_integer() or int(cls) not in names:
            known = ", ".join(f"{k}: {v}" for k, v in sorted(names.items()))
            raise MasksetError(f"{where}: class {fields[0]!r} is not a class number of {names_file} ({known}). "
                               f"Correct the line, or add the class to {names_file.name}.")
        values = []
        for label, text in zip(("cx", "cy", "w", "h"), fields[1:]):
            value = common.number(text, f"{where}: {label}", "Correct the line.")
            if not 0 <= value <= 1:
                raise MasksetError(f"{where}: {label} {text} is outside [0, 1]: YOLO coordinates are fractions "
                                   f"of the image's width and height (pixels divided by the size). Correct "
                                   f"the line; nothing was imported.")
            values.append(value)
        if values[2] <= 0 or values[3] <= 0:
            raise MasksetError(f"{where}: a box of width {fields[3]} and height {fields[4]} has no area. "
                               f"Delete or correct the line.")
        xmin, ymin, xmax, ymax = boxes.voc_from_yolo(*values, width, height)
        objects.append(voc.VocObject(names[int(cls)], xmin, ymin, xmax, ymax))
    return objects


def read(src: Path) -> Source:
    src = Path(src)
    root = src if src.is_dir() else src.parent
    names, names_file = class_names(root if src.is_dir() else src)
    source = Source("yolo", src)
    roots = [root]
    image_files = safe_files(root, roots, IMAGE_SUFFIXES, source.skipped, recursive=True)
    text_files = safe_files(root, roots, (".txt",), source.skipped, recursive=True)
    wanted: dict[Path, Path] = {}
    for image in image_files:
        label = label_for(image, root)
        if label in wanted:
            raise MasksetError(f"{image} and {wanted[label]} share one label file, {label}. Rename one of "
                               f"them (its label file too).")
        wanted[label] = image
    for text in text_files:
        in_labels = LABELS in text.relative_to(root).parts[:-1]
        if in_labels and text not in wanted and text.name != "classes.txt":
            parts = list(text.relative_to(root).parts)
            at = len(parts) - 2 - parts[-2::-1].index(LABELS)
            parts[at] = IMAGES
            raise MasksetError(f"{text}: a label file with no image (no {Path(*parts).with_suffix('.*')} in "
                               f"{root}). Put the image back, or remove the label file; nothing was imported.")
    present = set(text_files)
    unlabelled = 0
    for label, image in wanted.items():
        if label not in present:
            source.items.append(SourceItem(image))
            unlabelled += 1
            continue
        width, height = common.image_size(image, str(label))
        annotation = voc.VocAnnotation(filename=image.name, width=width, height=height,
                                       objects=_read_labels(label, names, names_file, width, height))
        source.items.append(SourceItem(image, annotation=annotation, where=str(label)))
    if unlabelled:
        source.notes.append(f"{unlabelled} images have no label file: imported unannotated (pending). An "
                            f"image with nothing in it needs an empty label file to come in as annotated.")
    return source


def write(dataset: Dataset, annotations: dict, parts: dict[str, list[str]], folder: Path,
          result: common.FormatExport, skip_difficult: bool = False) -> None:
    """images/<part>/, labels/<part>/ and data.yaml in folder (which becomes export/yolo)."""
    classes = dataset.classes()
    number = {name: n for n, name in enumerate(classes)}
    for part, names in parts.items():
        for name in names:
            ann = annotations[name]
            objects = common.kept_objects(ann, skip_difficult, result)
            if objects is None:
                continue
            common.place_image(dataset, name, folder / IMAGES / part / name)
            lines = "".join(f"{number[o.name]} " + " ".join(f"{v:.{DECIMALS}f}" for v in
                                                            boxes.yolo_from_voc(o.box, ann.width, ann.height)) + "\n"
                            for o in objects)
            label = folder / LABELS / part / (Path(name).stem + ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(lines, encoding="utf-8")
            result.count(part, objects)
    listed = [p for p in result.parts]
    roles = {role: role for role in ("train", "val", "test") if role in listed}
    if not roles:
        roles = {"train": listed[0], "val": listed[0]} if listed else {}
        if listed:
            result.warnings.append(f"no split (export/split.json): data.yaml's train and val are the same "
                                   f"{listed[0]!r} images. Run `make split`, then export again, for a "
                                   f"held-out val.")
    data = {"path": str(dataset.export / "yolo"),
            **{role: f"{IMAGES}/{part}" for role, part in roles.items()},
            "nc": len(classes), "names": dict(enumerate(classes))}
    header = ("# Written by `make export FORMAT=yolo` (maskset). `path` is where this folder was written:\n"
              "# change it if you move the folder.\n")
    (folder / "data.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                                      encoding="utf-8")
    result.written += ["data.yaml", f"{IMAGES}/", f"{LABELS}/"]
