"""Learn how this dataset's people draw face boxes, relative to what the face detector draws.

MTCNN boxes hug the eyes-nose-mouth; curators in labelImg usually take in the forehead, the chin
and some hair. The calibration is one offset and one scale per axis, relative to the detector's
box:  centre += (offset_x * w, offset_y * h);  size *= (scale_x, scale_y).  It is learned from
images people have already annotated (medians over matched detector/person box pairs, so a few
odd boxes do not pull it), together with the class model of faceclass.py (fitted to the same
matched faces), and kept in the dataset's .cache, since it is derived data.

Boxes here are 0-based pixel boxes (x1, y1, x2, y2), keras-retinanet's convention; labelImg's VOC
numbers are 1-based (voc_box here and dataset.boxes.voc_from_zero_based convert).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from dataset import atomic
from dataset.boxes import clamp, match
from dataset.layout import Dataset

Box = tuple[float, float, float, float]

CACHE_NAME = "prelabel-calibration.json"
VERSION = 2              # bump when what is learned changes: older caches are learned again
MIN_PAIRS = 5            # fewer matched faces than this: the calibration would be noise
LEARN_IOU = 0.5          # second pass: pairs that agree once calibrated
SEED_IOU = 0.1           # first pass: the detector box lies inside the person's, IoU is low


@dataclass
class Calibration:
    offset_x: float = 0.0
    offset_y: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0
    pairs: int = 0             # matched box pairs it was learned from
    images: int = 0            # annotated images it looked at
    detector: str = ""
    extra: dict = field(default_factory=dict)
    classifier: dict | None = None  # faceclass.FaceClassifier fields: the class from appearance

    @property
    def is_identity(self) -> bool:
        return self.pairs == 0

    def apply(self, box: Box, width: float | None = None, height: float | None = None) -> Box:
        """The detector box mapped to this dataset's convention, clipped to the image."""
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        cx = (x1 + x2) / 2 + self.offset_x * w
        cy = (y1 + y2) / 2 + self.offset_y * h
        w, h = w * self.scale_x, h * self.scale_y
        out = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if width is not None and height is not None:
            out = clamp(out, (0.0, 0.0), (width - 1.0, height - 1.0))  # 0-based: last pixel is w-1
        return tuple(out)

    def describe(self) -> str:
        if self.is_identity:
            return "none (detector boxes as they are)"
        classes = (f"; class from appearance ({', '.join(self.classifier['classes'])}, learned from "
                   f"{self.classifier['faces']} faces)" if self.classifier else "")
        return (f"centre {self.offset_x:+.3f}w {self.offset_y:+.3f}h, size x{self.scale_x:.3f} "
                f"x{self.scale_y:.3f} (from {self.pairs} faces in {self.images} annotated images){classes}")


IDENTITY = Calibration()


# -- geometry ---------------------------------------------------------------------------------
# iou and match live in dataset.boxes: dedupe's conflict check uses the same matching.


def voc_box(obj) -> Box:
    """A labelImg (1-based) VOC object as a 0-based box."""
    return (obj.xmin - 1, obj.ymin - 1, obj.xmax - 1, obj.ymax - 1)


# -- learning ---------------------------------------------------------------------------------
def _centred(box: Box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1])


