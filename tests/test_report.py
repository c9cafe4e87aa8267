"""make report: the numbers in the report are the dataset's, counted here independently (with the
standard library's XML parser, not dataset.voc), and the page opens cleanly in real Chromium."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from dataset import manifest, voc
from dataset.dedupe import dedupe
from dataset.export import export
from dataset.importer import import_folder
from dataset.layout import Dataset
from dataset.report import collect
from dataset.report_page import write_report
from training.geometry import best_anchor_iou, resize_scale
from dataset.fixtures.scenes import make_sample
from dataset.split import make_split
from dataset.validate import validate
from helpers import make

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


# -- what the dataset holds, counted without maskset's code ----------------------------------------
def count_independently(root: Path) -> dict:
    images = sorted(p.name for p in (root / "images").iterdir() if not p.name.startswith("."))
    boxes, images_per_class = Counter(), Counter()
    annotated = pending = drafts = 0
    for name in images:
        xml = root / "annotations" / (Path(name).stem + ".xml")
        if not xml.exists():
            pending += 1
            continue
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError:
            pending += 1  # not annotated until it is readable, as make validate counts it
            continue
        if tree.get(voc.DRAFT_ATTRIBUTE) is not None:
            drafts += 1
            pending += 1
            continue
        annotated += 1
        names = [o.findtext("name") for o in tree.iter("object")]
        boxes.update(names)
        images_per_class.update(set(names))
    quarantined = [p for p in (root / "quarantine" / "duplicates").glob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png")] \
        if (root / "quarantine" / "duplicates").is_dir() else []
    return {"total": len(images), "annotated": annotated, "pending": pending, "drafts": drafts,
            "boxes": dict(boxes), "images_per_class": dict(images_per_class), "quarantined": len(quarantined)}


def assert_matches(numbers: dict, expected: dict) -> None:
    images, classes = numbers["images"], numbers["classes"]
    assert images["total"] == expected["total"]
    assert images["annotated"] == expected["annotated"]
    assert images["pending"] == expected["pending"]
    assert images["drafts"] == expected["drafts"]
    assert images["quarantined"]["total"] == expected["quarantined"]
    assert {k: v for k, v in classes["boxes"].items() if v} == expected["boxes"]
    assert {k: v for k, v in classes["images"].items() if v} == expected["images_per_class"]
    assert classes["total_boxes"] == sum(expected["boxes"].values())


# -- the seed data, as a user runs it ------------------------------------------------------------
@pytest.mark.slow
def test_report_of_seed_voc_matches_the_dataset(tmp_path, seed_voc):
    data = Dataset.at(tmp_path / "seed")
    import_folder(data, seed_voc, progress=False)
    with data.lock("dedupe"):
        dedupe(data, progress=False)

    result = make("report", data=data.root, RUNS=tmp_path / "no-runs")

    expected = count_independently(data.root)
    assert expected["quarantined"] > 50, "the seed data has many duplicates"  # 691 files, 619 distinct
    numbers = json.loads((data.export / "report.json").read_text())
    assert_matches(numbers, expected)
    assert numbers["images"]["total"] + expected["quarantined"] == 691
    assert set(numbers["classes"]["boxes"]) == {"mask", "noMask"}
    reasons = numbers["images"]["quarantined"]["by_reason"]
    assert sum(reasons.values()) == expected["quarantined"] and "exact-duplicate" in reasons
    sources = numbers["sources"]
    assert sources["origin"] == {"import": numbers["images"]["total"]}
    assert list(sources["import_sources"]) == [str(seed_voc.resolve() / "images")]
    # the duplicate section shows what dedupe wrote
    dedupe_json = json.loads((data.export / "dedupe.json").read_text())
    assert numbers["duplicates"]["groups"] == dedupe_json["groups"]
    # the text summary says the same, on the terminal
    assert f"images: {expected['total']} ({expected['annotated']} annotated, 0 pending)" in result.stdout
    assert f"{expected['quarantined']} quarantined" in result.stdout
    assert f"mask {expected['boxes']['mask']} in {expected['images_per_class']['mask']} images" in result.stdout
    page = (data.export / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 6 and 'src="http' not in page


# -- the sample, through every stage, with pending files, a draft and a broken VOC file -------------
@pytest.fixture
def full_dataset(tmp_path, sample_src):
    """The sample through import, dedupe, export and split, plus what a curator's
    dataset has in the middle of its life: new images not annotated yet, a machine draft, a VOC
    file that does not parse, a box with a class classes.txt lacks, tiny boxes, and two runs."""
    data = Dataset.at(tmp_path / "data")
    import_folder(data, sample_src, progress=False)
    new = tmp_path / "new"
    make_sample(new, count=5, size=(320, 240), seed=99, duplicates=0, annotate=False, prefix="new")
    import_folder(data, new, progress=False)
    with data.lock("test"):
        dedupe(data, progress=False)
    export(data, progress=False)
    make_split(data, val=0.25, seed=0, progress=False)
    # then the curator goes on: the split is now out of date
    voc.write(voc.VocAnnotation("new_0000.jpg", 320, 240, draft=True,
                                objects=[voc.VocObject("mask", 10, 10, 80, 90)]), data.annotations / "new_0000.xml")
    (data.annotations / "new_0001.xml").write_text("<annotation><filename>new_0001.jpg</filename><size>")
    tiny = voc.VocAnnotation("new_0002.jpg", 320, 240, objects=[
        voc.VocObject("no_mask", 10, 10, 15, 16), voc.VocObject("no_mask", 100, 100, 104, 105),
        voc.VocObject("face", 150, 50, 250, 170)])
    voc.write(tiny, data.annotations / "new_0002.xml")
    validate(data, progress=False)
    runs = tmp_path / "runs"
    for number, m_ap in ((1, 0.41), (2, 0.63)):
        run = runs / f"2026-11-22-run{number}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"backbone": "resnet50", "epochs": 3}))
        rows = ["epoch,loss,regression_loss,classification_loss,val_mAP,AP_mask,AP_no_mask,lr"]
        rows += [f"{e},{2.0 - e / 4},{1.0},{1.0 - e / 4},{m_ap * e / 3},{m_ap * e / 3},{m_ap * e / 3},1e-05"
                 for e in (1, 2, 3)]
        (run / "log.csv").write_text("\n".join(rows) + "\n")
        (run / "evaluation.json").write_text(json.dumps({"iou": 0.5, "mAP": m_ap, "classes": {
            "mask": {"ap": m_ap + 0.05, "instances": 9}, "no_mask": {"ap": m_ap - 0.05, "instances": 7}}}))
        _draw_curves(rows, run / "curves.png", f"run{number}")  # as training draws it
        for file in run.iterdir():
            os.utime(file, (1_700_000_000 + number * 3600,) * 2)  # run2 is the later one
    return data, runs


def _draw_curves(log_rows: list[str], path: Path, title: str) -> None:
    from matplotlib.figure import Figure
    header, *rows = [line.split(",") for line in log_rows]
    columns = {name: [float(r[i]) for r in rows] for i, name in enumerate(header)}
    fig = Figure(figsize=(6, 3), dpi=80)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(columns["epoch"], columns["loss"], label="loss")
    ax.plot(columns["epoch"], columns["val_mAP"], label="val mAP")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path)


def test_report_of_sample_matches_every_stage(full_dataset):
    data, runs = full_dataset
    page, report = write_report(data, runs, progress=False)
    numbers = report.numbers
    expected = count_independently(data.root)
    assert expected["pending"] == 4 and expected["drafts"] == 1 and expected["quarantined"] == 6
    assert_matches(numbers, expected)
    assert numbers["images"]["unparsable"] == 1
    assert numbers["classes"]["undeclared"] == ["face"]
    assert numbers["classes"]["tiny"]["by_class"]["no_mask"] == 2  # the two 5-px boxes, nothing else
    assert numbers["classes"]["tiny"]["count"] == 2

    validate_json = json.loads((data.export / "validate.json").read_text())
    validation = numbers["validation"]
    errors = sum(f["severity"] == "error" for f in validate_json["findings"])
    assert validation["ran"] and not validation["stale"] and validation["errors"] == errors > 0
    for key in ("images", "annotated", "pending", "drafts"):  # the two stages count alike
        assert validate_json["summary"][key] == numbers["images"]["total" if key == "images" else key], key
    assert sum(v.get("error", 0) for v in validation["by_kind"].values()) == errors
    assert validation["by_kind"]["unknown-class"] == {"error": 1}
    assert validation["by_kind"]["malformed-xml"] == {"error": 1}

    split_json = json.loads((data.export / "split.json").read_text())
    assert numbers["split"]["counts"] == split_json["counts"]
    assert numbers["split_stale"]  # annotations changed after make split

    assert [r["id"] for r in numbers["runs"]] == ["2026-11-22-run2", "2026-11-22-run1"]  # latest first
    by_id = {r["id"]: r for r in numbers["runs"]}
    assert by_id["2026-11-22-run2"]["mAP"] == 0.63 and by_id["2026-11-22-run2"]["epochs"] == 3
    assert by_id["2026-11-22-run1"]["classes"]["mask"]["ap"] == pytest.approx(0.46)

    html = page.read_text()
    for section in ("images", "classes", "sources", "duplicates", "validation", "split", "runs"):
        assert f'<section id="{section}">' in html
    assert 'href="../annotations/new_0001.xml"' in html  # findings link to the file
    assert 'href="dedupe.html"' in html
    assert 'alt="2026-11-22-run2 curves"' in html and "resnet50" in html


@pytest.mark.browser
def test_report_page_in_chromium_has_no_console_errors(full_dataset, artifacts):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    data, runs = full_dataset
    page, report = write_report(data, runs, progress=False)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="report-chromium-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--window-size=1400,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        problems = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert problems == [], problems
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert len(images) >= 9 and all(ok for _, ok in images), images
        assert driver.title.startswith("maskset report")
        cards = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('.card')].map("
            "c => [c.querySelector('.label').textContent, c.querySelector('.value').textContent]))")
        assert cards["images"] == str(report.numbers["images"]["total"])
        assert cards["pending"] == "4" and cards["quarantined"] == "6"
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 100, 12000))
        shot = artifacts / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 50_000
        shutil.copy(page, artifacts / "report.html")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- robustness ----------------------------------------------------------------------------------
def test_report_tolerates_missing_and_broken_stage_files(tmp_path):
    data = Dataset.at(tmp_path / "data").ensure()
    make_sample(data.images, count=3, annotate=False, duplicates=0)  # images only: no manifest
    (data.export / "validate.json").write_text("{not json")
    (data.export / "split.json").write_text("[1, 2]")
    run = tmp_path / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "log.csv").write_text("epoch,loss\n1,abc\n\x00\x00")
    page, report = write_report(data, tmp_path / "runs", progress=False)
    numbers = report.numbers
    assert numbers["images"]["total"] == 3 and numbers["images"]["pending"] == 3
    assert numbers["split"] is None and numbers["validation"]["ran"] is False
    assert any("validate.json" in p for p in numbers["problems"])
    assert any("split.json" in p for p in numbers["problems"])
    assert numbers["runs"][0]["id"] == "broken" and numbers["runs"][0]["mAP"] is None
    assert numbers["sources"]["origin"] == {"not in manifest": 3}
    assert "cannot read" in page.read_text()


def test_make_report_names_a_missing_dataset(tmp_path):
    result = make("report", data=tmp_path / "nowhere", check=False)
    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere'}: no dataset here" in result.stderr


def test_tiny_box_rule_follows_retinanet_anchors():
    # keras-retinanet resizes 320x240 by 800/240; a box of side s is then s*10/3 px
    assert resize_scale(320, 240) == pytest.approx(800 / 240)
    assert resize_scale(4000, 1000) == pytest.approx(1333 / 4000)  # the long side caps the scale
    # centred on a 32x32 anchor, a 20x20 box has IoU 400/1024 < 0.5; a 24x24 one 576/1024 > 0.5
    iou = best_anchor_iou(*[__import__("numpy").array(v, float) for v in ([20, 24, 100, 22.6], [20, 24, 100, 45.3])])
    assert iou[0] == pytest.approx(400 / 1024)
    assert iou[1] == pytest.approx(576 / 1024)
    assert iou[2] > 0.9             # 100 px: between the 2^(2/3)*64 and 128 anchors
    assert iou[3] == pytest.approx(1.0, abs=0.01)  # 1:2 box matches the ratio-2 anchor exactly


def test_collect_writes_nothing(sample_dataset):
    before = sorted(p.relative_to(sample_dataset.root) for p in sample_dataset.root.rglob("*"))
    collect(sample_dataset, progress=False)
    assert sorted(p.relative_to(sample_dataset.root) for p in sample_dataset.root.rglob("*")) == before
    assert manifest.read_records(sample_dataset)


def test_report_shows_three_parts_drift_leakage_and_the_latest_confusion_matrix(tmp_path, sample_src, artifacts):
    """Week 1: three parts. Week 2: dedupe takes duplicates out, the split is run again; a run is
    evaluated (real figures and files from training.evaluate, on made-up detections)."""
    import csv
    import numpy as np
    from training.evaluate import write_results
    from training.figures import figures
    data = Dataset.at(tmp_path / "data")
    import_folder(data, sample_src, progress=False)
    export(data, progress=False)
    make_split(data, val=0.25, test=0.2, seed=0, progress=False)
    week1 = json.loads((data.export / "split.json").read_text())["parts"]
    with data.lock("test"):
        dedupe(data, progress=False)
    export(data, progress=False)
    make_split(data, progress=False)
    gone = {n for n in week1 if not (data.images / n).exists()}
    assert gone  # the sample has duplicates on purpose

    rows = list(csv.reader(open(data.export / "test.csv")))
    paths = sorted({r[0] for r in rows})
    names = ["mask", "no_mask"]
    truth, detections = [], []
    for number, path in enumerate(paths):
        boxes = {k: np.array([[float(v) for v in r[1:5]] for r in rows if r[0] == path and r[5] == name]).reshape(-1, 4)
                 for k, name in enumerate(names)}
        truth.append(boxes)
        found = {k: np.c_[b, np.full(len(b), 0.9)] for k, b in boxes.items()}
        if number == 0:  # the first image's boxes are read as the other class
            found = {0: found[1], 1: found[0]}
        detections.append(found)
    run = tmp_path / "runs" / "run-a"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": str(data.root), "backbone": "resnet50"}))
    result = figures(detections, truth, names)
    write_results(run, result, {"part": "test", "csv": str(data.export / "test.csv"), "images": len(paths),
                                "warnings": []}, [str(data.export / p) for p in paths])

    page, report = write_report(data, tmp_path / "runs", progress=False)
    split = report.numbers["split"]
    assert "parts" not in split and "sha256" not in split      # no per-image lists in report.json
    counts = json.loads((data.export / "split.json").read_text())["counts"]
    assert split["counts"] == counts and counts["test"]["images"] > 0
    assert split["drift"]["left"] == {p: sum(week1[n] == p for n in gone) for p in ("train", "val", "test")}
    html = page.read_text()
    assert '<section id="split">' in html and "Drift since the split of" in html
    assert "<td>test</td>" in html and "pairs a random split would have put across parts" in html
    confusion = json.loads((run / "evaluation.json").read_text())["confusion"]
    assert confusion["matrix"][0][1] + confusion["matrix"][1][0] > 0  # the swapped image
    section = html[html.index('<section id="evaluation">'):]
    section = section[:section.index("</section>")]
    for name, row, missed in zip(names, confusion["matrix"], confusion["missed"]):
        cells = "".join(f'<td class="num">{v}</td>' for v in (*row, missed))
        assert f"<td>{name}</td>{cells}" in section
    assert 'href="../../runs/run-a/evaluation-errors.html"' in section
    summary = report.summary()
    assert f"test {counts['test']['images']} images" in summary and "run run-a: test mAP" in summary
    assert f"{sum(split['drift']['left'].values())} left" in summary
    shutil.copy(page, artifacts / "report-three-parts.html")
