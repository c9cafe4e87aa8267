"""Pascal VOC (labelImg's XML) in and out.

In: a labelImg folder, read by dataset/importer.py (`read_voc_folder`): flat, `images/` +
`annotations/`, or Pascal VOC's own `JPEGImages/` + `Annotations/`.

Out: a plain Pascal VOC folder, `export/voc/`: `JPEGImages/` (the images, hard-linked),
`Annotations/<stem>.xml` (each VOC file as the dataset holds it, every tag kept, with <folder>,
<filename> and <path> pointing at the exported image), `ImageSets/Main/<part>.txt` (the stems of
each part of the split, `all` when there is none) and `classes.txt`.
"""
from __future__ import annotations

from pathlib import Path

from .. import voc
from ..importer import Source, read_voc_folder
from ..layout import Dataset
from . import common

IMAGES, ANNOTATIONS, SETS = "JPEGImages", "Annotations", Path("ImageSets") / "Main"


def read(src: Path, images_dir: Path | None = None, annotations_dir: Path | None = None) -> Source:
    return read_voc_folder(Path(src), images_dir, annotations_dir)


def write(dataset: Dataset, annotations: dict, parts: dict[str, list[str]], folder: Path,
          result: common.FormatExport, skip_difficult: bool = False) -> None:
    final = dataset.export / "voc"
    for part, names in parts.items():
        stems = []
        for name in names:
            ann = annotations[name]
            objects = common.kept_objects(ann, skip_difficult, result)
            if objects is None:
                continue
            common.place_image(dataset, name, folder / IMAGES / name)

            def change(root, name=name):
                for tag, value in (("folder", IMAGES), ("filename", name), ("path", str(final / IMAGES / name))):
                    voc.set_text(root, tag, value)
                if skip_difficult:
                    for node in root.findall("object"):
                        if (node.findtext("difficult") or "0").strip() in ("1", "true", "True"):
                            root.remove(node)
            xml = folder / ANNOTATIONS / (Path(name).stem + ".xml")
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_bytes(voc.edited(ann.source, change))
            stems.append(Path(name).stem)
            result.count(part, objects)
        (folder / SETS).mkdir(parents=True, exist_ok=True)
        (folder / SETS / f"{part}.txt").write_text("".join(f"{s}\n" for s in stems), encoding="utf-8")
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in dataset.classes()), encoding="utf-8")
    result.written += [f"{IMAGES}/", f"{ANNOTATIONS}/", f"{SETS}/", "classes.txt"]
