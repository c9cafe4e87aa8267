"""make demo: the main job runs every stage on its rendered sample, with no network."""
import json
import re

import pytest

from dataset import manifest
from dataset.layout import Dataset
from helpers import make

STAGES = ["sample", "scrape", "import", "dedupe", "prelabel", "validate", "export", "split", "train", "report"]


@pytest.mark.slow
def test_make_demo_runs_every_stage_and_summarises_it(tmp_path):
    work = tmp_path / "demo"
    result = make("demo", "QUICK=1", f"DEMO_DATA={work}", timeout=900)
    summary = result.stdout[result.stdout.index("=== demo summary ==="):]
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+)  (.*)$", summary, re.M)}
    assert list(lines)[:len(STAGES)] == STAGES

    dataset = Dataset.at(work / "data")
    state = manifest.state(dataset)
    added_by = {origin: sum(r.get("origin") == origin for r in state.values()) for origin in ("import", "scrape")}
    assert f"{added_by['import']} images and {added_by['import']} annotations imported" in lines["import"]
    quarantined = [r for r in state.values() if r.get("event") == "quarantined"]
    assert len(quarantined) >= 6  # the sample's 3 exact + 3 near copies at least
    assert f"{len(quarantined)} files quarantined" in lines["dedupe"]
    assert lines["validate"].startswith("2 errors found, 2 fixed")
    validate = json.loads((dataset.export / "validate.json").read_text())["summary"]
    assert validate["errors"] == 0
    train_rows = (dataset.export / "train.csv").read_text().splitlines()
    val_rows = (dataset.export / "val.csv").read_text().splitlines()
    test_rows = (dataset.export / "test.csv").read_text().splitlines()
    assert train_rows and val_rows and test_rows
    runs = sorted((work / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "inference.h5").exists() and (runs[0] / "evaluation.json").exists()
    assert json.loads((runs[0] / "evaluation.json").read_text())["part"] == "test" and "test mAP" in lines["train"]
    assert (dataset.export / "report.html").exists()
    assert str(dataset.export / "report.html") in lines["report"]


def test_demo_refuses_to_replace_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "data"
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "precious.jpg").write_bytes(b"a curator's photo")
    result = make("demo", "QUICK=1", f"DEMO_DATA={mine}", check=False)
    assert result.returncode != 0 and "was not made by `make demo`" in result.stderr
    assert (mine / "images" / "precious.jpg").read_bytes() == b"a curator's photo"
