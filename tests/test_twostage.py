"""make train-classifier, make detect MODEL=two-stage, make evaluate MODEL=two-stage (issue 17), on
real parts: real seed photos (MTCNN finds few of the rendered sample faces), real MTCNN, a real
Keras classifier trained for a few epochs on tiny crops, the real figures. One classifier run,
trained once for the module, serves every test here; bad input is checked on crops directly.
"""
from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers import make

pytestmark = pytest.mark.slow

TRAIN = dict(EPOCHS=3, SIZE=32, BATCH=16, TRAIN_SEED=0)
EVERY = 12   # every 12th seed photo: 58 images, 13 of them (20 boxes) in the test part


@pytest.fixture(scope="module")
def trained(tmp_path_factory, seed_voc):
    """A dataset of 58 seed photos (copies), exported and split in three, and one classifier run."""
    from dataset.export import export
    from dataset.importer import import_folder
    from dataset.layout import Dataset
    from dataset.split import make_split
    root = tmp_path_factory.mktemp("twostage")
    src = root / "src"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    for stem in sorted(p.stem for p in (seed_voc / "images").iterdir())[::EVERY]:
        shutil.copy(seed_voc / "images" / f"{stem}.jpg", src / "images")
        shutil.copy(seed_voc / "annotations" / f"{stem}.xml", src / "annotations")
    dataset = Dataset.at(root / "data")
    import_folder(dataset, src, progress=False)
    export(dataset, progress=False)
    make_split(dataset, val=0.25, test=0.25, seed=0, progress=False)
    runs_dir = root / "runs"
    result = make("train-classifier", data=dataset.root, RUNS=runs_dir, **TRAIN)
    (run_dir,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return dataset, runs_dir, run_dir, result


@pytest.fixture(scope="module")
def evaluated(trained):
    dataset, runs_dir, run_dir, _ = trained
    result = make("evaluate", data=dataset.root, RUNS=runs_dir, MODEL="two-stage")
    return json.loads((run_dir / "evaluation.json").read_text()), result


def voc_boxes(xml: Path) -> list[tuple[str, tuple[float, ...]]]:
    """(class, 0-based box) of a VOC file, read with the standard library."""
    found = []
    for obj in ET.parse(xml).getroot().iter("object"):
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (float(box.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax"))
        found.append((obj.findtext("name"), (x1, y1, x2, y2)))
    return found


def iou(a, b) -> float:
    ix, iy = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


def test_train_classifier_makes_a_run_folder_whose_crops_follow_the_split(trained, artifacts):
    dataset, _, run_dir, result = trained
    for name in ("config.json", "classes.csv", "log.csv", "curves.png", "classifier.h5", "calibration.json",
                 "snapshots/best.h5", "snapshots/last.h5", "snapshots/state.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(run_dir / "curves.png", artifacts / "twostage-classifier-curves.png")
    config = json.loads((run_dir / "config.json").read_text())
    record = json.loads((dataset.export / "split.json").read_text())
    classes = [row[0] for row in csv.reader(open(dataset.export / "classes.csv"))]
    assert config["kind"] == "classifier" and config["classes"] == classes and config["weights_file"] is None
    assert (config["size"], config["epochs"], config["seed"]) == (32, 3, 0)
    # the digest of each part's images, made as make train makes it (split.json's are made the same way)
    assert config["data_digest"] == {p: d for p, d in record["digests"].items() if d["images"]}
    with open(run_dir / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and all(float(r["val_loss"]) > 0 for r in rows)
    state = json.loads((run_dir / "snapshots" / "state.json").read_text())
    assert state["metric"] == "val_loss" and 1 <= state["best_epoch"] <= 3
    assert state["best_value"] == pytest.approx(min(float(r["val_loss"]) for r in rows))

    # one crop per box of each part's images, counted here from split.json and the VOC files
    expected = {part: Counter() for part in ("train", "val", "test")}
    for name, part in record["parts"].items():
        expected[part].update(c for c, _ in voc_boxes(dataset.annotations / f"{Path(name).stem}.xml"))
    for part in expected:
        assert config["crops"][part] == {c: expected[part].get(c, 0) for c in classes}, part
    assert config["crops"]["clamped"] > 0  # close-up portraits: a 20% margin leaves the picture
    train = ", ".join(f"{c} {expected['train'][c]}" for c in sorted(classes))  # config.json keeps keys sorted
    assert f"crops: train {train}" in result.stdout
    assert f"{config['crops']['clamped']} clamped to their image" in result.stdout

    # the face detector's calibration, learned from train images as make prelabel learns it:
    # MTCNN's boxes are tighter than people's, so it grows them
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert calibration["pairs"] >= 5 and calibration["scale_x"] > 1.1 and calibration["scale_y"] > 1.1
    assert calibration["extra"]["learned_from"] == "train part"


def test_the_test_part_never_tunes_the_classifier_or_the_calibration(trained, tmp_path):
    """The same dataset with every test box moved and of one class: make train-classifier reads the
    change (the test crops it counts) yet learns the same weights and the same calibration."""
    import h5py
    from dataset import voc
    dataset, _, run_dir, _ = trained
    copy = tmp_path / "data"
    shutil.copytree(dataset.root, copy, ignore=shutil.ignore_patterns(".lock"))
    record = json.loads((dataset.export / "split.json").read_text())
    first, second = json.loads((run_dir / "config.json").read_text())["classes"]
    for name, part in record["parts"].items():
        if part != "test":
            continue
        xml = copy / "annotations" / f"{Path(name).stem}.xml"
        annotation = voc.parse(xml)
        for obj in annotation.objects:  # the box's top-left quarter, all of one class
            obj.name = first
            obj.xmax, obj.ymax = (obj.xmin + obj.xmax) / 2, (obj.ymin + obj.ymax) / 2
        voc.write(annotation, xml, overwrite=True)
    make("train-classifier", data=copy, RUNS=tmp_path / "runs", **TRAIN)
    (again,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    before, after = (json.loads((d / "config.json").read_text())["crops"] for d in (run_dir, again))
    assert before["test"][second] > 0 and after["test"] == {first: sum(before["test"].values()), second: 0}
    assert (after["train"], after["val"]) == (before["train"], before["val"])
    assert json.loads((again / "calibration.json").read_text()) == json.loads((run_dir / "calibration.json").read_text())

    def weights(path: Path) -> dict:
        found = {}
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda key, item: found.__setitem__(key, item[()]) if isinstance(item, h5py.Dataset) else None)
        return found
    ours, theirs = weights(run_dir / "classifier.h5"), weights(again / "classifier.h5")
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_detect_two_stage_draws_calibrated_face_boxes(trained, tmp_path):
    from annotation.calibration import Calibration
    from annotation.facedetect import FaceDetector, load_rgb
    from PIL import Image
    dataset, runs_dir, run_dir, _ = trained
    record = json.loads((dataset.export / "split.json").read_text())
    folder = tmp_path / "in"
    folder.mkdir()
    tests = sorted(n for n, p in record["parts"].items() if p == "test")[:7]
    for name in tests:
        shutil.copy(dataset.images / name, folder / name)
    result = make("detect", RUNS=runs_dir, MODEL="two-stage", DIR=folder, OUT=tmp_path / "out", SCORE=0)
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert written["classes"] == json.loads((run_dir / "config.json").read_text())["classes"]
    assert written["run"] == str(run_dir) and "faces:" in result.stdout

    # every detection is a face MTCNN finds, mapped by the run's calibration: one row per class
    detector, calibration = FaceDetector(), Calibration(**json.loads((run_dir / "calibration.json").read_text()))
    total = matched = 0
    for name in tests:
        entry = written["inputs"][str((folder / name).resolve())]
        copy = Image.open(tmp_path / "out" / entry["output"])
        pixels = load_rgb(folder / name)
        assert copy.size == (pixels.shape[1], pixels.shape[0])
        faces = [calibration.apply(f.box, pixels.shape[1], pixels.shape[0]) for f in detector.detect_array(pixels, 0.9)]
        faces = [f for f in faces if min(f[2] - f[0], f[3] - f[1]) >= 12]  # MIN_BOX: smaller ones are left out
        assert len(entry["detections"]) == 2 * len(faces), name  # one row per class, every score >= SCORE=0
        for d in entry["detections"]:
            assert min(max(abs(a - b) for a, b in zip(d["box"], face)) for face in faces) <= 0.1
            assert 0 <= d["box"][0] < d["box"][2] <= pixels.shape[1] and 0 <= d["box"][1] < d["box"][3] <= pixels.shape[0]
        truth = [box for _, box in voc_boxes(dataset.annotations / f"{Path(name).stem}.xml")]
        total += len(faces)
        matched += sum(max(iou(face, t) for t in truth) >= 0.5 for face in faces)
    assert total >= 5
    assert matched >= 0.7 * total  # the calibrated boxes follow the dataset's convention


def test_evaluate_two_stage_prints_ap_and_the_confusion_matrix(trained, evaluated):
    from training import figures, twostage
    dataset, _, run_dir, _ = trained
    numbers, result = evaluated
    out = result.stdout
    assert "two-stage detector: MTCNN faces" in out and "faces: " in out
    assert "Evaluation on the test part" in out and "| **mAP** |" in out and "AP@0.5" in out
    assert "Confusion at score >= 0.5, IoU 0.5" in out and "| background (false alarms) |" in out
    rows = [r for r in csv.reader(open(dataset.export / "test.csv")) if r]
    assert numbers["part"] == "test" and numbers["detector"] == "two-stage"
    assert numbers["images"] == len({r[0] for r in rows})
    per_class = Counter(r[5] for r in rows if r[5])
    confusion = numbers["confusion"]
    for k, name in enumerate(confusion["classes"]):
        assert numbers["classes"][name]["instances"] == per_class[name]
        assert sum(confusion["matrix"][k]) + confusion["missed"][k] == per_class[name]
    assert numbers["data"]["changed"] is False and numbers["data"]["trained_with"] == numbers["data"]["digest"]
    assert (run_dir / "evaluation-errors.html").is_file() and (run_dir / "pr_curve.png").is_file()
    assert numbers["faces"]["found"] >= 10 and numbers["faces"]["too_small"] == 0

    # the figures are figures.py's of this detector's detections on the test CSV, recomputed here
    model = twostage.load_two_stage(run_dir)
    generator = twostage.part_generator(dataset.export / "test.csv", dataset.export / "classes.csv")
    detections, truth = twostage.detections_and_truth(generator, model, 0.05, progress=False)
    again = figures.figures(detections, truth, confusion["classes"])
    assert numbers["mAP"] == pytest.approx(again["mAP"], abs=1e-6)
    assert numbers["confusion"]["matrix"] == again["confusion"]["matrix"]


def test_report_shows_both_detectors_side_by_side(trained, evaluated, artifacts):
    """A RetinaNet evaluation of the same part (figures of a stand-in detector: the true boxes, one
    image's classes swapped, written by make evaluate's writer) beside the two-stage one."""
    from training import evaluate, figures
    from training.config import TrainConfig
    dataset, runs_dir, run_dir, _ = trained
    numbers, _ = evaluated
    test_csv = dataset.export / "test.csv"
    rows = [r for r in csv.reader(open(test_csv)) if r]
    names = numbers["confusion"]["classes"]
    paths = sorted({r[0] for r in rows})
    truth, found = [], []
    for number, path in enumerate(paths):
        boxes = {k: np.array([[float(v) for v in r[1:5]] for r in rows if r[0] == path and r[5] == name]).reshape(-1, 4)
                 for k, name in enumerate(names)}
        truth.append(boxes)
        hits = {k: np.c_[b, np.full(len(b), 0.8)] for k, b in boxes.items()}
        found.append({0: hits[1], 1: hits[0]} if number == 0 else hits)
    retinanet = runs_dir / "00000000-000000-resnet50"
    retinanet.mkdir()
    config = TrainConfig(data=str(dataset.root), train_csv=str(dataset.export / "train.csv"), val_csv=None,
                         classes_csv=str(dataset.export / "classes.csv"), test_csv=str(test_csv))
    (retinanet / "config.json").write_text(json.dumps(config.to_json()))
    check, _ = evaluate.data_check(config, "test", test_csv, dataset.root)
    evaluate.write_results(retinanet, figures.figures(found, truth, names), {
        "part": "test", "csv": str(test_csv), "images": len(paths), "data": check, "warnings": []})

    result = make("report", data=dataset.root, RUNS=runs_dir)
    report = json.loads((dataset.export / "report.json").read_text())
    assert report["detectors"] == {"latest": {"two-stage": run_dir.name, "retinanet": retinanet.name},
                                   "same_images": True}
    html = (dataset.export / "report.html").read_text()
    shutil.copy(dataset.export / "report.html", artifacts / "report-two-detectors.html")
    section = html[html.index('<section id="evaluation">'):]
    section = section[:section.index("</section>")]
    assert "the two detectors side by side" in section and "not comparable" not in section
    assert f"RetinaNet: {retinanet.name}" in section and f"two-stage (face detector + classifier): {run_dir.name}" in section
    assert f'<td class="num">{numbers["mAP"]:.3f}</td>' in section
    assert section.count("Confusion matrix:") == 2
    assert (f"detectors side by side: RetinaNet {retinanet.name} mAP {report['runs'][0]['mAP']:.3f}, two-stage "
            f"{run_dir.name} mAP {numbers['mAP']:.3f}") in result.stdout
    assert f"run {run_dir.name} (two-stage): test mAP {numbers['mAP']:.3f}" in result.stdout

    # scored on another part: the page says the figures are not comparable
    evaluation = json.loads((retinanet / "evaluation.json").read_text())
    (retinanet / "evaluation.json").write_text(json.dumps({**evaluation, "part": "val"}))
    make("report", data=dataset.root, RUNS=runs_dir)
    assert "not comparable" in (dataset.export / "report.html").read_text()
    shutil.rmtree(retinanet)


# -- bad input ---------------------------------------------------------------------------------------
def test_a_box_too_small_is_left_out_and_a_crop_outside_the_image_is_clamped(sample_dataset):
    from dataset import voc
    from training import classifier
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :100] = (255, 0, 0)                 # left half red, right half blue
    pixels[:, 100:] = (0, 0, 255)
    crop, status = classifier.cut(pixels, (0, 10, 50, 60), 0.2, 20)   # grows 10 px past the left edge
    assert status == classifier.CLAMPED and crop.shape == (20, 20, 3)
    assert (crop[..., 0] == 255).all() and (crop[..., 2] == 0).all()  # only image pixels: nothing padded
    assert classifier.crop_region((0, 10, 50, 60), 0.2, 200, 100) == ((0, 0, 60, 70), True)
    assert classifier.cut(pixels, (120, 40, 140, 60), 0.2, 20)[1] == classifier.OK
    assert classifier.cut(pixels, (10, 10, 21, 40), 0.2, 20, min_box=12) == (None, classifier.TOO_SMALL)
    assert classifier.cut(pixels, (250, 10, 300, 60), 0.2, 20) == (None, classifier.OUTSIDE)
    assert classifier.cut(pixels, (10, 10, float("nan"), 40), 0.2, 20)[1] == classifier.TOO_SMALL

    # in a dataset: a 6-pixel box is counted and left out, a box at the edge is cut clamped
    image = sorted(sample_dataset.image_files())[0]
    annotation = voc.parse(sample_dataset.annotation_for(image))
    boxes = len(annotation.objects)
    annotation.objects += [voc.VocObject("mask", 5, 5, 11, 11), voc.VocObject("no_mask", 1, 1, 60, 80)]
    voc.write(annotation, sample_dataset.annotation_for(image), overwrite=True)
    crops = classifier.load_crops(sample_dataset, {"train": [image.name]}, ["mask", "no_mask"], 0.2, 24, 12,
                                  progress=False)
    assert len(crops.y["train"]) == boxes + 1 and crops.counts[classifier.TOO_SMALL] == 1
    assert crops.counts[classifier.CLAMPED] >= 1 and crops.x["train"].shape[1:] == (24, 24, 3)
    result = classifier.ClassifierResult(Path("runs/x"), {"last_epoch": 1, "best_epoch": 1, "best_value": 0.5},
                                         crops.summary(), "none")
    assert "left out: 1 too small to classify" in result.summary()


def test_faces_too_small_for_the_classifier_are_counted_at_detection(trained, tmp_path):
    dataset, runs_dir, run_dir, _ = trained
    strict = tmp_path / "runs" / "strict"
    shutil.copytree(run_dir, strict, ignore=shutil.ignore_patterns("detect", "evaluation*", "pr_curve.png"))
    config = json.loads((strict / "config.json").read_text())
    (strict / "config.json").write_text(json.dumps({**config, "min_box": 100_000}))  # every face is too small
    image = dataset.images / sorted(n for n, p in json.loads((dataset.export / "split.json").read_text())["parts"].items()
                                    if p == "test")[0]
    result = make("detect", RUNS=tmp_path / "runs", RUN=strict, MODEL="two-stage", IMAGE=image, OUT=tmp_path / "out",
                  SCORE=0.0)
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sum(len(v["detections"]) for v in written["inputs"].values()) == 0
    found = int(result.stdout.split("faces: ")[1].split(" found")[0])
    assert found >= 1 and f"left out: {found} too small to classify" in result.stdout


def test_a_classifier_of_other_classes_is_refused(trained, tmp_path):
    dataset, runs_dir, run_dir, _ = trained
    other = tmp_path / "runs" / "other-classes"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("detect", "evaluation*", "pr_curve.png"))
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "classes": ["face", "mask"]}))
    refused = make("evaluate", data=dataset.root, RUNS=tmp_path / "runs", RUN=other, MODEL="two-stage", check=False)
    assert refused.returncode == 2 and not (other / "evaluation.json").exists()
    theirs = ", ".join(json.loads((run_dir / "config.json").read_text())["classes"])
    assert f"classifies face, mask; this dataset's classes (export/classes.csv) are {theirs}" in refused.stderr
    assert "make train-classifier" in refused.stderr
    again = make("train-classifier", data=dataset.root, RUNS=tmp_path / "runs", WEIGHTS=other, check=False)
    assert again.returncode == 2 and f"WEIGHTS={other} classifies face, mask" in again.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other-classes"]  # no run folder made


