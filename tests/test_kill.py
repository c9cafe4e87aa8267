"""kill -9 at every write point of import, dedupe and restore, then the same command again: the dataset
ends consistent, with nothing duplicated and nothing lost.

Every place a stage changes the dataset calls dataset.faults.point(); a first run counts them
(MASKSET_WRITE_POINTS), then one run per point is killed there (MASKSET_KILL_AT=k) and followed
by a normal run. The check after each: every image in images/ has exactly one live record,
every record points at its file, no file exists twice (nor a temp file at all), every VOC file
has its image, validate finds no errors, and restore gives back every original byte for byte.
"""
from __future__ import annotations

import shutil
from collections import Counter

import pytest

from dataset.fixtures.scenes import make_sample
from dataset.layout import Dataset
from helpers import assert_consistent, digest, files_by_digest, maskset, write_points


@pytest.mark.slow
def test_import_killed_at_every_write_point_then_rerun(tmp_path):
    src = tmp_path / "src"
    make_sample(src, count=5, size=(160, 120), seed=3, duplicates=0)
    (src / "scene_0004.xml").unlink()  # one image comes without its VOC file
    expected = Counter(digest(p) for p in src.glob("*.jpg"))
    points = write_points(tmp_path, "import", "--data", str(tmp_path / "count"), "--src", str(src))
    assert len(points) >= 10 and any("manifest" in p for p in points)
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        killed = maskset("import", "--data", str(data), "--src", str(src), MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        again = maskset("import", "--data", str(data), "--src", str(src))
        assert again.returncode == 0, (k, points[k - 1], again.stderr)
        dataset = Dataset.at(data)
        assert_consistent(dataset, expected)
        assert len(dataset.annotation_files()) == 4 and sorted(dataset.classes()) == ["mask", "no_mask"], k
        shutil.rmtree(data)


@pytest.mark.slow
def test_dedupe_killed_at_every_write_point_then_rerun_and_restore(tmp_path):
    src = tmp_path / "src"
    make_sample(src, count=3, size=(160, 120), seed=5, duplicates=1)  # 1 exact + 1 near copy
    base = tmp_path / "base"
    assert maskset("import", "--data", str(base), "--src", str(src)).returncode == 0
    originals = {p.name: digest(p) for p in Dataset.at(base).image_files()}
    expected = files_by_digest(Dataset.at(base))
    count = tmp_path / "count"
    shutil.copytree(base, count)
    points = write_points(tmp_path, "dedupe", "--data", str(count), "--quiet")
    assert any(p.split()[1] == "linked" for p in points)
    kept = len(Dataset.at(count).image_files())
    assert kept == len(originals) - 2
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        shutil.copytree(base, data)
        killed = maskset("dedupe", "--data", str(data), "--quiet", MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        again = maskset("dedupe", "--data", str(data), "--quiet")
        assert again.returncode == 0, (k, points[k - 1], again.stderr)
        dataset = Dataset.at(data)
        assert_consistent(dataset, expected)
        assert len(dataset.image_files()) == kept, (k, points[k - 1])
        back = maskset("restore", "--data", str(data), "--quiet")
        assert back.returncode == 0, (k, back.stdout, back.stderr)
        assert {p.name: digest(p) for p in dataset.image_files()} == originals, (k, points[k - 1])
        shutil.rmtree(data)


@pytest.mark.slow
def test_restore_killed_at_every_write_point_then_rerun(tmp_path):
    src = tmp_path / "src"
    make_sample(src, count=3, size=(160, 120), seed=5, duplicates=1)  # 1 exact + 1 near copy
    base = tmp_path / "base"
    assert maskset("import", "--data", str(base), "--src", str(src)).returncode == 0
    originals = {p.name: digest(p) for p in Dataset.at(base).image_files()}
    expected = files_by_digest(Dataset.at(base))
    assert maskset("dedupe", "--data", str(base), "--quiet").returncode == 0
    assert len(Dataset.at(base).image_files()) == len(originals) - 2  # two to bring back
    count = tmp_path / "count"
    shutil.copytree(base, count)
    points = write_points(tmp_path, "restore", "--data", str(count), "--quiet")
    assert any(p.split()[1] == "linked" for p in points) and any("manifest" in p for p in points), points
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        shutil.copytree(base, data)
        killed = maskset("restore", "--data", str(data), "--quiet", MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        again = maskset("restore", "--data", str(data), "--quiet")
        assert again.returncode == 0, (k, points[k - 1], again.stdout, again.stderr)
        dataset = Dataset.at(data)
        assert_consistent(dataset, expected)
        assert {p.name: digest(p) for p in dataset.image_files()} == originals, (k, points[k - 1])
        shutil.rmtree(data)
