"""make import of COCO, YOLO and keras-retinanet CSV sources (issue 12): what each reader accepts,
and bad input: each case is a clear error naming the file, the record or line and the fix, and
nothing is half-imported (the dataset is exactly as it was)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dataset import boxes, manifest, voc
from dataset.layout import Dataset
from helpers import MASKSET, make


def _scenes(sample_src: Path, count: int = 3) -> list[tuple[Path, voc.VocAnnotation]]:
    return [(jpg, voc.parse(jpg.with_suffix(".xml"))) for jpg in sorted(sample_src.glob("scene_*.jpg"))[:count]]


def coco_source(folder: Path, sample_src: Path) -> Path:
    """folder/instances_default.json + folder/images/, from three rendered scenes."""
    (folder / "images").mkdir(parents=True)
    classes = ["mask", "no_mask"]
    images, annotations = [], []
    for number, (jpg, ann) in enumerate(_scenes(sample_src), 1):
        shutil.copy(jpg, folder / "images")
        images.append({"id": number, "file_name": jpg.name, "width": ann.width, "height": ann.height})
        for obj in ann.objects:
            annotations.append({"id": len(annotations) + 1, "image_id": number, "iscrowd": 0,
                                "category_id": classes.index(obj.name) + 1,
                                "bbox": boxes.coco_from_voc(obj.box, ann.width, ann.height)})
    path = folder / "instances_default.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": n} for i, n in enumerate(classes, 1)]}))
    return path


def yolo_source(folder: Path, sample_src: Path) -> Path:
    """The ultralytics layout: images/train, labels/train, data.yaml."""
    for sub in ("images/train", "labels/train"):
        (folder / sub).mkdir(parents=True)
    classes = ["mask", "no_mask"]
    for jpg, ann in _scenes(sample_src):
        shutil.copy(jpg, folder / "images" / "train")
        (folder / "labels" / "train" / f"{jpg.stem}.txt").write_text("".join(
            f"{classes.index(o.name)} " + " ".join(f"{v:.6f}" for v in boxes.yolo_from_voc(o.box, ann.width, ann.height))
            + "\n" for o in ann.objects))
    (folder / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/train",
                                                      "names": classes}))
    return folder


def csv_source(folder: Path, sample_src: Path) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for jpg, ann in _scenes(sample_src):
        shutil.copy(jpg, folder)
        lines += [f"{jpg.name},{','.join(map(str, boxes.csv_from_voc(o.box, ann.width, ann.height)))},{o.name}"
                  for o in ann.objects]
    (folder / "annotations.csv").write_text("\n".join(lines) + "\n")
    (folder / "classes.csv").write_text("mask,0\nno_mask,1\n")
    return folder


@pytest.mark.parametrize("build", [coco_source, yolo_source, csv_source], ids=["coco", "yolo", "csv"])
def test_each_format_imports_the_boxes_it_holds(tmp_path, sample_src, build):
    src = build(tmp_path / "src", sample_src)
    out = make("import", f"SRC={src}", data=tmp_path / "data")
    dataset = Dataset.at(tmp_path / "data")
    assert "3 images and 3 annotations imported" in out.stdout
    for jpg, ann in _scenes(sample_src):
        mine = voc.parse(dataset.annotation_for(jpg.name))
        assert (mine.width, mine.height) == (ann.width, ann.height)
        assert sorted((o.name, *o.box) for o in mine.objects) == sorted((o.name, *o.box) for o in ann.objects)
        record = manifest.state(dataset)[jpg.name]
        assert record["import_format"] == build.__name__.split("_")[0]
        assert record["import_source"] == str(src) and Path(record["source_path"]).name == jpg.name
    assert make("validate", data=dataset.root).returncode == 0


def test_coco_crowds_come_in_difficult_and_unlisted_images_have_no_objects(tmp_path, sample_src):
    path = coco_source(tmp_path / "src", sample_src)
    data = json.loads(path.read_text())
    data["annotations"][0]["iscrowd"] = 1
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 3]
    path.write_text(json.dumps(data))
    out = make("import", f"SRC={path}", data=tmp_path / "data")         # SRC may be the JSON file
    assert "1 crowd boxes (iscrowd 1) came in marked difficult" in out.stdout
    dataset = Dataset.at(tmp_path / "data")
    first, _, third = (voc.parse(dataset.annotation_for(jpg.name)) for jpg, _ in _scenes(sample_src))
    assert first.objects[0].difficult and third.objects == []


def test_unknown_classes_stop_before_anything_is_copied_and_classes_maps_them(tmp_path, sample_src):
    base = tmp_path / "data"
    make("import", f"SRC={sample_src}", data=base)
    path = coco_source(tmp_path / "src", sample_src)
    data = json.loads(path.read_text())
    data["categories"] = [{"id": 1, "name": "with_mask"}, {"id": 2, "name": "without_mask"}]
    path.write_text(json.dumps(data))
    before = (base / "manifest.jsonl").read_bytes()
    refused = make("import", f"SRC={path.parent}", data=base, check=False)
    counts = {name: sum(1 for a in data["annotations"] if a["category_id"] == i) for i, name in ((1, "with_mask"),
                                                                                                 (2, "without_mask"))}
    assert refused.returncode == 2
    for name, n in counts.items():
        assert f"'{name}' ({n} boxes)" in refused.stderr
    assert 'CLASSES="with_mask=mask,without_mask=no_mask"' in refused.stderr
    assert (base / "manifest.jsonl").read_bytes() == before
    mapped = make("import", f"SRC={path.parent}", 'CLASSES=with_mask=mask,without_mask=no_mask', data=base)
    assert "classes renamed: with_mask -> mask, without_mask -> no_mask" in mapped.stdout
    assert make("validate", data=base).returncode == 0


# -- bad input: a clear error, and the dataset exactly as it was -----------------------------------
def _coco(edit):
    def build(folder, sample_src):
        path = coco_source(folder, sample_src)
        data = json.loads(path.read_text())
        edit(data, folder)
        path.write_text(json.dumps(data))
        return folder
    return build


def _missing_image(data, folder):
    (folder / "images" / data["images"][1]["file_name"]).unlink()


def _bbox_outside(data, folder):
    data["annotations"][0]["bbox"][0] = data["images"][0]["width"] + 5


def _undeclared_category(data, folder):
    data["annotations"][1]["category_id"] = 9


def _duplicate_image_id(data, folder):
    data["images"][2]["id"] = data["images"][0]["id"]


def _wrong_size(data, folder):
    data["images"][0]["width"] = 640


def _not_utf8(folder, sample_src):
    path = coco_source(folder, sample_src)
    path.write_bytes(path.read_bytes().replace(b'"no_mask"', '"sin_máscara"'.encode("latin-1")))
    return folder


def _yolo_line(line_number: int, text: str):
    def build(folder, sample_src):
        yolo_source(folder, sample_src)
        label = sorted((folder / "labels" / "train").glob("*.txt"))[0]
        lines = label.read_text().splitlines()
        lines[line_number - 1] = text
        label.write_text("\n".join(lines) + "\n")
        return folder
    return build


def _yolo_orphan_label(folder, sample_src):
    yolo_source(folder, sample_src)
    (folder / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return folder


def _csv_header(folder, sample_src):
    csv_source(folder, sample_src)
    path = folder / "annotations.csv"
    path.write_text("path,x1,y1,x2,y2,class_name\n" + path.read_text())
    return folder


BAD = {
    "coco-missing-image": (_coco(_missing_image), ["instances_default.json: images[1] (id 2)", "is missing",
                                                    "IMAGES="]),
    "coco-bbox-outside": (_coco(_bbox_outside), ["instances_default.json: annotations[0] (id 1)",
                                                 "leaves the 320x240 image", "[x, y, width, height]"]),
    "coco-undeclared-category": (_coco(_undeclared_category), ["annotations[1] (id 2)", "category_id 9 is not "
                                                               "declared", "Add it to \"categories\""]),
    "coco-duplicate-image-id": (_coco(_duplicate_image_id), ["instances_default.json: images[2]",
                                                             "image id 1 is used twice", "renumber"]),
    "coco-not-utf8": (_not_utf8, ["instances_default.json: byte", "is not UTF-8 text (line 1)", "Save the file as UTF-8"]),
    "coco-wrong-size": (_coco(_wrong_size), ["images[0] (id 1): says the image is 640x240", "is 320x240",
                                             "Correct the size"]),
    "yolo-4-fields": (_yolo_line(1, "0 0.5 0.5 0.2"), ["labels/train/scene_0000.txt:1", "4 fields",
                                                       "class cx cy w h"]),
    "yolo-6-fields": (_yolo_line(1, "0 0.5 0.5 0.2 0.2 0.93"), ["labels/train/scene_0000.txt:1", "6 fields",
                                                                "Remove the last field"]),
    "yolo-outside-0-1": (_yolo_line(1, "1 1.2 0.5 0.2 0.2"), ["labels/train/scene_0000.txt:1",
                                                              "cx 1.2 is outside [0, 1]", "Correct the line"]),
    "yolo-label-without-image": (_yolo_orphan_label, ["labels/train/gone.txt", "no images/train/gone.*",
                                                      "remove the label file"]),
    "csv-header-row": (_csv_header, ["annotations.csv:1", "a header row", "Delete the first line"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_named_and_nothing_is_imported(tmp_path, sample_src, case):
    import subprocess
    base = tmp_path / "data"
    make("import", f"SRC={sample_src}", data=base)
    dataset = Dataset.at(base)
    before = {p.relative_to(base): p.read_bytes() for p in base.rglob("*") if p.is_file() and p.name != ".lock"}
    build, expected = BAD[case]
    src = build(tmp_path / "src", sample_src)
    result = subprocess.run([MASKSET, "import", "--data", str(base), "--src", str(src)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    after = {p.relative_to(base): p.read_bytes() for p in base.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before                                        # nothing copied, nothing recorded
    assert not any(dataset.journal.iterdir())


def test_images_are_copied_unless_link_is_asked(tmp_path, sample_src):
    src = coco_source(tmp_path / "src", sample_src)
    make("import", f"SRC={src}", data=tmp_path / "copied")
    linked = make("import", f"SRC={src}", "LINK=1", data=tmp_path / "linked")
    assert "3 images hard-linked (no bytes copied)" in linked.stdout
    for jpg, _ in _scenes(sample_src):
        source = (src.parent / "images" / jpg.name).stat()
        assert (tmp_path / "copied" / "images" / jpg.name).stat().st_ino != source.st_ino
        assert (tmp_path / "linked" / "images" / jpg.name).stat().st_ino == source.st_ino
