"""make train / evaluate / detect fail clearly, naming the file and the fix; detect's box
clean-up (no TensorFlow needed)."""
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


def test_detect_drops_inverted_and_off_image_boxes_and_clips_the_rest():
    # A weakly trained RetinaNet can regress x2 < x1 (CI once saw [72.8, .., 71.0, ..]).
    from training.detect import clip_box
    assert clip_box([72.8, 10, 71.0, 40], 160, 128) is None
    assert clip_box([10, 50, 40, 49.96], 160, 128) is None      # equal after rounding to 0.1 px
    assert clip_box([170, 10, 200, 40], 160, 128) is None       # wholly right of the image
    assert clip_box([-5.04, -1, 30.26, 200], 160, 128) == [0.0, 0.0, 30.3, 128.0]
