"""make train / evaluate / detect fail clearly, naming the file and the fix (no TensorFlow needed)."""
from __future__ import annotations

from helpers import make


def test_train_without_split_names_the_missing_csv_and_the_fix(sample_dataset, tmp_path):
    result = make("train", data=sample_dataset.root, RUNS=tmp_path / "runs", check=False)
    assert result.returncode == 2
    assert "export/classes.csv: missing" in result.stderr and "make export" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_train_names_a_missing_image_with_its_csv_line(sample_dataset, tmp_path):
    from dataset.export import export
    from dataset.split import make_split
    export(sample_dataset)
    make_split(sample_dataset, progress=False)
    rows = (sample_dataset.export / "train.csv").read_text().splitlines()
    rows[2] = "../images/gone.jpg" + rows[2][rows[2].index(","):]
    (sample_dataset.export / "train.csv").write_text("\n".join(rows) + "\n")
    result = make("train", data=sample_dataset.root, RUNS=tmp_path / "runs", WEIGHTS="none", check=False)
    assert result.returncode == 2
    assert "train.csv:3: image ../images/gone.jpg does not exist" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_flag_values_are_refused(tmp_path):
    result = make("train", data=tmp_path, FREEZE_BACKBONE="maybe", check=False)
    assert result.returncode == 2 and "FREEZE_BACKBONE='maybe'" in result.stderr


def test_evaluate_and_detect_without_runs_say_to_train_first(tmp_path):
    for target, extra in (("evaluate", {}), ("detect", {"IMAGE": tmp_path / "x.jpg"})):
        result = make(target, data=tmp_path, RUNS=tmp_path / "runs", check=False, **extra)
        assert result.returncode == 2
        assert "no training runs yet" in result.stderr and "make train" in result.stderr


def test_train_on_a_folder_that_is_no_dataset_says_how_to_make_one(tmp_path):
    result = make("train", data=tmp_path / "nowhere", check=False)
    assert result.returncode == 2 and "no dataset here" in result.stderr
