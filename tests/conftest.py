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
