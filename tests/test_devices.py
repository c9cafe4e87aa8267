"""make train DEVICES=N: data-parallel training through TensorFlow's MirroredStrategy, run here on two
logical CPU devices (the machine has no GPU; on one with GPUs the same target uses them).

The run is conftest's deploy_run (`make train DEVICES=2 BATCH=4`, from scratch, 2 epochs of 8 steps
at 96-120 px); the export, detect and live tests use the same run.
"""
from __future__ import annotations

import json

import pytest

from conftest import DEPLOY_TRAIN
from helpers import make
from test_train import assert_loss_falls, log_rows

pytestmark = pytest.mark.slow


def test_config_records_the_devices_and_the_batch_split_over_them(deploy_run):
    _, _, run_dir, result = deploy_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["devices"] == "2"
    assert config["device_names"] == ["/cpu:0", "/cpu:1"]
    assert config["replicas"] == 2 and config["batch"] == 4 and config["per_replica_batch"] == 2
    assert "2 logical cpu devices (MirroredStrategy: cpu:0, cpu:1)" in result.stdout
    assert "batch 4 (2 per device)" in result.stdout
    assert "it does not train faster" in result.stderr  # said once: logical CPUs share the cores


def test_the_learning_rate_is_the_one_asked_for_not_scaled_by_the_devices(deploy_run):
    _, _, run_dir, _ = deploy_run
    rows = log_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["lr"]) == pytest.approx(float(DEPLOY_TRAIN["LR"]), rel=1e-6)


def test_two_device_loss_falls(deploy_run):
    assert_loss_falls(deploy_run[2], "two devices: ")


def test_the_two_device_snapshot_loads_and_make_evaluate_scores_it(deploy_run):
    from training.model import load_snapshot, optimizer_lr
    dataset, runs_dir, run_dir, _ = deploy_run
    model, _ = load_snapshot(run_dir / "snapshots" / "last.h5", "resnet50")  # on one device, no strategy
    assert optimizer_lr(model) == pytest.approx(float(DEPLOY_TRAIN["LR"]), rel=1e-6)
    # PART=val: once the split has a test part, make evaluate scores that by default (issue 13)
    result = make("evaluate", data=dataset.root, RUNS=runs_dir, RUN=run_dir, PART="val")
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    best = max(float(r["val_mAP"]) for r in log_rows(run_dir))
    print(f"make evaluate on the two-device run: mAP {evaluation['mAP']:.4f} (best epoch's val mAP {best:.4f})")
    assert evaluation["mAP"] > 0.05 and "mAP" in result.stdout
    assert evaluation["mAP"] == pytest.approx(best, abs=1e-6)  # inference.h5 is the best epoch's snapshot


def test_a_batch_that_does_not_split_over_the_devices_is_refused(deploy_run, tmp_path):
    dataset = deploy_run[0]
    result = make("train", data=dataset.root, RUNS=tmp_path / "runs", **{**DEPLOY_TRAIN, "BATCH": 3}, check=False)
    assert result.returncode == 2
    assert "BATCH=3 cannot be split evenly over 2 devices" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder


def test_devices_words():
    from dataset.errors import MasksetError
    from training.devices import parse
    assert parse(None) == 1 and parse("1") == 1 and parse(" 4 ") == 4 and parse("ALL") == "all"
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(MasksetError, match="DEVICES="):
            parse(bad)
