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


def _kill_at_every_point(tmp_path, points, command, prepare, check):
    """For each write point k: prepare a fresh DATA, run command(DATA) killed at k, run it again
    whole, then check(dataset, k) and remove DATA."""
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        prepare(data)
        killed = maskset(*command(data), MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        again = maskset(*command(data))
        assert again.returncode == 0, (k, points[k - 1], again.stdout, again.stderr)
        check(Dataset.at(data), (k, points[k - 1]))
        shutil.rmtree(data)


def _sample_with_copies(tmp_path):
    """A dataset of 3 scenes + 1 exact and 1 near copy: (its folder, {name: digest}, files by digest)."""
    src = tmp_path / "src"
    make_sample(src, count=3, size=(160, 120), seed=5, duplicates=1)
    base = tmp_path / "base"
    assert maskset("import", "--data", str(base), "--src", str(src)).returncode == 0
    originals = {p.name: digest(p) for p in Dataset.at(base).image_files()}
    return base, originals, files_by_digest(Dataset.at(base))


@pytest.mark.slow
def test_import_killed_at_every_write_point_then_rerun(tmp_path):
    src = tmp_path / "src"
    make_sample(src, count=5, size=(160, 120), seed=3, duplicates=0)
    (src / "scene_0004.xml").unlink()  # one image comes without its VOC file
    expected = Counter(digest(p) for p in src.glob("*.jpg"))
    points = write_points(tmp_path, "import", "--data", str(tmp_path / "count"), "--src", str(src))
    assert len(points) >= 10 and any("manifest" in p for p in points)

    def check(dataset, where):
        assert_consistent(dataset, expected)
        assert len(dataset.annotation_files()) == 4 and sorted(dataset.classes()) == ["mask", "no_mask"], where

    _kill_at_every_point(tmp_path, points, lambda data: ("import", "--data", str(data), "--src", str(src)),
                         prepare=lambda data: None, check=check)


@pytest.mark.slow
def test_dedupe_killed_at_every_write_point_then_rerun_and_restore(tmp_path):
    base, originals, expected = _sample_with_copies(tmp_path)
    count = tmp_path / "count"
    shutil.copytree(base, count)
    points = write_points(tmp_path, "dedupe", "--data", str(count), "--quiet")
    assert any(p.split()[1] == "linked" for p in points)
    kept = len(Dataset.at(count).image_files())
    assert kept == len(originals) - 2

    def check(dataset, where):
        assert_consistent(dataset, expected)
        assert len(dataset.image_files()) == kept, where
        back = maskset("restore", "--data", str(dataset.root), "--quiet")
        assert back.returncode == 0, (where, back.stdout, back.stderr)
        assert {p.name: digest(p) for p in dataset.image_files()} == originals, where

    _kill_at_every_point(tmp_path, points, lambda data: ("dedupe", "--data", str(data), "--quiet"),
                         prepare=lambda data: shutil.copytree(base, data), check=check)


@pytest.mark.slow
def test_restore_killed_at_every_write_point_then_rerun(tmp_path):
    base, originals, expected = _sample_with_copies(tmp_path)
    assert maskset("dedupe", "--data", str(base), "--quiet").returncode == 0
    assert len(Dataset.at(base).image_files()) == len(originals) - 2  # two to bring back
    count = tmp_path / "count"
    shutil.copytree(base, count)
    points = write_points(tmp_path, "restore", "--data", str(count), "--quiet")
    assert any(p.split()[1] == "linked" for p in points) and any("manifest" in p for p in points), points

    def check(dataset, where):
        assert_consistent(dataset, expected)
        assert {p.name: digest(p) for p in dataset.image_files()} == originals, where

    _kill_at_every_point(tmp_path, points, lambda data: ("restore", "--data", str(data), "--quiet"),
                         prepare=lambda data: shutil.copytree(base, data), check=check)