def test_model_and_run_mix_ups_are_clear_errors(trained, tmp_path):
    dataset, runs_dir, run_dir, _ = trained
    wrong = make("detect", RUNS=runs_dir, MODEL="yolo", IMAGE=dataset.images / "1.jpg", check=False)
    assert wrong.returncode == 2 and "MODEL=yolo: neither two-stage nor an exported model" in wrong.stderr
    assert "MODEL=two-stage" in wrong.stderr and "make export-model" in wrong.stderr
    retina = make("evaluate", data=dataset.root, RUNS=runs_dir, RUN=run_dir, check=False)
    assert retina.returncode == 2 and "a classifier run of `make train-classifier`" in retina.stderr
    assert "add MODEL=two-stage" in retina.stderr
    none = make("evaluate", data=dataset.root, RUNS=tmp_path / "empty", MODEL="two-stage", check=False)
    assert none.returncode == 2 and "no classifier runs yet. Run `make train-classifier`" in none.stderr
    download = make("train-classifier", data=dataset.root, RUNS=tmp_path / "runs", WEIGHTS="imagenet", check=False)
    assert download.returncode == 2 and "nothing is downloaded" in download.stderr


def test_training_starts_from_the_weights_file_given(trained, tmp_path):
    """WEIGHTS= a classifier's weights or a keras.applications backbone's no-top file: at a learning
    rate too small to move them, the trained weights are the file's."""
    from dataset.errors import MasksetError
    from training import classifier
    dataset, _, run_dir, _ = trained
    config = classifier.ClassifierConfig.from_json(run_dir / "config.json")
    crops = classifier.load_crops(dataset, classifier.split_parts(dataset), config.classes, config.margin,
                                  config.size, config.min_box, progress=False)
    frozen = dict(epochs=1, lr=1e-12)
    again = classifier.fit(classifier.ClassifierConfig(**{**config.to_json(), **frozen}), crops, None, False,
                           str(run_dir / "classifier.h5"))
    given = classifier.load_classifier(run_dir, config)
    for before, after in zip(given.trainable_weights, again.trainable_weights):
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)

    file = tmp_path / "mobilenetv2-notop.h5"
    _, base = classifier.build("mobilenetv2", 2, 32)
    base.save_weights(str(file))  # what keras.applications' no-top .h5 holds: the backbone alone
    _, reread = classifier.build("mobilenetv2", 2, 32)
    reread.load_weights(str(file))
    conv = lambda model: model.get_layer("Conv1").get_weights()[0]  # noqa: E731
    settings = classifier.ClassifierConfig(**{**config.to_json(), **frozen, "backbone": "mobilenetv2"})
    np.testing.assert_allclose(conv(classifier.fit(settings, crops, None, False, str(file))), conv(reread), atol=1e-6)
    assert not np.allclose(conv(classifier.fit(settings, crops, None, False, None)), conv(reread))  # the file mattered
    with pytest.raises(MasksetError, match="does not fit a BACKBONE=small classifier"):
        classifier.fit(classifier.ClassifierConfig(**{**config.to_json(), **frozen}), crops, None, False, str(file))
