"""The dataset folder's primitives: lock, atomic writes, manifest."""
import os
import signal
import runpy
import subprocess
import sys

import pytest

from dataset import atomic, manifest
from dataset.layout import Dataset, DatasetLocked
from helpers import REPO, make


def _hold_lock(root, stage="scrape"):
    """A separate process that takes the dataset lock and waits."""
    code = ("import time\n"
            "from dataset.layout import Dataset\n"
            "with Dataset.at(%r).lock(%r):\n    print('held', flush=True); time.sleep(60)\n") % (
        str(root), stage)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_naming_the_holder(sample_dataset):
    holder = _hold_lock(sample_dataset.root, "scrape")
    try:
        with pytest.raises(DatasetLocked) as error:
            with sample_dataset.lock("validate"):
                pass
        assert "`scrape`" in str(error.value) and f"pid {holder.pid}" in str(error.value)
        result = make("validate", data=sample_dataset.root, check=False)
        assert result.returncode != 0
        assert "another stage is writing this dataset" in result.stderr and "`scrape`" in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_when_the_holder_is_killed(sample_dataset):
    holder = _hold_lock(sample_dataset.root)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with sample_dataset.lock("validate"):  # no stale lock after kill -9
        pass


def test_atomic_write_leaves_old_file_or_new_never_half(tmp_path):
    target = tmp_path / "a.txt"
    atomic.write_text(target, "old")
    with pytest.raises(TypeError):
        atomic.write_bytes(target, object())  # fails mid-write
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind


def test_move_never_overwrites(tmp_path):
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    moved = atomic.move_file(tmp_path / "a", tmp_path / "b")
    assert moved.name == "b-1" and (tmp_path / "b").read_text() == "b" and moved.read_text() == "a"


def test_manifest_folds_updates_and_skips_a_torn_last_line(tmp_path, caplog):
    dataset = Dataset.at(tmp_path)
    manifest.append(dataset, {"file": "x.jpg", "event": "added", "sha256": "ab", "origin": "import"})
    manifest.append(dataset, {"file": "x.jpg", "event": "quarantined", "reason": "near-duplicate"})
    with open(dataset.manifest, "a") as handle:
        handle.write('{"file": "y.jpg", "eve')  # a crash mid-append
    state = manifest.state(dataset)
    assert state["x.jpg"]["event"] == "quarantined" and state["x.jpg"]["sha256"] == "ab"
    assert "y.jpg" not in state
    assert "incomplete last line" in caplog.text  # a warning through logging (the CLI prints it)
    assert manifest.known_sha256(dataset) == {"ab"}


def test_classes_file_errors_name_the_line(tmp_path):
    dataset = Dataset.at(tmp_path)
    dataset.classes_file.write_text("mask\nno,mask\n")
    from dataset.errors import MasksetError
    with pytest.raises(MasksetError, match=r"classes.txt:2: .*comma"):
        dataset.classes()


def test_check_system_names_the_missing_package(monkeypatch, capsys):
    check_system = runpy.run_path(str(REPO / "scripts" / "check_system.py"))
    monkeypatch.setattr(check_system["shutil"], "which",
                        lambda name: None if name == "xdotool" else "/usr/bin/" + name)
    assert check_system["main"](["--require", "test"]) == 1
    err = capsys.readouterr().err
    assert "xdotool" in err and "apt-get install -y xdotool" in err


def test_voc_write_never_replaces_an_existing_annotation(tmp_path):
    from dataset import voc
    from dataset.errors import MasksetError
    person = tmp_path / "x.xml"
    person.write_bytes(b"<annotation>saved by a person</annotation>")
    with pytest.raises(MasksetError, match="never overwrites"):
        voc.write(voc.VocAnnotation("x.jpg", 10, 10), person)
    assert person.read_bytes() == b"<annotation>saved by a person</annotation>"
    assert [p.name for p in tmp_path.iterdir()] == ["x.xml"]  # no temp file left behind
