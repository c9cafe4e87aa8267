"""make prelabel: drafts for unannotated images, never over a person's file, pending until reviewed.

The face-detector tests use a few real seed-voc photos and one MTCNN loaded per module; the run
test uses a real (tiny, untrained) keras-retinanet inference model saved like a training run.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from annotation import calibration as calib
from annotation import prelabel as pl
from dataset import voc
from dataset.boxes import voc_from_zero_based
from dataset.cli import call
from dataset.errors import MasksetError
from dataset.importer import import_folder
from dataset.layout import Dataset, DatasetLocked
from helpers import make

# Seed photos with clearly visible faces: the first ANNOTATED keep their people's files, the rest
# come in unannotated, as scraped images do.
ANNOTATED = ["106", "108", "114", "117", "119", "120", "123", "124", "130", "134", "135", "139",
             "141", "147", "155", "157", "158", "159"]  # 12 faces with masks, 6 without
UNANNOTATED = ["101", "110", "116", "118"]


# -- pure core: no detector -----------------------------------------------------------------------
def test_calibration_recovers_a_known_offset_and_scale():
    truth_cal = calib.Calibration(offset_x=0.05, offset_y=-0.1, scale_x=1.5, scale_y=1.3, pairs=1)
    examples = []
    for i in range(12):
        detector_box = (10.0 + 20 * i, 30.0 + 5 * i, 60.0 + 22 * i, 90.0 + 6 * i)
        person = truth_cal.apply(detector_box)
        stray = (500.0, 500.0, 540.0, 560.0)  # a face the person did not box: must not pull the fit
        examples.append(([detector_box, stray], [person]))
    learned = calib.learn(examples, detector="test")
    assert learned.pairs == 12 and learned.images == 12
    for name in ("offset_x", "offset_y", "scale_x", "scale_y"):
        assert getattr(learned, name) == pytest.approx(getattr(truth_cal, name), abs=1e-6), name


def test_calibration_needs_enough_faces_and_clips_to_the_image():
    assert calib.learn([([(0, 0, 10, 10)], [(0, 0, 14, 14)])]).is_identity  # 1 pair < MIN_PAIRS
    wide = calib.Calibration(scale_x=3.0, scale_y=3.0, pairs=9)
    assert wide.apply((0, 0, 20, 20), width=30, height=25) == (0.0, 0.0, 29.0, 24.0)
    assert voc_from_zero_based((0.0, 0.0, 29.0, 24.0), 30, 25) == (1, 1, 30, 25)  # VOC is 1-based


def test_score_counts_one_to_one_matches_at_iou_half():
    truth = [(0, 0, 10, 10), (20, 20, 30, 30)]
    predicted = [(0, 0, 10, 10), (1, 1, 10, 10), (50, 50, 60, 60)]  # a duplicate and a miss
    result = calib.score([(predicted, truth)])
    assert (result["true_positives"], result["false_positives"], result["false_negatives"]) == (1, 2, 1)
    classed = calib.score([([("mask", (0, 0, 10, 10))], [("no_mask", (0, 0, 10, 10))])])
    assert classed["true_positives"] == 0  # right box, wrong class


def test_face_class_is_learned_from_labelled_faces():
    import numpy as np
    from annotation import faceclass
    rng = np.random.default_rng(0)
    masked = [rng.normal(loc=[3, 0, 1], scale=1.0) for _ in range(30)]
    bare = [rng.normal(loc=[-3, 0, 1], scale=1.0) for _ in range(30)]
    classifier = faceclass.fit(masked + bare, ["mask"] * 30 + ["no_mask"] * 30)
    assert classifier.predict(np.array([2.5, 0.3, 1.0]))[0] == "mask"
    assert classifier.predict(np.array([-2.5, -0.3, 1.0]))[0] == "no_mask"
    restored = faceclass.from_dict(json.loads(json.dumps(classifier.__dict__)))
    assert restored.predict(np.array([2.5, 0.3, 1.0]))[0] == "mask"  # survives the JSON cache
    assert faceclass.fit(masked, ["mask"] * 30) is None  # one class: nothing to tell apart
    assert faceclass.fit(masked + bare[:3], ["mask"] * 30 + ["no_mask"] * 3) is None  # too few


def test_face_features_see_a_mask_over_the_mouth():
    import numpy as np
    from annotation.facedetect import FaceBox, face_features, to_lab
    skin = np.full((200, 200, 3), (224, 172, 140), np.uint8)
    marks = {"left_eye": (80, 80), "right_eye": (120, 80), "nose": (100, 105),
             "mouth_left": (85, 125), "mouth_right": (115, 125)}
    face = FaceBox((60, 50, 140, 150), 0.99, marks)
    masked = skin.copy()
    masked[98:160, 60:140] = (120, 170, 220)  # a blue surgical mask from the nose down
    bare_features, mask_features = face_features(to_lab(skin), face), face_features(to_lab(masked), face)
    # patch 3 (mouth): its colour minus the forehead's; zero on bare skin, far from it under a mask
    mouth_minus_forehead = slice(3 * 7 + 4, 3 * 7 + 7)
    assert np.abs(bare_features[mouth_minus_forehead]).max() < 1
    assert np.abs(mask_features[mouth_minus_forehead]).max() > 20
    assert face_features(to_lab(skin), FaceBox((0, 0, 1, 1), 0.9, {})) is None


def test_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(MasksetError, match="no such run folder"):
        pl.resolve_source("nope", tmp_path / "runs")
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    with pytest.raises(MasksetError, match="no inference.h5"):
        pl.resolve_source("r1", tmp_path / "runs")
    assert pl.resolve_source(None, tmp_path / "runs") == pl.FACE  # no finished run yet
    assert pl.resolve_source("face", tmp_path / "runs") == pl.FACE


# -- real photos, real MTCNN ----------------------------------------------------------------------
def _seed_dataset(root: Path, seed_voc: Path, annotated=ANNOTATED, unannotated=UNANNOTATED) -> Dataset:
    src = root / "src"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    # copies in tmp (import never follows a link out of SRC)
    for stem in annotated + unannotated:
        shutil.copy(seed_voc / "images" / f"{stem}.jpg", src / "images")
    for stem in annotated:
        shutil.copy(seed_voc / "annotations" / f"{stem}.xml", src / "annotations")
    dataset = Dataset.at(root / "data")
    import_folder(dataset, src, progress=False)
    return dataset


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.glob("*.xml")}


@pytest.fixture(scope="module")
def face_detector():
    from annotation.facedetect import FaceDetector
    return FaceDetector()


def test_prelabel_never_touches_a_file_a_person_saved(tmp_path, seed_voc, face_detector):
    dataset = _seed_dataset(tmp_path, seed_voc)
    # Two more files a person saved: an image with no faces boxed, and one labelImg left broken.
    empty = voc.VocAnnotation(filename="101.jpg", width=342, height=301, objects=[])
    voc.write(empty, dataset.annotation_for("101.jpg"))
    (dataset.annotations / "110.xml").write_text("<annotation><filename>110.jpg</filen")
    before = _snapshot(dataset.annotations)

    result = pl.prelabel(dataset, run="face", runs_dir=tmp_path / "runs", face_detector=face_detector,
                         progress=False)

    after = _snapshot(dataset.annotations)
    assert {name: after[name] for name in before} == before  # bytes and mtime: untouched
    assert sorted(set(after) - set(before)) == ["116.xml", "118.xml"]
    assert sorted(result.drafted) == ["116.jpg", "118.jpg"]
    for name in ("116.xml", "118.xml"):
        draft = voc.parse(dataset.annotations / name)
        assert draft.draft and draft.objects, name
        assert {o.name for o in draft.objects} == {"mask"}  # as the person boxed it in seed-voc
        person = voc.parse(seed_voc / "annotations" / name)
        matched = calib.match([calib.voc_box(o) for o in draft.objects],
                              [calib.voc_box(o) for o in person.objects], 0.5)
        assert len(matched) == len(person.objects), (name, draft.objects, person.objects)
        assert all(1 <= o.xmin < o.xmax <= draft.width and 1 <= o.ymin < o.ymax <= draft.height
                   for o in draft.objects)
    # The calibration was learned from the people's files, stored, makes boxes bigger, and
    # learned the class from the 18 labelled faces.
    stored = calib.load(dataset)
    assert stored.pairs >= calib.MIN_PAIRS and stored.scale_x > 1.1 and stored.scale_y > 1.1
    assert stored.classifier["classes"] == ["mask", "noMask"]  # the class from the face's look
    report = json.loads((dataset.export / "prelabel.json").read_text())
    assert report["boxes"] == result.boxes and report["seconds_per_image"] > 0

    # Again: nothing left to draft, and the drafts themselves are left alone by default ...
    drafts = _snapshot(dataset.annotations)
    again = pl.prelabel(dataset, run="face", runs_dir=tmp_path / "runs", face_detector=face_detector,
                        progress=False)
    assert again.drafted == [] and _snapshot(dataset.annotations) == drafts
    # ... while --replace-drafts redrafts only what is still a draft (a person saved 118 meanwhile).
    reviewed = voc.parse(dataset.annotations / "118.xml")
    reviewed.draft = False
    voc.write(reviewed, dataset.annotations / "118.xml", overwrite=True)
    person_118 = _snapshot(dataset.annotations)["118.xml"]
    redo = pl.prelabel(dataset, run="face", runs_dir=tmp_path / "runs", replace_drafts=True,
                       score=0.95, face_detector=face_detector, progress=False)
    assert redo.drafted == ["116.jpg"]
    assert _snapshot(dataset.annotations)["118.xml"] == person_118


def test_prelabel_refuses_while_another_stage_writes(tmp_path, seed_voc):
    dataset = _seed_dataset(tmp_path, seed_voc, annotated=["106"], unannotated=["116"])
    with dataset.lock("annotate"):
        with pytest.raises(DatasetLocked, match="annotate"):
            call("prelabel", dataset, run="face", runs=str(tmp_path / "runs"))  # as make prelabel runs it
    assert not dataset.annotation_for("116.jpg").exists()


def test_make_prelabel_drafts_stay_out_of_export_unless_included(tmp_path, seed_voc):
    dataset = _seed_dataset(tmp_path, seed_voc)
    result = make("prelabel", data=dataset.root, RUN="face")
    assert "drafted 4 images" in result.stdout and "s/image" in result.stdout
    drafts = sorted(p.name for p in dataset.annotation_files() if voc.parse(p).draft)
    assert drafts == [f"{s}.xml" for s in UNANNOTATED]

    validated = make("validate", data=dataset.root)
    summary = json.loads((dataset.export / "validate.json").read_text())["summary"]
    assert summary["drafts"] == 4 and summary["pending"] == 4, validated.stdout

    make("export", data=dataset.root)
    exported = {Path(row[0]).name for row in csv.reader(open(dataset.export / "annotations.csv"))}
    assert exported == {f"{s}.jpg" for s in ANNOTATED}

    make("export", data=dataset.root, INCLUDE_DRAFTS="1")
    exported = {Path(row[0]).name for row in csv.reader(open(dataset.export / "annotations.csv"))}
    assert exported == {f"{s}.jpg" for s in ANNOTATED + UNANNOTATED}


# -- a trained run's inference model --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real keras-retinanet inference model saved as a run: untrained, with the classification
    bias set so it detects class id 0 everywhere and class id 1 nowhere."""
    from keras_retinanet import models
    backbone = "mobilenet128_0.25"
    model = models.backbone(backbone).retinanet(num_classes=2)
    head = model.get_layer("classification_submodel").get_layer("pyramid_classification")
    kernel, bias = head.get_weights()
    bias[0::2], bias[1::2] = 4.0, -12.0  # channels are anchor-major, class-minor
    head.set_weights([kernel, bias])
    run = tmp_path_factory.mktemp("runs") / "20260101-000000-tiny"
    run.mkdir()
    models.convert_model(model).save(run / "inference.h5")
    (run / "classes.csv").write_text("no_mask,0\nmask,1\n")  # ids in the run's own order
    from training.config import TrainConfig
    config = TrainConfig(data="data", train_csv="train.csv", val_csv=None, classes_csv="classes.csv",
                         backbone=backbone, image_min_side=320, image_max_side=480)
    (run / "config.json").write_text(json.dumps(config.to_json()))
    return run


