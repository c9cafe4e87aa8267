"""make export FORMAT=coco|yolo|voc and make import of each (issue 12): round trips on the seed
data lose nothing, real consumers load every export (pycocotools, supervision), formats are told
apart, and the coordinate conversions are exact."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from dataset import boxes, manifest, voc
from dataset.errors import MasksetError
from dataset.formats import detect
from dataset.layout import Dataset
from helpers import make

SEED_BOXES = 823


@pytest.fixture(scope="module")
def seed(tmp_path_factory, seed_voc) -> Dataset:
    """The seed data imported, exported as CSV and split (train/val), as a curator has it."""
    data = tmp_path_factory.mktemp("formats") / "data"
    make("import", f"SRC={seed_voc}", data=data)
    make("export", data=data)
    make("split", data=data)
    return Dataset.at(data)


def voc_boxes(dataset: Dataset, flags: bool = True) -> dict[str, list[tuple]]:
    """image name -> its VOC boxes (class, corners, and the difficult/truncated flags)."""
    found = {}
    for name in manifest.state(dataset):
        ann = voc.parse(dataset.annotation_for(name))
        found[name] = sorted((o.name, *o.box) + ((o.difficult, o.truncated) if flags else ()) for o in ann.objects)
    return found


def split_parts(dataset: Dataset) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {}
    for name, part in json.loads((dataset.export / "split.json").read_text())["parts"].items():
        parts.setdefault(part, set()).add(name)
    return parts


def test_voc_to_coco_to_voc_is_identical_and_pycocotools_scores_the_truth_1(seed, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out = make("export", "FORMAT=coco", data=seed.root)
    folder = seed.export / "coco"
    parts = split_parts(seed)
    assert f"train {len(parts['train'])} images" in out.stdout and f"{SEED_BOXES} boxes" in out.stdout
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(f"instances_{p}.json" for p in parts)
    image_ids, total = set(), 0
    for part, names in parts.items():
        truth = COCO(str(folder / f"instances_{part}.json"))
        listed = truth.loadImgs(truth.getImgIds())
        assert {i["file_name"] for i in listed} == names                        # the split's part, whole
        assert all((folder / "images" / i["file_name"]).is_file() for i in listed)
        assert not image_ids & set(truth.getImgIds())                            # ids unique across parts
        image_ids |= set(truth.getImgIds())
        assert [c["name"] for c in truth.loadCats(truth.getCatIds())] == seed.classes()
        annotations = truth.loadAnns(truth.getAnnIds())
        total += len(annotations)
        # pycocotools' own evaluation, the ground truth given as detections: AP 1.0
        detections = truth.loadRes([{"image_id": a["image_id"], "category_id": a["category_id"],
                                     "bbox": a["bbox"], "score": 1.0} for a in annotations])
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[1] == pytest.approx(1.0), part
    assert total == SEED_BOXES

    back = make("import", f"SRC={folder}", data=tmp_path / "back")         # the format is told from SRC
    assert f"{len(image_ids)} images and {len(image_ids)} annotations imported" in back.stdout
    assert "(coco)" in back.stdout
    returned = voc_boxes(Dataset.at(tmp_path / "back"))
    assert returned == voc_boxes(seed)                                      # identical, flags and all
    assert sum(map(len, returned.values())) == SEED_BOXES
    assert make("validate", data=tmp_path / "back").returncode == 0


def test_yolo_export_loads_every_box_in_supervision_and_comes_back_within_a_pixel(seed, tmp_path):
    import supervision as sv

    make("export", "FORMAT=yolo", data=seed.root)
    folder = seed.export / "yolo"
    data_yaml = yaml.safe_load((folder / "data.yaml").read_text())
    parts = split_parts(seed)
    assert data_yaml["path"] == str(folder)
    assert {data_yaml["train"], data_yaml["val"]} == {"images/train", "images/val"} and "test" not in data_yaml
    assert data_yaml["names"] == dict(enumerate(seed.classes())) and data_yaml["nc"] == len(seed.classes())
    ours = voc_boxes(seed, flags=False)
    loaded = 0
    for part, names in parts.items():
        dataset = sv.DetectionDataset.from_yolo(str(folder / "images" / part), str(folder / "labels" / part),
                                                str(folder / "data.yaml"))
        assert {Path(p).name for p in dataset.image_paths} == names
        for path, detections in dataset.annotations.items():
            found = sorted((dataset.classes[c], *xyxy) for c, xyxy in zip(detections.class_id, detections.xyxy))
            expected = ours[Path(path).name]
            assert len(found) == len(expected), path
            for (name, *corners), (our_name, xmin, ymin, xmax, ymax) in zip(found, expected):
                # supervision's pixels are 0-based edges: VOC's xmin - 1 .. xmax
                assert name == our_name
                assert max(abs(a - b) for a, b in zip(corners, (xmin - 1, ymin - 1, xmax, ymax))) <= 1, path
            loaded += len(found)
    assert loaded == SEED_BOXES

    back = make("import", f"SRC={folder}", data=tmp_path / "back")
    assert "(yolo)" in back.stdout
    returned = voc_boxes(Dataset.at(tmp_path / "back"), flags=False)
    assert returned.keys() == ours.keys() and sum(map(len, returned.values())) == SEED_BOXES
    worst = max(abs(a - b) for name in ours for mine, theirs in zip(ours[name], returned[name])
                for a, b in zip(mine[1:], theirs[1:]))
    assert worst <= 1
    assert all([b[0] for b in ours[n]] == [b[0] for b in returned[n]] for n in ours)


def test_plain_voc_export_is_pascal_voc_and_comes_back_identical(seed, tmp_path):
    make("export", "FORMAT=voc", data=seed.root)
    folder = seed.export / "voc"
    parts = split_parts(seed)
    for part, names in parts.items():
        listed = (folder / "ImageSets" / "Main" / f"{part}.txt").read_text().split()
        assert set(listed) == {Path(n).stem for n in names}
    ann = voc.parse(folder / "Annotations" / "10.xml")
    assert ann.folder == "JPEGImages" and ann.path == str(folder / "JPEGImages" / "10.jpg")
    assert (folder / "JPEGImages" / "10.jpg").read_bytes() == (seed.images / "10.jpg").read_bytes()
    assert (folder / "classes.txt").read_text().split() == seed.classes()
    make("import", f"SRC={folder}", data=tmp_path / "back")
    assert voc_boxes(Dataset.at(tmp_path / "back")) == voc_boxes(seed)


def test_keras_retinanet_csv_comes_back_identical(seed, tmp_path):
    # SRC=<a dataset> FORMAT=csv finds its export/annotations.csv, whose paths lead to ../images
    back = make("import", f"SRC={seed.root}", "FORMAT=csv", data=tmp_path / "back")
    assert "691 images" in back.stdout and "(csv)" in back.stdout
    assert voc_boxes(Dataset.at(tmp_path / "back"), flags=False) == voc_boxes(seed, flags=False)
    # pointed at export/ itself, the CSV's ../images leads outside SRC: refused, saying what to do
    refused = make("import", f"SRC={seed.export}", data=tmp_path / "other", check=False)
    assert refused.returncode == 2 and "leads outside SRC" in refused.stderr
    assert "annotations.csv:1" in refused.stderr and not (tmp_path / "other").exists()


def test_an_export_replaces_its_folder_whole_and_is_refused_on_errors(seed, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(seed.root, data, symlinks=True)
    dataset = Dataset.at(data)
    make("export", "FORMAT=coco", data=data)
    stale = dataset.export / "coco" / "images" / "stale.jpg"
    stale.write_bytes(b"left from an earlier export")
    (dataset.export / "split.json").unlink()                            # no split: one part, "all"
    out = make("export", "FORMAT=coco", data=data)
    assert sorted(p.name for p in (dataset.export / "coco").glob("*.json")) == ["instances_all.json"]
    assert not stale.exists() and "all 691 images" in out.stdout
    assert not list(dataset.export.glob(".coco.*"))                     # no temp folder left
    yolo = make("export", "FORMAT=yolo", data=data)
    assert "train and val are the same" in yolo.stdout
    assert yaml.safe_load((dataset.export / "yolo" / "data.yaml").read_text())["val"] == "images/all"
    xml = dataset.annotations / "10.xml"
    ann = voc.parse(xml)
    ann.objects[0].name = "face"
    xml.write_bytes(voc.to_xml(ann))
    refused = make("export", "FORMAT=yolo", data=data, check=False)
    assert refused.returncode == 2 and "validate finds 1 errors" in refused.stderr
    assert (dataset.export / "yolo" / "data.yaml").exists()              # the last good export stays


def test_formats_are_told_apart_and_an_ambiguous_source_asks_for_format(seed, tmp_path):
    for fmt in ("coco", "yolo", "voc"):
        make("export", f"FORMAT={fmt}", data=seed.root)
        assert detect(seed.export / fmt) == fmt
    assert detect(seed.export / "coco" / "instances_train.json") == "coco"
    assert detect(seed.export) == "csv"
    assert detect(seed.images) == "voc"                                  # images alone: nothing annotated
    mixed = tmp_path / "mixed"
    shutil.copytree(seed.export / "voc", mixed)
    shutil.copy(seed.export / "coco" / "instances_val.json", mixed)
    with pytest.raises(MasksetError, match=r"FORMAT=coco\|voc"):
        detect(mixed)
    refused = make("import", f"SRC={mixed}", data=tmp_path / "data", check=False)
    assert refused.returncode == 2 and "FORMAT=" in refused.stderr and not (tmp_path / "data").exists()
    chosen = make("import", f"SRC={mixed}", "FORMAT=voc", data=tmp_path / "data")
    assert "691 images" in chosen.stdout


# -- the conversions (dataset/boxes.py) --------------------------------------------------------------
@st.composite
def voc_box(draw):
    width = draw(st.integers(2, 20000))
    height = draw(st.integers(2, 20000))
    xmin = draw(st.integers(1, width - 1))
    ymin = draw(st.integers(1, height - 1))
    return (xmin, ymin, draw(st.integers(xmin + 1, width)), draw(st.integers(ymin + 1, height))), width, height


@settings(max_examples=500, deadline=None)
@given(voc_box())
def test_voc_coco_voc_is_exact(case):
    box, width, height = case
    assert boxes.voc_from_coco(boxes.coco_from_voc(box, width, height), width, height) == box


@settings(max_examples=500, deadline=None)
@given(voc_box())
def test_voc_yolo_voc_is_exact_at_the_printed_six_decimals(case):
    box, width, height = case
    printed = [float(f"{v:.6f}") for v in boxes.yolo_from_voc(box, width, height)]
    assert boxes.voc_from_yolo(*printed, width, height) == box


def test_the_conventions_on_a_whole_image_and_one_pixel():
    assert boxes.coco_from_voc((1, 1, 640, 480), 640, 480) == [0, 0, 640, 480]
    assert boxes.yolo_from_voc((1, 1, 640, 480), 640, 480) == (0.5, 0.5, 1.0, 1.0)
    assert boxes.coco_from_voc((11, 21, 20, 40), 640, 480) == [10, 20, 10, 20]   # pixels 11..20: 10 wide
    assert boxes.csv_from_voc((11, 21, 20, 40), 640, 480) == (10, 20, 19, 39)
    assert boxes.voc_from_csv((10, 20, 19, 39)) == (11, 21, 20, 40)
    assert boxes.voc_from_coco([10.4, 19.6, 9.7, 20.2], 640, 480) == (11, 21, 20, 40)  # nearest edges
    assert boxes.voc_from_coco([-0.6, -0.2, 641.0, 480.4], 640, 480) == (1, 1, 640, 480)  # clamped
    assert not boxes.edges_outside(-0.9, 0, 640.9, 480, 640, 480)
    assert boxes.edges_outside(-1.5, 0, 100, 100, 640, 480)
    cx, cy, w, h = boxes.yolo_from_voc((11, 21, 20, 40), 640, 480)
    assert math.isclose(cx * 640, 15) and math.isclose(w * 640, 10) and math.isclose(cy * 480, 30)
