"""The two-stage detector of the original projects: a face detector, then a classifier on each
face crop. `make detect MODEL=two-stage` and `make evaluate MODEL=two-stage` (RUN= a classifier
run of `make train-classifier`; unset, the latest).

1. MTCNN (annotation/facedetect.py, the detector `make prelabel` uses) finds faces.
2. Each face box is mapped to the dataset's own box convention by the calibration `make
   prelabel` learns (annotation/calibration.py: one offset and scale per axis), learned when the
   classifier was trained, from images of the train part only, and kept in the run folder.
3. The calibrated box is grown by the classifier's MARGIN, clamped to the image, cut and resized
   exactly as the training crops were (classifier.cut); a box too small to classify is counted
   and left out.
4. The classifier gives each class a probability; the detection's score for a class is the face
   detector's confidence times that probability. Every class is reported, as RetinaNet reports
   every class above its threshold; `make detect`'s SCORE= keeps the ones worth drawing.

`TwoStageModel` is a drop-in model object for training/detect.py: `preprocess(image_bgr)` and
`predict(batch)` / `keras_model.predict_on_batch(batch)` give (boxes, scores, labels) shaped like
the RetinaNet inference model's, so detect's image, folder and video paths (and every later
input that goes through detect_array) serve both detectors. `evaluate_two_stage` gets the same
figures as `make evaluate` (training/figures.py) on the same part of the split, from the same
CSV, and writes them into the classifier's run folder.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset.errors import MasksetError

from . import classifier, runs
from .detect import DetectResult
from .evaluate import EvaluationResult

log = logging.getLogger(__name__)

NAME = runs.TWO_STAGE
WORDS = ("two-stage", "twostage", "two_stage", "2-stage")   # MODEL= values that mean this detector
FACE_SCORE = 0.9          # MTCNN's confidence a face needs (make prelabel's default)
MAX_DETECTIONS = 100      # per image, as make evaluate keeps for RetinaNet


def wanted(model: str | None) -> bool:
    """Whether MODEL= asks for the two-stage detector."""
    return bool(model) and str(model).strip().lower() in WORDS


# -- the calibration, learned when the classifier is trained -------------------------------------------
def calibrate(dataset, images: list[str], limit: int = classifier.CALIBRATION_IMAGES, detector=None,
              progress: bool = True):
    """The face detector's box calibration (annotation.calibration.learn, as `make prelabel`
    learns it) from up to `limit` of these images (the train part: test images never tune it)."""
    from annotation import calibration as calib
    from annotation.facedetect import FaceDetector, load_rgb
    from dataset import progress as progress_bars, voc
    annotated = []
    for name in images:
        xml = dataset.annotation_for(dataset.images / name)
        try:
            annotation = voc.parse(xml)
        except voc.VocError:
            continue
        if annotation.objects and not annotation.draft:
            annotated.append((name, [calib.voc_box(o) for o in annotation.objects]))
    if limit and len(annotated) > limit:
        step = len(annotated) / limit
        annotated = [annotated[int(i * step)] for i in range(limit)]
    if not annotated:
        log.warning("no annotated train images to learn the face detector's box calibration from: its boxes are "
                    "used as they are.")
        return calib.Calibration(detector=FaceDetector.name)
    detector = detector or FaceDetector()
    examples = []
    for name, truth in progress_bars.bar(annotated, desc="calibrating", enabled=progress):
        faces = detector.detect_array(load_rgb(dataset.images / name))
        examples.append(([f.box for f in faces], truth))
    learned = calib.learn(examples, detector=detector.name)
    learned.extra = {"learned_from": "train part", "version": calib.VERSION}
    if learned.is_identity:
        log.warning("the face detector matched fewer than %d boxes in %d train images: no calibration, its boxes "
                    "are used as they are (they are tighter than people draw them).", calib.MIN_PAIRS, len(examples))
    return learned


# -- the detector ------------------------------------------------------------------------------------
class TwoStageDetector:
    """MTCNN faces -> calibrated boxes -> crops -> the classifier. `counts` tallies the faces seen,
    and those clamped or left out (too small, outside the image)."""

    def __init__(self, run_dir: Path | str, face_detector=None, face_score: float = FACE_SCORE):
        from annotation.calibration import Calibration
        from annotation.facedetect import FaceDetector
        self.run_dir = Path(run_dir).resolve()
        self.config = classifier.ClassifierConfig.from_json(self.run_dir / runs.CONFIG)
        self.classes = list(self.config.classes)
        self.model = classifier.load_classifier(self.run_dir, self.config)
        if self.model.output_shape[-1] != len(self.classes):
            raise MasksetError(f"{self.run_dir / runs.CLASSIFIER}: gives {self.model.output_shape[-1]} classes, its "
                               f"config.json names {len(self.classes)}. Train it again with `make train-classifier`.")
        stored = runs.read_json(self.run_dir / runs.CALIBRATION)
        try:
            self.calibration = Calibration(**stored)
        except TypeError:
            raise MasksetError(f"{self.run_dir / runs.CALIBRATION}: not a box calibration. Train the classifier "
                               f"again with `make train-classifier`.") from None
        self.faces = face_detector or FaceDetector()
        self.face_score = face_score
        self.counts = Counter()

    def detect_rgb(self, pixels: np.ndarray):
        """(boxes N x 4, class probabilities N x classes, face scores N) for the faces in an RGB image."""
        height, width = pixels.shape[:2]
        boxes, crops, scores = [], [], []
        for face in self.faces.detect_array(pixels, self.face_score):
            self.counts["faces"] += 1
            box = self.calibration.apply(face.box, width, height)
            crop, status = classifier.cut(pixels, box, self.config.margin, self.config.size, self.config.min_box)
            if crop is None:
                self.counts[status] += 1
                continue
            if status == classifier.CLAMPED:
                self.counts[classifier.CLAMPED] += 1
            boxes.append(box)
            crops.append(crop)
            scores.append(face.score)
        crops = np.stack(crops) if crops else np.zeros((0, self.config.size, self.config.size, 3), np.uint8)
        probabilities = classifier.predict(self.model, self.config.backbone, crops)
        return np.asarray(boxes, np.float32).reshape(-1, 4), probabilities, np.asarray(scores, np.float32)

    def detect_bgr(self, image_bgr: np.ndarray):
        """(boxes, scores, labels) of one BGR image: one row per face and class, best score first."""
        pixels = np.ascontiguousarray(np.clip(np.asarray(image_bgr), 0, 255).astype(np.uint8)[..., ::-1])
        boxes, probabilities, face_scores = self.detect_rgb(pixels)
        k = len(self.classes)
        scores = (face_scores[:, None] * probabilities).reshape(-1)
        labels = np.tile(np.arange(k), len(boxes))
        boxes = np.repeat(boxes, k, axis=0)
        order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order].astype(np.float32), labels[order].astype(np.int32)

    def predict_on_batch(self, batch):
        """(boxes [B, N, 4], scores [B, N], labels [B, N]) for a batch of BGR images, padded with -1
        as keras-retinanet's FilterDetections pads: the RetinaNet inference model's outputs."""
        found = [self.detect_bgr(image) for image in batch]
        n = max([len(s) for _, s, _ in found] + [0])
        boxes = np.full((len(found), n, 4), -1, np.float32)
        scores = np.full((len(found), n), -1, np.float32)
        labels = np.full((len(found), n), -1, np.int32)
        for i, (b, s, lab) in enumerate(found):
            boxes[i, :len(s)], scores[i, :len(s)], labels[i, :len(s)] = b, s, lab
        return boxes, scores, labels

    def describe(self) -> str:
        return (f"MTCNN faces (confidence >= {self.face_score:g}) + {self.config.backbone} classifier "
                f"{self.run_dir.name} ({self.config.size}x{self.config.size}, margin {self.config.margin:g})")


@dataclass
class TwoStageModel:
    """What training/detect.py calls a model: classes, run folder, preprocess and predict."""
    detector: TwoStageDetector
    classes: dict
    run_dir: Path
    backbone: str = NAME
    min_side: int = 0
    max_side: int = 0
    manifest: dict | None = None

    @property
    def keras_model(self):  # detect_array calls keras_model.predict_on_batch
        return self.detector

    @property
    def source(self) -> str:
        return f"{self.run_dir} ({NAME}: {self.detector.describe()})"

    @property
    def home(self) -> Path:
        return self.run_dir

    def preprocess(self, image_bgr):
        """The image as it is (the face detector and the crops work on the original pixels), scale 1."""
        return image_bgr, 1.0

    def predict(self, batch):
        return self.detector.predict_on_batch(batch)


def load_two_stage(run_dir: Path | str, face_detector=None, face_score: float = FACE_SCORE) -> TwoStageModel:
    from .model import quiet_tensorflow
    quiet_tensorflow()
    detector = TwoStageDetector(run_dir, face_detector, face_score)
    return TwoStageModel(detector, dict(enumerate(detector.classes)), detector.run_dir)


def resolve(runs_dir: Path | str, run: str | None) -> Path:
    """RUN= (a classifier run), else the latest classifier run in RUNS."""
    return runs.resolve_run(runs_dir, run, need=runs.CLASSIFIER)


# -- make evaluate MODEL=two-stage ---------------------------------------------------------------------
def part_generator(part_path: Path, classes_csv: Path):
    """keras-retinanet's CSVGenerator over the part's CSV: the same images and boxes `make
    evaluate` scores RetinaNet on (no preprocessing: only its reading of the CSV is used)."""
    from keras_retinanet.preprocessing.csv_generator import CSVGenerator
    try:
        return CSVGenerator(str(part_path), str(classes_csv), shuffle_groups=False, batch_size=1)
    except ValueError as error:
        raise MasksetError(f"{error}. Re-create it with `make export` and `make split`.") from None


def detections_and_truth(generator, model: TwoStageModel, score: float = 0.05, progress: bool = True):
    """Per image, per label: detections [x1, y1, x2, y2, score] (score > `score`, at most
    MAX_DETECTIONS, as make evaluate keeps RetinaNet's) and the ground-truth boxes."""
    from dataset import progress as progress_bars
    from .detect import read_bgr
    labels = range(generator.num_classes())
    detections, truth = [], []
    for i in progress_bars.bar(range(generator.size()), desc="evaluating", leave=False, enabled=progress):
        boxes, scores, found = model.detector.detect_bgr(read_bgr(Path(generator.image_path(i))))
        keep = np.where(scores > score)[0][:MAX_DETECTIONS]
        rows = np.concatenate([boxes[keep], scores[keep, None]], axis=1)
        detections.append({label: rows[found[keep] == label] for label in labels})
        annotations = generator.load_annotations(i)
        truth.append({label: annotations["bboxes"][annotations["labels"] == label] for label in labels})
    return detections, truth


def evaluate_two_stage(run_dir: Path, data: Path | None, score: float = 0.05, iou: float = 0.5,
                       part: str | None = None, at: float = 0.5, progress: bool = True,
                       model: TwoStageModel | None = None) -> dict:
    """The figures of `make evaluate` for the two-stage detector on one part (test when the split
    has one), written into the classifier's run folder (evaluation.json, .md, pr_curve.png, the
    error page). A classifier of other classes than the dataset's is refused."""
    from . import evaluate, figures
    if not 0 <= at <= 1:
        raise MasksetError(f"AT={at}: a score threshold from 0 to 1 (e.g. AT=0.5).")
    run_dir = Path(run_dir).resolve()
    config = classifier.ClassifierConfig.from_json(run_dir / runs.CONFIG)
    part, part_path, notes = evaluate.part_csv(data, config, part)
    classes_csv = part_path.parent / "classes.csv"
    generator = part_generator(part_path, classes_csv if classes_csv.is_file() else run_dir / runs.CLASSES)
    names = evaluate.class_names(generator)
    classifier.check_classes(config.classes, names, f"the classifier {run_dir.name}")
    check, more = evaluate.data_check(config, part, part_path, data)
    notes += more
    for note in notes:
        log.warning("%s", note)
    model = model or load_two_stage(run_dir)
    model.detector.counts.clear()
    started = time.monotonic()
    detections, truth = detections_and_truth(generator, model, score, progress)
    result = figures.figures(detections, truth, names, iou, at)
    paths = [generator.image_path(i) for i in range(generator.size())]
    counts = model.detector.counts
    return evaluate.write_results(run_dir, result, {
        "run": str(run_dir), "detector": NAME, "model": model.detector.describe(), "part": part,
        "csv": str(part_path), "images": generator.size(), "score_threshold": score, "data": check,
        "faces": {"found": counts.get("faces", 0), "classified": counts.get("faces", 0) - counts.get(classifier.TOO_SMALL, 0)
                  - counts.get(classifier.OUTSIDE, 0), "too_small": counts.get(classifier.TOO_SMALL, 0),
                  "outside": counts.get(classifier.OUTSIDE, 0), "clamped": counts.get(classifier.CLAMPED, 0),
                  "face_score": model.detector.face_score},
        "calibration": model.detector.calibration.describe(), "warnings": notes,
        "seconds": round(time.monotonic() - started, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, paths)


def faces_line(faces: dict) -> str:
    left = [f"{faces[k]} {what}" for k, what in (("too_small", "too small to classify"),
                                                  ("outside", "outside the image")) if faces.get(k)]
    return (f"faces: {faces.get('found', 0)} found by the face detector, {faces.get('clamped', 0)} crops clamped to "
            f"the image" + (f", left out: {', '.join(left)}" if left else ""))


@dataclass
class TwoStageEvaluation(EvaluationResult):
    def summary(self) -> str:
        return (f"two-stage detector: {self.numbers.get('model')}\n{faces_line(self.numbers.get('faces') or {})}\n"
                + super().summary())


@dataclass
class TwoStageDetectResult(DetectResult):
    faces: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        return super().summary() + "\n" + faces_line(self.faces)


# -- the commands (training/commands.py hands MODEL=two-stage here) -------------------------------------
def detect_command(args) -> TwoStageDetectResult:
    from .detect import detect
    run_dir = resolve(args.runs, args.run)
    model = load_two_stage(run_dir)
    out = detect(run_dir, args.image, args.dir, args.video, args.score, Path(args.out) if args.out else None,
                 model=model)
    inputs = json.loads((out / "detections.json").read_text())["inputs"]
    counts = model.detector.counts
    return TwoStageDetectResult(out, inputs, args.score, faces={
        "found": counts.get("faces", 0), "clamped": counts.get(classifier.CLAMPED, 0),
        "too_small": counts.get(classifier.TOO_SMALL, 0), "outside": counts.get(classifier.OUTSIDE, 0)})


def evaluate_command(dataset, args) -> TwoStageEvaluation:
    run_dir = resolve(args.runs, args.run)
    numbers = evaluate_two_stage(run_dir, dataset.root if dataset else None, score=args.score, iou=args.iou,
                                 part=args.part, at=args.at)
    return TwoStageEvaluation(numbers, run_dir)