def test_prelabel_with_a_run_uses_its_model_and_classes(tmp_path, seed_voc, tiny_run):
    dataset = _seed_dataset(tmp_path, seed_voc, annotated=["106"], unannotated=["116", "118"])
    dataset.write_classes(["mask", "no_mask"])
    assert pl.resolve_source(None, tiny_run.parent) == tiny_run  # the latest run by default

    result = pl.prelabel(dataset, runs_dir=tiny_run.parent, score=0.5, progress=False)

    assert result.source == str(tiny_run)
    assert sorted(result.drafted) == ["116.jpg", "118.jpg"]
    assert set(result.boxes) == {"no_mask"}  # class id 0 of the run, not of classes.txt
    for image in ("116.jpg", "118.jpg"):
        draft = voc.parse(dataset.annotation_for(image))
        assert draft.draft and draft.objects
        assert all(1 <= o.xmin < o.xmax <= draft.width and 1 <= o.ymin < o.ymax <= draft.height
                   for o in draft.objects)
    assert voc.parse(dataset.annotation_for("106.jpg")).draft is False


def test_demo_step_drafts_the_scraped_images(tmp_path, seed_voc):
    import demo
    from dataset.fixtures.scenes import make_sample

    class Ctx:  # what demo.py passes: scratch folder, dataset, runs folder, quick, notes
        work, runs, quick, notes = tmp_path, tmp_path / "runs", True, {}

    Ctx.data = _seed_dataset(tmp_path, seed_voc, annotated=ANNOTATED[:6], unannotated=["116"])
    make_sample(Ctx.data.images, count=2, duplicates=0, annotate=False, prefix="web")  # "scraped"
    summary = demo.prelabel(Ctx)
    drafted = sorted(Ctx.notes["prelabel"]["drafted"])
    assert "116.jpg" in drafted and summary.startswith(f"drafted {len(drafted)} images, ")
    assert all(voc.parse(Ctx.data.annotation_for(name)).draft for name in drafted)
