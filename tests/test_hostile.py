"""Hostile and unlucky input (issue 20): each case ends in a clear error or a correct result, never
a traceback, and never loses or leaks data. The numbers in the names follow the issue's list."""
from __future__ import annotations

import json
from collections import Counter
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from dataset import manifest, voc
from dataset.cli import call
from dataset.errors import MasksetError
from dataset.fixtures.scenes import make_sample
from dataset.layout import Dataset
from helpers import MASKSET, assert_consistent, digest, make

SECRET = "MASKSET_TEST_SECRET=hunter2"


def maskset(*args, check=False, preexec_fn=None, **env):
    result = subprocess.run([MASKSET, *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MASKSET_PROGRESS": "0", **env}, preexec_fn=preexec_fn)
    assert "Traceback" not in result.stderr, result.stderr
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def src(tmp_path) -> Path:
    """A flat labelImg folder of 4 rendered scenes."""
    folder = tmp_path / "src"
    make_sample(folder, count=4, size=(160, 120), seed=11, duplicates=0)
    return folder


def imported(tmp_path, src) -> Dataset:
    dataset = Dataset.at(tmp_path / "data")
    maskset("import", "--data", str(dataset.root), "--src", str(src), check=True)
    return dataset


def set_text(path: Path, tag: str, text: str, index: int = 0) -> None:
    def change(root):
        root.findall(f".//{tag}")[index].text = text
    path.write_bytes(voc.edited(path, change))


# -- security ---------------------------------------------------------------------------------
def test_01_import_never_reads_through_a_link_out_of_src(tmp_path, src):
    secret = tmp_path / "elsewhere" / "environ"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    (src / "scene_0000.xml").unlink()
    (src / "scene_0000.xml").symlink_to(secret)          # as `ln -s /proc/self/environ x.xml`
    (src / "inside.jpg").symlink_to(src / "scene_0001.jpg")  # a link that stays inside SRC is fine
    result = maskset("import", "--data", str(tmp_path / "data"), "--src", str(src), check=True)
    dataset = Dataset.at(tmp_path / "data")
    assert "outside SRC: not read" in result.stdout
    assert all(SECRET not in p.read_text(errors="replace") for p in dataset.annotations.iterdir())
    assert not dataset.annotation_for("scene_0000.jpg").exists()  # pending, not the secret
    assert (dataset.images / "inside.jpg").exists()


def test_02_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path, src):
    dataset = imported(tmp_path, src)
    precious = tmp_path / "precious.txt"
    precious.write_text("a user's file")
    dataset.lock_file.unlink()
    dataset.lock_file.symlink_to(precious)
    for stage in ("validate", "export", "report"):
        result = maskset(stage, "--data", str(dataset.root))
        assert result.returncode == 2 and "symbolic link" in result.stderr, (stage, result.stderr)
    assert precious.read_text() == "a user's file"


def test_03_restore_never_trusts_manifest_paths(tmp_path, src):
    dataset = imported(tmp_path, src)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not the dataset's")
    manifest.append(dataset, {"file": "../../x", "event": "quarantined", "reason": "near-duplicate",
                              "moved_to": str(outside)})
    manifest.append(dataset, {"file": "y.jpg", "event": "quarantined", "reason": "exact-duplicate",
                              "moved_to": "../outside.jpg"})
    assert not (dataset.quarantine / "duplicates").exists()
    result = maskset("restore", "--data", str(dataset.root))
    assert result.returncode == 1 and result.stdout.count("is not trusted") == 2, result.stdout
    assert outside.read_bytes() == b"not the dataset's" and not (tmp_path / "x").exists()


# -- data loss ----------------------------------------------------------------------------------
def test_04_a_torn_manifest_line_never_eats_the_next_record(tmp_path, src):
    dataset = imported(tmp_path, src)
    with open(dataset.manifest, "a") as handle:
        handle.write('{"file": "torn.jpg", "eve')  # a crash mid-append
    more = tmp_path / "more"
    make_sample(more, count=2, size=(160, 120), seed=12, duplicates=0, prefix="more")
    result = maskset("import", "--data", str(dataset.root), "--src", str(more), check=True)
    assert "incomplete last line" in result.stderr
    records = manifest.read_records(dataset)  # no error: the torn bytes were set aside
    assert {"more_0000.jpg", "more_0001.jpg"} <= {r["file"] for r in records}
    assert '"eve' in (dataset.root / "manifest.jsonl.torn").read_text()
    maskset("dedupe", "--data", str(dataset.root), "--quiet", check=True)  # the next stage reads it


def test_05_ctrl_c_during_import_then_rerun_is_consistent(tmp_path, src):
    expected = Counter(digest(p) for p in src.glob("*.jpg"))
    log = tmp_path / "points.txt"
    maskset("import", "--data", str(tmp_path / "count"), "--src", str(src), MASKSET_WRITE_POINTS=str(log),
            check=True)
    points = len(log.read_text().splitlines())
    for k in range(1, points + 1, 2):
        data = tmp_path / f"interrupted-{k}"
        stopped = maskset("import", "--data", str(data), "--src", str(src), MASKSET_KILL_AT=str(k),
                          MASKSET_KILL_SIGNAL="INT")
        assert stopped.returncode == 130 and "interrupted" in stopped.stderr, (k, stopped.stderr)
        maskset("import", "--data", str(data), "--src", str(src), check=True)
        assert_consistent(Dataset.at(data), expected)


def test_07_infinite_numbers_are_errors_naming_the_field_and_the_rest_arrives(tmp_path, src):
    set_text(src / "scene_0000.xml", "width", "1e309")
    set_text(src / "scene_0001.xml", "xmax", "inf")
    first = maskset("import", "--data", str(tmp_path / "data"), "--src", str(src), check=True)
    again = maskset("import", "--data", str(tmp_path / "data"), "--src", str(src), check=True)
    dataset = Dataset.at(tmp_path / "data")
    assert len(dataset.image_files()) == 4 and "0 images" in again.stdout.splitlines()[-1], first.stdout
    checked = maskset("validate", "--data", str(dataset.root))
    assert checked.returncode == 1
    assert "annotations/scene_0000.xml: <size><width>: '1e309' is not a finite number" in checked.stdout
    assert "annotations/scene_0001.xml: <object> #1 <bndbox><xmax>: 'inf' is not a finite number" in checked.stdout
    maskset("dedupe", "--data", str(dataset.root), "--dry-run", "--quiet", check=True)
    maskset("report", "--data", str(dataset.root), check=True)


def test_08_a_voc_file_added_to_src_later_is_imported(tmp_path, src):
    xml = (src / "scene_0002.xml").read_bytes()
    (src / "scene_0002.xml").unlink()
    dataset = imported(tmp_path, src)
    assert not dataset.annotation_for("scene_0002.jpg").exists()
    (src / "scene_0002.xml").write_bytes(xml)
    result = maskset("import", "--data", str(dataset.root), "--src", str(src), check=True)
    assert "0 images and 1 annotations imported, 4 already there" in result.stdout
    assert voc.parse(dataset.annotation_for("scene_0002.jpg")).filename == "scene_0002.jpg"


def test_09_src_inside_data_is_refused(tmp_path, src):
    shutil.copy(src / "scene_0000.jpg", src / "copy.jpg")  # a duplicate, for quarantine/duplicates/
    dataset = imported(tmp_path, src)
    maskset("dedupe", "--data", str(dataset.root), "--quiet", check=True)
    before = sorted(p.name for p in dataset.images.iterdir())
    for inside in (dataset.root, dataset.images, dataset.quarantine / "duplicates"):
        result = make("import", f"SRC={inside}", data=dataset.root, check=False)
        assert result.returncode == 2 and "is inside DATA" in result.stderr, result.stderr
    assert sorted(p.name for p in dataset.images.iterdir()) == before


# -- tracebacks instead of clear errors ----------------------------------------------------------------
def test_10_fix_with_a_nan_box_changes_nothing_it_cannot_fix(tmp_path, src):
    dataset = imported(tmp_path, src)
    bad = dataset.annotation_for("scene_0000.jpg")
    set_text(bad, "xmin", "nan")
    set_text(bad, "width", "999")
    set_text(dataset.annotation_for("scene_0001.jpg"), "width", "999")  # fixable
    broken = bad.read_bytes()
    result = maskset("validate", "--data", str(dataset.root), "--fix")
    assert result.returncode == 1 and "'nan' is not a finite number" in result.stdout
    assert bad.read_bytes() == broken
    assert voc.parse(dataset.annotation_for("scene_0001.jpg")).width == 160  # the other one was fixed


def test_11_an_inverted_box_does_not_break_the_review_page(tmp_path, src):
    shutil.copy(src / "scene_0000.jpg", src / "copy.jpg")
    shutil.copy(src / "scene_0000.xml", src / "copy.xml")
    set_text(src / "copy.xml", "xmin", "150")
    set_text(src / "copy.xml", "xmax", "20")
    dataset = imported(tmp_path, src)
    result = maskset("dedupe", "--data", str(dataset.root), "--dry-run", "--quiet", check=True)
    assert "1 files would be quarantined" in result.stdout and (dataset.export / "dedupe.html").exists()


def test_12_long_names_arrive(tmp_path, src):
    for old, new in (("scene_0000", "a" * 240), ("scene_0001", "顔" * 80)):
        (src / f"{old}.jpg").rename(src / f"{new}.jpg")
        (src / f"{old}.xml").rename(src / f"{new}.xml")
    dataset = imported(tmp_path, src)
    assert len(dataset.image_files()) == 4 and len(dataset.annotation_files()) == 4
    assert all(len(p.name.encode()) <= 255 for p in dataset.images.iterdir())
    maskset("validate", "--data", str(dataset.root), check=True)


@pytest.mark.parametrize("line", ["[1, 2]", "42", "null", '{"event": "added"}'])
def test_13_manifest_lines_that_are_not_records_name_the_line(tmp_path, src, line):
    dataset = imported(tmp_path, src)
    records = dataset.manifest.read_text().splitlines()
    dataset.manifest.write_text("\n".join(records[:2] + [line] + records[2:]) + "\n")
    for stage in (["import", "--src", str(src)], ["dedupe"], ["restore"]):
        result = maskset(stage[0], "--data", str(dataset.root), *stage[1:])
        assert result.returncode == 2 and "manifest.jsonl:3: not a record" in result.stderr, (stage, result.stderr)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_14_classes_txt_in_utf16_or_with_a_bom(tmp_path, src, encoding):
    dataset = imported(tmp_path, src)
    dataset.classes_file.write_bytes("mask\nno_mask\n".encode(encoding))
    assert dataset.classes() == ["mask", "no_mask"]
    maskset("validate", "--data", str(dataset.root), check=True)
    dataset.classes_file.write_bytes("mask\nno_mask\xe9\n".encode("latin-1"))
    result = maskset("validate", "--data", str(dataset.root))
    assert result.returncode == 2 and "classes.txt: byte 12 is not UTF-8 text" in result.stderr


def in_namespace(script: str, *args) -> subprocess.CompletedProcess:
    """`maskset args` after `script` ran in a private mount namespace (util-linux's unshare): a
    read-only bind mount or a tiny tmpfs, seen by this one command only."""
    result = subprocess.run(["unshare", "-m", "sh", "-c", script + ' && exec "$@"', "sh", MASKSET, *args],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MASKSET_PROGRESS": "0"})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_15_read_only_data_reads_and_a_full_disk_is_a_clear_error(tmp_path, src):
    dataset = imported(tmp_path, src)
    maskset("export", "--data", str(dataset.root), check=True)
    before = {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*")}
    root = str(dataset.root)
    read_only = f'mount --bind "{root}" "{root}" && mount -o remount,bind,ro "{root}"'
    checked = in_namespace(read_only, "validate", "--data", root)
    assert checked.returncode == 0 and "read-only" in checked.stderr, checked.stderr
    report = in_namespace(read_only, "report", "--data", root)
    assert report.returncode == 0 and "OUT=" in report.stderr, report.stderr
    refused = in_namespace(read_only, "dedupe", "--data", root)
    assert refused.returncode == 2 and "read-only" in refused.stderr, refused.stderr
    assert {p: p.stat().st_mtime_ns for p in dataset.root.rglob("*")} == before

    disk = tmp_path / "disk"
    disk.mkdir()
    full = (f'mount -t tmpfs -o size=2m tmpfs "{disk}" && cp -a "{root}" "{disk}/data" && '
            f'(dd if=/dev/zero of="{disk}/filler" bs=4k 2>/dev/null; true)')
    result = in_namespace(full, "export", "--data", str(disk / "data"))
    assert result.returncode == 2 and "No space left on device" in result.stderr, result.stderr


def test_16_a_typo_in_data_or_src_is_an_error_and_creates_nothing(tmp_path, src):
    for stage in ("validate", "export", "split", "dedupe", "report"):
        result = make(stage, data=tmp_path / "typo", check=False)
        assert result.returncode == 2 and "no dataset here" in result.stderr, stage
    result = make("import", f"SRC={tmp_path / 'no-such-src'}", data=tmp_path / "new", check=False)
    assert result.returncode == 2 and "no such file or folder" in result.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "new").exists()


def test_17_report_shows_only_this_datasets_runs(tmp_path, src):
    dataset = imported(tmp_path, src)
    runs = tmp_path / "runs"
    for name, data in (("mine", dataset.root), ("theirs", tmp_path / "other-data")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps({"data": str(data), "backbone": "resnet50"}))
    result = call("report", dataset, runs=str(runs))
    assert [r["id"] for r in result.numbers["runs"]] == ["mine"]


def test_18_conflict_check_on_thousands_of_boxes_stays_small(tmp_path):
    from dataset.dedupe import Member, disagreement
    from dataset.voc import VocObject
    boxes = [VocObject("mask", x, y, x + 8, y + 8) for x in range(0, 1200, 20) for y in range(0, 1000, 20)]
    one = Member("a.jpg", "s", 0, width=1300, height=1100, annotation="annotations/a.xml", objects=boxes)
    other = Member("b.jpg", "t", 0, width=1300, height=1100, annotation="annotations/b.xml", objects=list(boxes))
    tracemalloc.start()
    assert disagreement(one, other) is None and len(boxes) == 3000
    moved = Member("c.jpg", "u", 0, width=1300, height=1100, annotation="annotations/c.xml",
                   objects=boxes[:-1] + [VocObject("mask", 1250, 1050, 1258, 1058)])
    assert "has no partner" in disagreement(one, moved)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 300 * 2**20, peak  # all 9 million pairs at once took 1 GB


def test_19_values_never_pass_through_a_shell(tmp_path, src):
    strange = tmp_path / 'da"ta `touch pwned`; touch pwned2 #'
    result = make("import", f"SRC={src}", data=strange, check=True)
    assert "4 images and 4 annotations imported" in result.stdout
    assert Dataset.at(strange).image_files() and not list(Path.cwd().glob("pwned*"))
    assert not list(Path(__file__).resolve().parents[1].glob("pwned*"))


def test_20_an_empty_val_part_is_said(tmp_path):
    tiny = tmp_path / "tiny"
    make_sample(tiny, count=1, size=(160, 120), seed=13, duplicates=0)
    dataset = Dataset.at(tmp_path / "data")
    maskset("import", "--data", str(dataset.root), "--src", str(tiny), check=True)
    maskset("export", "--data", str(dataset.root), check=True)
    result = maskset("split", "--data", str(dataset.root), check=True)
    assert "warning: val is empty" in result.stdout
    with pytest.raises(MasksetError):
        Dataset.at(tmp_path / "nowhere").require()