def _inside(point, box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def _fit(pairs: list[tuple[Box, Box]]) -> tuple[float, float, float, float]:
    dx, dy, sx, sy = [], [], [], []
    for det, person in pairs:
        dcx, dcy, dw, dh = _centred(det)
        pcx, pcy, pw, ph = _centred(person)
        if dw <= 0 or dh <= 0:
            continue
        dx.append((pcx - dcx) / dw)
        dy.append((pcy - dcy) / dh)
        sx.append(pw / dw)
        sy.append(ph / dh)
    return (statistics.median(dx), statistics.median(dy), statistics.median(sx), statistics.median(sy))


def pair_up(examples: Iterable[tuple[Sequence[Box], Sequence[Box]]], calibration: Calibration | None):
    """(detector box, person box) pairs over all examples.

    Without a calibration: a detector box whose centre lies in a person's box with IoU >= 0.1
    (detector boxes sit inside people's, so IoU alone is too strict). With one: pairs whose
    calibrated boxes overlap by IoU >= 0.5.
    """
    pairs = []
    for detected, truth in examples:
        if calibration is None:
            found = match(detected, truth, SEED_IOU)
            found = [(i, j, o) for i, j, o in found if _inside(_centred(detected[i])[:2], truth[j])]
        else:
            found = match([calibration.apply(b) for b in detected], truth, LEARN_IOU)
        pairs.extend((detected[i], truth[j]) for i, j, _ in found)
    return pairs


def learn(examples: list[tuple[Sequence[Box], Sequence[Box]]], detector: str = "") -> Calibration:
    """Fit the calibration to (detector boxes, person boxes) per annotated image.

    Two passes: a loose match to get a first estimate, then a strict match of the calibrated
    boxes, so faces the detector found but the person did not box (or boxed differently) drop out.
    Returns IDENTITY (pairs=0) when fewer than MIN_PAIRS faces match.
    """
    examples = [(list(d), list(t)) for d, t in examples]
    pairs = pair_up(examples, None)
    if len(pairs) < MIN_PAIRS:
        return Calibration(images=len(examples), detector=detector)
    first = Calibration(*_fit(pairs), pairs=len(pairs))
    strict = pair_up(examples, first)
    if len(strict) >= MIN_PAIRS:
        pairs = strict
    return Calibration(*_fit(pairs), pairs=len(pairs), images=len(examples), detector=detector)


# -- scoring ----------------------------------------------------------------------------------
def score(examples: Iterable[tuple[Sequence, Sequence]], threshold: float = 0.5) -> dict:
    """Recall and precision at IoU `threshold` over (predicted, truth) per image.

    Each side is a list of boxes, or of (class, box) to require the class to agree too.
    """
    tp = fp = fn = 0
    for predicted, truth in examples:
        predicted, truth = list(predicted), list(truth)
        classed = bool(predicted or truth) and isinstance((predicted or truth)[0][0], str)
        if classed:
            found = 0
            for name in {n for n, _ in predicted} | {n for n, _ in truth}:
                p = [b for n, b in predicted if n == name]
                t = [b for n, b in truth if n == name]
                found += len(match(p, t, threshold))
        else:
            found = len(match(predicted, truth, threshold))
        tp += found
        fp += len(predicted) - found
        fn += len(truth) - found
    return {
        "iou": threshold, "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
    }


# -- persistence ------------------------------------------------------------------------------
def cache_path(dataset: Dataset) -> Path:
    return dataset.cache / CACHE_NAME


def save(dataset: Dataset, calibration: Calibration) -> Path:
    return atomic.write_json(cache_path(dataset), asdict(calibration))


def load(dataset: Dataset) -> Calibration | None:
    path = cache_path(dataset)
    if not path.exists():
        return None
    try:
        return Calibration(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None  # derived data: a damaged cache is simply learned again


def annotated_examples(dataset: Dataset, limit: int | None = None) -> list[tuple[Path, list[tuple[str, Box]]]]:
    """(image, [(class, person box)]) for images a person annotated (drafts excluded), evenly sampled."""
    from dataset import voc
    chosen = []
    for image in dataset.image_files():
        xml = dataset.annotation_for(image)
        if not xml.exists():
            continue
        try:
            annotation = voc.parse(xml)
        except voc.VocError:
            continue  # validate reports it; a broken file teaches nothing
        if annotation.draft or not annotation.objects:
            continue
        chosen.append((image, [(o.name, voc_box(o)) for o in annotation.objects]))
    if limit is not None and len(chosen) > limit:
        step = len(chosen) / limit
        chosen = [chosen[int(i * step)] for i in range(limit)]
    return chosen


def learn_for_dataset(dataset: Dataset, detector, limit: int = 60, progress: bool = True) -> Calibration:
    """Run the face detector on up to `limit` person-annotated images; learn the box calibration,
    then, from the faces it matches, which class a face's appearance means (faceclass)."""
    from dataset import progress as progress_bars
    from . import faceclass
    from .facedetect import face_features, load_rgb, to_lab
    chosen = annotated_examples(dataset, limit)
    examples, features = [], []
    for image, truth in progress_bars.bar(chosen, desc="calibrating", enabled=progress):
        pixels = load_rgb(image)
        faces = detector.detect_array(pixels)
        lab = to_lab(pixels)
        examples.append(([f.box for f in faces], [box for _, box in truth]))
        features.append([face_features(lab, f) for f in faces])
    calibration = learn(examples, detector=detector.name)
    if calibration.is_identity:
        return calibration
    faces, labels = [], []
    for (detected, people), found, (_, truth) in zip(examples, features, chosen):
        for i, j, _ in match([calibration.apply(b) for b in detected], people, LEARN_IOU):
            if found[i] is not None:
                faces.append(found[i])
                labels.append(truth[j][0])
    classifier = faceclass.fit(faces, labels)
    calibration.classifier = asdict(classifier) if classifier else None
    return calibration
