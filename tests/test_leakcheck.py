"""make leakcheck: copies of this dataset's images planted in another set (a folder, a CSV, a COCO
file) are found, with dedupe's finder; unrelated images are not; exit 1 on any pair."""
import csv
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dataset.fixtures.scenes import jpeg_bytes, render_scene
from dataset.importer import import_folder
from dataset.layout import Dataset
from helpers import MASKSET, make

PLANTED_PER_PART = 2


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory, seed_voc):
    dataset = Dataset.at(tmp_path_factory.mktemp("leak") / "data")
    import_folder(dataset, seed_voc, progress=False)
    make("export", data=dataset.root)
    make("split", "VAL=0.2", "TEST=0.1", "QUIET=1", data=dataset.root)
    return dataset


@pytest.fixture(scope="module")
def other_set(split_dataset, tmp_path_factory):
    """A folder of another set: altered copies of 2 train, 2 val and 2 test images of ours, 8
    unrelated rendered scenes, and a broken file. Returns (folder, {copy name: (our image, part)})."""
    folder = tmp_path_factory.mktemp("other") / "val"
    folder.mkdir()
    parts = json.loads((split_dataset.export / "split.json").read_text())["parts"]
    rng = random.Random(3)
    planted = {}
    for part in ("train", "val", "test"):
        for number, name in enumerate(rng.sample(sorted(n for n, p in parts.items() if p == part), PLANTED_PER_PART)):
            image = Image.open(split_dataset.images / name).convert("RGB")
            copy = f"{part}_copy_{number}.jpg"
            if number == 0:  # smaller and re-encoded, as a benchmark stores it
                image = image.resize((image.width // 2, image.height // 2))
                (folder / copy).write_bytes(jpeg_bytes(image, 70))
            else:            # brighter
                (folder / copy).write_bytes(jpeg_bytes(ImageEnhance.Brightness(image).enhance(1.15), 90))
            planted[copy] = (name, part)
    exact = sorted(n for n, p in parts.items() if p == "val")[0]
    shutil.copy(split_dataset.images / exact, folder / "val_exact.jpg")  # byte for byte
    planted["val_exact.jpg"] = (exact, "val")
    for number in range(8):
        image, _ = render_scene(random.Random(100 + number), (320, 240))
        (folder / f"scene_{number}.jpg").write_bytes(jpeg_bytes(image, 90))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder, planted


def leakcheck(data, **variables):
    """`make leakcheck VAR=...` as make runs it (maskset --make, the variables in the environment),
    keeping maskset's own exit status: make turns every failure into 2."""
    env = {**os.environ, "MASKSET_PROGRESS": "0", "DATA": str(data), **{k: str(v) for k, v in variables.items()}}
    return subprocess.run([MASKSET, "--make", "leakcheck"], capture_output=True, text=True, timeout=600, env=env)


def _pairs(dataset) -> list[dict]:
    return json.loads((dataset.export / "leakcheck.json").read_text())["pairs"]


def _check_found(pairs, planted, parts=("train", "val", "test")):
    found = {(p["image"], Path(p["other"]).name) for p in pairs}
    for copy, (name, part) in planted.items():
        if part in parts:
            assert (name, copy) in found, (name, copy)      # every planted copy, with its source
    assert {Path(p["other"]).name for p in pairs} <= set(planted)  # nothing else of theirs
    assert all(p["part"] in parts for p in pairs)


def test_a_folder_with_copies_of_our_images_is_caught(split_dataset, other_set, artifacts):
    folder, planted = other_set
    result = leakcheck(split_dataset.root, OTHER=folder)
    assert result.returncode == 1, result.stderr
    pairs = _pairs(split_dataset)
    _check_found(pairs, planted)
    exact = [p for p in pairs if p["exact"]]
    assert [(p["image"], Path(p["other"]).name) for p in exact] == [(planted["val_exact.jpg"][0], "val_exact.jpg")]
    assert "broken.jpg: not a readable image" in result.stdout + result.stderr
    assert f"{len(pairs)} near-duplicate pairs (1 exact)" in result.stdout
    assert "against 15 images of" in result.stdout  # 7 copies + 8 scenes compared; the broken one not
    page = (split_dataset.export / "leakcheck.html").read_text()
    assert len(re.findall(r"<figure", page)) == 2 * len(pairs)  # each pair side by side
    assert page.count("data:image/jpeg;base64,") == 2 * len(pairs)
    for pair in pairs:
        assert f"images/{pair['image']}" in page
    shutil.copy(split_dataset.export / "leakcheck.html", artifacts / "leakcheck.html")


def test_one_part_only(split_dataset, other_set):
    folder, planted = other_set
    result = leakcheck(split_dataset.root, OTHER=folder, PART="test")
    assert result.returncode == 1
    _check_found(_pairs(split_dataset), planted, parts=("test",))
    assert "images of this dataset (test)" in result.stdout


def test_a_csv_and_a_coco_file_name_the_same_images(split_dataset, other_set, tmp_path):
    folder, planted = other_set
    listed = sorted(p for p in folder.iterdir() if p.name != "broken.jpg")
    table = tmp_path / "other.csv"
    with open(table, "w", newline="") as handle:  # keras-retinanet's format, relative paths
        csv.writer(handle).writerows([[os.path.relpath(p, table.parent), 1, 2, 30, 40, "face"] for p in listed])
    leakcheck(split_dataset.root, OTHER=table)
    from_csv = _pairs(split_dataset)
    _check_found(from_csv, planted)

    annotations = folder.parent / "annotations"
    annotations.mkdir(exist_ok=True)
    coco = annotations / "instances_val.json"  # COCO's layout: images in ../val/
    coco.write_text(json.dumps({"images": [{"id": i, "file_name": p.name, "width": 1, "height": 1}
                                           for i, p in enumerate(listed)], "annotations": [], "categories": []}))
    result = leakcheck(split_dataset.root, OTHER=coco)
    assert result.returncode == 1 and "(coco)" in result.stdout
    assert _pairs(split_dataset) == from_csv

    elsewhere = tmp_path / "instances_val.json"
    shutil.copy(coco, elsewhere)
    refused = leakcheck(split_dataset.root, OTHER=elsewhere)
    assert refused.returncode == 2 and "OTHER_IMAGES=" in refused.stderr and str(elsewhere) in refused.stderr
    result = leakcheck(split_dataset.root, OTHER=elsewhere, OTHER_IMAGES=folder)
    assert result.returncode == 1 and _pairs(split_dataset) == from_csv


def test_no_pair_exits_0(split_dataset, other_set, tmp_path):
    folder, _ = other_set
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for path in folder.glob("scene_*.jpg"):
        shutil.copy(path, scenes / path.name)
    result = leakcheck(split_dataset.root, OTHER=scenes)
    assert result.returncode == 0, result.stderr
    assert "no near duplicates" in result.stdout and _pairs(split_dataset) == []
    assert "No near duplicates" in (split_dataset.export / "leakcheck.html").read_text()


def test_bad_other_is_named(split_dataset, tmp_path):
    result = leakcheck(split_dataset.root, OTHER=tmp_path / "nope")
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    result = leakcheck(split_dataset.root)
    assert result.returncode == 2 and "pass OTHER=" in result.stderr
    table = tmp_path / "bad.csv"
    table.write_text("missing.jpg,1,2,3,4,face\n")
    result = leakcheck(split_dataset.root, OTHER=table)
    assert result.returncode == 2 and f"{table}:1: image missing.jpg does not exist" in result.stderr
