"""One dataset grown from two sources (issue 12's story): seed-voc (mask/noMask), then a second
public-style set (201 images, 225 boxes, with_mask/without_mask). Without a class map the import
stops before copying anything and says the CLASSES= line; with it, validate finds 0 errors and
the 1,048 boxes carry only the dataset's classes. Dedupe and split work across the sources, and
the report counts images, boxes and duplicates per source."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from dataset import manifest, voc
from dataset.fixtures.sources import second_dataset
from dataset.layout import Dataset
from helpers import make


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory, seed_voc):
    root = tmp_path_factory.mktemp("sources")
    second = root / "kaggle-face-masks"
    held = second_dataset(seed_voc, second)
    data = root / "data"
    make("import", f"SRC={seed_voc}", data=data)
    return Dataset.at(data), second, held


def test_the_second_set_is_what_the_issue_describes(two_sources):
    _, second, held = two_sources
    assert held["images"] == 201 and sum(held["boxes"].values()) == 225
    assert set(held["boxes"]) == {"with_mask", "without_mask"}
    assert len(list((second / "images").iterdir())) == 201


def test_two_sources_with_a_class_map_end_with_no_errors(two_sources):
    dataset, second, held = two_sources
    before = dataset.manifest.read_bytes()
    refused = make("import", f"SRC={second}", data=dataset.root, check=False)
    assert refused.returncode == 2
    for name, count in held["boxes"].items():
        assert f"'{name}' ({count} boxes)" in refused.stderr
    assert 'CLASSES="with_mask=mask,without_mask=noMask"' in refused.stderr
    assert "Nothing was imported" in refused.stderr and dataset.manifest.read_bytes() == before
    assert len(dataset.image_files()) == 691

    out = make("import", f"SRC={second}", "CLASSES=with_mask=mask,without_mask=noMask", data=dataset.root)
    assert "201 images and 201 annotations imported" in out.stdout
    checked = make("validate", data=dataset.root)
    assert "0 errors" in checked.stdout and "1048 boxes" in checked.stdout
    found = Counter(o.name for xml in dataset.annotation_files() for o in voc.parse(xml).objects)
    assert sum(found.values()) == 1048 and set(found) == {"mask", "noMask"}
    assert dataset.classes() == ["noMask", "mask"]
    records = [r for r in manifest.read_records(dataset) if r.get("import_source") == str(second)]
    assert len(records) == 201 and all(r["class_map"]["rename"] == {"with_mask": "mask", "without_mask": "noMask"}
                                       for r in records)


def test_drop_leaves_a_class_out_and_counts_it(tmp_path, two_sources, seed_voc):
    _, second, held = two_sources
    out = make("import", f"SRC={second}", "CLASSES=with_mask=mask", "DROP=without_mask", data=tmp_path / "data")
    assert f"{held['boxes']['without_mask']} boxes dropped (without_mask {held['boxes']['without_mask']})" in out.stdout
    found = Counter(o.name for xml in Dataset.at(tmp_path / "data").annotation_files() for o in voc.parse(xml).objects)
    assert found == {"mask": held["boxes"]["with_mask"]}


def test_dedupe_split_and_the_report_work_across_sources(two_sources, seed_voc):
    dataset, second, held = two_sources
    if len(dataset.image_files()) == 691:  # run alone: the import of the test above
        make("import", f"SRC={second}", "CLASSES=with_mask=mask,without_mask=noMask", data=dataset.root)
    make("dedupe", "QUIET=1", data=dataset.root)
    state = manifest.state(dataset)
    quarantined = {n: r for n, r in state.items() if r["event"] == manifest.QUARANTINED}
    source_of = {n: r["import_source"] for n, r in state.items()}
    # the byte-for-byte copies of seed photos in the second set are found as duplicates of the seed's
    copies = [n for n in quarantined if n.startswith("copy_")]
    assert len(copies) == len(held["copies"])
    assert all(source_of[quarantined[n]["duplicate_of"]] == str(seed_voc) for n in copies)
    make("export", data=dataset.root)
    make("split", data=dataset.root)
    split = json.loads((dataset.export / "split.json").read_text())["parts"]
    assert sorted(split) == sorted(p.name for p in dataset.image_files())
    parts_per_source = Counter((source_of[name], part) for name, part in split.items())
    assert all(parts_per_source[(s, part)] > 0 for s in (str(seed_voc), str(second)) for part in ("train", "val"))
    out = make("report", data=dataset.root)
    per_source = json.loads((dataset.export / "report.json").read_text())["sources"]["per_source"]
    # counted independently: images now in images/ and their boxes, quarantined duplicates, per source
    present = {p.name for p in dataset.image_files()}
    for source in (str(seed_voc), str(second)):
        mine = {n for n, s in source_of.items() if s == source}
        boxes = sum(len(voc.parse(dataset.annotation_for(n)).objects) for n in mine & present)
        dups = [n for n in mine if n in quarantined]
        across = [n for n in dups if source_of[quarantined[n]["duplicate_of"]] != source]
        assert per_source[source] == {"format": "voc", "images": len(mine & present), "boxes": boxes,
                                      "duplicates": len(dups), "duplicates_of_other_sources": len(across)}
        assert f"source {source} (voc): {len(mine & present)} images, {boxes} boxes, {len(dups)} duplicates" in out.stdout
    assert per_source[str(second)]["duplicates_of_other_sources"] >= len(held["copies"])
    page = (dataset.export / "report.html").read_text()
    assert "Per source" in page and str(second) in page
