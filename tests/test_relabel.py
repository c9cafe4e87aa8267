"""make relabel MAP=...: classes renamed (or merged) across a dataset, VOC files rewritten
atomically with every other tag kept, originals in quarantine/relabel/, classes.txt updated, one
manifest record per relabelled image; safe to kill at every write point (issue 12)."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter

import pytest

from dataset import manifest, voc
from dataset.layout import Dataset
from helpers import MASKSET, assert_consistent, files_by_digest, make


def class_counts(dataset: Dataset) -> Counter:
    return Counter(o.name for xml in dataset.annotation_files() for o in voc.parse(xml).objects)


@pytest.fixture(scope="module")
def seed_base(tmp_path_factory, seed_voc):
    data = tmp_path_factory.mktemp("relabel") / "data"
    make("import", f"SRC={seed_voc}", data=data)
    return data


@pytest.fixture
def seed(tmp_path, seed_base) -> Dataset:
    shutil.copytree(seed_base, tmp_path / "data")
    return Dataset.at(tmp_path / "data")


def test_rename_across_the_seed_data(seed):
    before = {p.name: p.read_bytes() for p in seed.annotation_files()}
    holding = {name for name, data in before.items() if b"<name>noMask</name>" in data}
    counts = class_counts(seed)
    out = make("relabel", "MAP=noMask=no_mask", data=seed.root)
    assert f"noMask -> no_mask ({counts['noMask']} boxes); {len(holding)} VOC files rewritten" in out.stdout
    assert seed.classes() == ["no_mask", "mask"]
    assert class_counts(seed) == {"no_mask": counts["noMask"], "mask": counts["mask"]}
    backups = list((seed.quarantine / "relabel").glob("*/*.xml"))
    assert {p.name for p in backups} == holding                       # the originals, byte for byte
    assert all(p.read_bytes() == before[p.name] for p in backups)
    assert next((seed.quarantine / "relabel").glob("*/classes.txt")).read_text().split() == ["noMask", "mask"]
    for name, data in before.items():                                 # only the names changed
        now = (seed.annotations / name).read_bytes()
        assert now == data.replace(b"<name>noMask</name>", b"<name>no_mask</name>") or name not in holding
        if name not in holding:
            assert now == data
    records = [r for r in manifest.read_records(seed) if r["event"] == "relabelled"]
    assert len(records) == len(holding)
    assert {r["annotation"] for r in records} == {f"annotations/{n}" for n in holding}
    assert all(r["renamed"] == {"noMask": "no_mask"} and (seed.root / r["original"]).is_file() for r in records)
    assert make("validate", data=seed.root).returncode == 0
    again = make("relabel", "MAP=noMask=no_mask", data=seed.root)         # the same again: nothing to do
    assert "0 VOC files rewritten (nothing holds those classes: relabelled already?)" in again.stdout


def test_merging_two_classes_into_one(seed):
    counts = class_counts(seed)
    out = make("relabel", "MAP=noMask=face,mask=face", data=seed.root)
    assert "face now holding several classes' boxes" in out.stdout
    assert seed.classes() == ["face"] and class_counts(seed) == {"face": sum(counts.values())}
    assert make("validate", data=seed.root).returncode == 0


def test_onto_an_existing_class_merges_and_unknown_names_change_nothing(seed):
    before = {p: p.read_bytes() for p in seed.root.rglob("*") if p.is_file() and p.name != ".lock"}
    refused = make("relabel", "MAP=nomask=no_mask", data=seed.root, check=False)
    assert refused.returncode == 2
    assert "'nomask' is in neither" in refused.stderr and "case-sensitive" in refused.stderr
    empty = make("relabel", data=seed.root, check=False)
    assert empty.returncode == 2 and 'MAP="noMask=no_mask"' in empty.stderr
    assert {p: p.read_bytes() for p in seed.root.rglob("*") if p.is_file() and p.name != ".lock"} == before
    make("relabel", "MAP=noMask=mask", data=seed.root)
    assert seed.classes() == ["mask"] and set(class_counts(seed)) == {"mask"}


def test_a_draft_stays_a_draft_and_other_tags_are_kept(tmp_path, sample_src):
    data = tmp_path / "data"
    make("import", f"SRC={sample_src}", data=data)
    dataset = Dataset.at(data)
    xml = dataset.annotations / "scene_0001.xml"
    ann = voc.parse(xml)
    ann.draft = True
    xml.write_bytes(voc.to_xml(ann).replace(b"<segmented>", b"<note>kept</note><segmented>"))
    make("relabel", "MAP=no_mask=bare", data=data)
    after = voc.parse(xml)
    assert after.draft and b"<note>kept</note>" in xml.read_bytes()
    assert [o.name for o in after.objects] == [{"no_mask": "bare"}.get(o.name, o.name) for o in ann.objects]


def maskset(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([MASKSET, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MASKSET_PROGRESS": "0", **{k: str(v) for k, v in env.items()}})


@pytest.mark.slow
def test_relabel_killed_at_every_write_point_then_rerun(tmp_path):
    from dataset.fixtures.scenes import make_sample
    src = tmp_path / "src"
    make_sample(src, count=4, size=(160, 120), seed=3, duplicates=0)
    base = tmp_path / "base"
    assert maskset("import", "--data", str(base), "--src", str(src)).returncode == 0
    expected_images = files_by_digest(Dataset.at(base))
    expected_counts = Counter({{"no_mask": "bare"}.get(k, k): v for k, v in class_counts(Dataset.at(base)).items()})
    count = tmp_path / "count"
    shutil.copytree(base, count)
    log = tmp_path / "points.txt"
    assert maskset("relabel", "--data", str(count), "--map", "no_mask=bare", MASKSET_WRITE_POINTS=log).returncode == 0
    points = log.read_text().splitlines()
    assert len(points) >= 10 and any("relabel journal" in p for p in points)
    relabelled = sum(r["event"] == "relabelled" for r in manifest.read_records(Dataset.at(count)))
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        shutil.copytree(base, data)
        killed = maskset("relabel", "--data", str(data), "--map", "no_mask=bare", MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        # the next relabel (here the same one) first finishes the interrupted change
        again = maskset("relabel", "--data", str(data), "--map", "no_mask=bare")
        dataset = Dataset.at(data)
        assert again.returncode == 0, (k, points[k - 1], again.stderr)
        assert class_counts(dataset) == expected_counts, (k, points[k - 1])
        assert dataset.classes() == ["mask", "bare"] or dataset.classes() == ["bare", "mask"], k
        records = [r for r in manifest.read_records(dataset) if r["event"] == "relabelled"]
        assert len(records) == relabelled and len({r["op"] for r in records}) == relabelled, (k, points[k - 1])
        assert all((data / r["original"]).is_file() for r in records)
        assert_consistent(dataset, expected_images)
        shutil.rmtree(data)
