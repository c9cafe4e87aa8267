"""Shared fixtures. Real data is read from ../shared (never copied into the repository)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared"))
SEED_VOC = SHARED / "data" / "seed-voc"
ARTIFACTS = Path(os.environ.get("MASKSET_ARTIFACTS", REPO / "test-artifacts"))



@pytest.fixture(scope="session")
def seed_voc() -> Path:
    """The real seed data (691 images + VOC). Read-only: import it into a tmp dataset to change it."""
    if not (SEED_VOC / "images").is_dir():
        pytest.fail(f"{SEED_VOC} is missing: the tests need ../shared/data/seed-voc beside the repo")
    return SEED_VOC


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave screenshots and pages for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def sample_src(tmp_path_factory) -> Path:
    """A rendered labelImg folder (images + VOC side by side), made once per test session."""
    from dataset.fixtures.scenes import make_sample
    folder = tmp_path_factory.mktemp("sample-src")
    make_sample(folder, count=24, size=(320, 240), seed=7, duplicates=3)
    return folder


@pytest.fixture
def sample_dataset(tmp_path, sample_src):
    """A fresh dataset folder with the sample imported into it."""
    from dataset.importer import import_folder
    from dataset.layout import Dataset
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, sample_src)
    return dataset



@pytest.fixture
def gui_tools():
    """Fail (never skip) when Xvfb or xdotool is missing: the GUI tests are the proof that
    labelImg works, so a machine without them must not pass quietly."""
    from dataset.fixtures.display import INSTALL_HINT, missing_tools
    if missing_tools():
        pytest.fail(f"the GUI tests need {', '.join(missing_tools())}: {INSTALL_HINT}")


# -- deploy: one tiny run trained on two devices, and its exports (tests/test_devices.py,
# test_export_model.py, test_live.py share them) -------------------------------------------------
DEPLOY_TRAIN = dict(EPOCHS=2, STEPS=8, BATCH=4, WEIGHTS="none", LR="8e-4", IMAGE_MIN_SIDE=96, IMAGE_MAX_SIDE=120,
                    TRAIN_SEED=1, FREEZE_BACKBONE=0, RANDOM_TRANSFORM=0, DEVICES=2)


@pytest.fixture(scope="session")
def deploy_run(tmp_path_factory):
    """(dataset, runs folder, run folder, make's output): `make train DEVICES=2` on the easy set
    of tests/test_train.py. Trained data-parallel on two logical CPU devices, it is the
    two-device test's run and the model every export, detect and live test runs."""
    from test_train import train_easy
    return train_easy(tmp_path_factory.mktemp("deploy"), DEPLOY_TRAIN)


@pytest.fixture(scope="session")
def exported(deploy_run):
    """exported(FORMAT) -> (model path, make's output, manifest): `make export-model` once per format."""
    import json
    from helpers import make
    from training.runtimes import manifest_path
    dataset, runs_dir, run_dir, _ = deploy_run
    done = {}
    model = {"savedmodel": "savedmodel", "onnx": "model.onnx", "tflite": "model.tflite", "ncnn": "model.ncnn.param"}

    def export(fmt: str):
        if fmt not in done:
            result = make("export-model", data=dataset.root, RUNS=runs_dir, RUN=run_dir, FORMAT=fmt,
                          check=False, timeout=900)
            path = run_dir / "export" / model[fmt]
            assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            done[fmt] = (path, result, json.loads(manifest_path(path).read_text()))
        return done[fmt]
    return export
