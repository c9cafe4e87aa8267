"""`make prelabel [RUN=..] [SCORE=..]`: draft VOC boxes for images nobody has annotated yet.

The curator then corrects drafts in labelImg (`make annotate`) instead of drawing every box.
- With a trained run (RUN=runs/<id>, default: the latest run in RUNS), its inference model and
  its classes draw the boxes.
- With no run yet (or RUN=face), the packaged MTCNN face detector draws them, moved and scaled to
  the way this dataset's people draw faces (calibration.py). The class comes from the face's
  appearance, learned from the faces people labelled (faceclass.py); until there are enough of
  them, every face gets the class people used most (else the first in classes.txt). --class NAME
  gives every face that class.

Drafts carry the `maskset-draft` mark (dataset.voc.DRAFT_ATTRIBUTE), are written only where no VOC
file exists (a file a person saved is never touched), and stay "pending" for validate/export until
a person saves them in labelImg, which drops the mark.
"""
from __future__ import annotations

import collections
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dataset import atomic, boxes as box_geometry, voc
from dataset import progress as progress_bars
from dataset.errors import MasksetError
from dataset.images import NotAnImage, open_image
from dataset.layout import Dataset
from dataset.manifest import now
from dataset.results import Result

from . import calibration as calib

log = logging.getLogger(__name__)

FACE = "face"
AUTO_VALUES = {None, "", "1", "yes", "true", "auto", "latest"}
FACE_VALUES = {"face", "mtcnn", "facedetector"}
DEFAULT_RUN_SCORE = 0.5
REPORT_NAME = "prelabel.json"


@dataclass
class Detection:
    name: str
    box: calib.Box       # 0-based pixels
    score: float


@dataclass
class PrelabelResult(Result):
    source: str                                      # "face" or the run folder
    drafted: list[str] = field(default_factory=list)  # image names that got a draft
    empty: list[str] = field(default_factory=list)    # looked at, nothing above the score
    skipped_saved: list[str] = field(default_factory=list)  # a VOC file appeared meanwhile
    boxes: dict = field(default_factory=dict)          # class -> boxes drafted
    seconds: float = 0.0
    score: float = 0.0
    default_class: str | None = None
    calibration: dict | None = None
    images: int = 0                                    # in images/ when it ran
    replace_drafts: bool = False

    @property
    def looked_at(self) -> int:
        return len(self.drafted) + len(self.empty) + len(self.skipped_saved)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.looked_at if self.looked_at else 0.0

    def summary(self) -> str:
        if self.looked_at == 0:
            if not self.images:
                return "nothing to draft: images/ has no images (add some with make scrape or make import)"
            return ("nothing to draft: every image in images/ has a VOC file"
                    + ("" if self.replace_drafts else " (REPLACE_DRAFTS=1 redrafts unreviewed drafts)"))
        text = self.summary_line()
        if self.drafted:
            text += "\nCorrect the drafts in labelImg with `make annotate`; a saved file stops being a draft."
        return text

    def summary_line(self) -> str:
        per_class = ", ".join(f"{n} {name}" for name, n in sorted(self.boxes.items())) or "no boxes"
        return (f"drafted {len(self.drafted)} images, {sum(self.boxes.values())} boxes ({per_class}); "
                f"{len(self.empty)} with nothing found; {self.seconds_per_image:.2f} s/image "
                f"[{'face detector' if self.source == FACE else 'run ' + self.source}]")


# -- choosing what draws the boxes --------------------------------------------------------------
def resolve_source(run: str | Path | None, runs_dir: Path | str = "runs") -> str | Path:
    """FACE, or the run folder to use. `run` may be unset/"auto" (latest run, else FACE), "face",
    a run folder, or a run id inside runs_dir (what `make annotate PRELABEL=..` passes too)."""
    runs_dir = Path(runs_dir)
    value = None if run is None else str(run).strip()
    if value is not None and value.lower() in FACE_VALUES:
        return FACE
    if value is None or value.lower() in AUTO_VALUES:
        from training import runs
        return runs.latest_run(runs_dir, need=runs.INFERENCE) or FACE
    for candidate in (Path(value), runs_dir / value):
        if candidate.is_dir():
            if not (candidate / "inference.h5").is_file():
                raise MasksetError(f"{candidate}: this run has no inference.h5 yet. Let `make train` "
                                   f"finish (it converts the best snapshot), or use RUN=face.")
            return candidate
    raise MasksetError(f"RUN={value}: no such run folder (looked in . and {runs_dir}/). "
                       f"`ls {runs_dir}` lists the runs; leave RUN unset for the latest, or RUN=face.")


class RunDrafter:
    """A trained run's inference model and classes (training.detect's API, as `make detect`)."""

    def __init__(self, run_dir: Path):
        from training import detect as training_detect
        self.run_dir = Path(run_dir)
        self.name = f"run {self.run_dir.name}"
        self.model = training_detect.load_inference_model(self.run_dir)
        self.classes = [self.model.classes[label] for label in sorted(self.model.classes)]
        self._detect_image = training_detect.detect_image

    def detect(self, image: Path, score: float) -> list[Detection]:
        return [Detection(d["class"], tuple(float(v) for v in d["box"]), float(d["score"]))
                for d in self._detect_image(self.model, image, score=score)]


class FaceDrafter:
    """MTCNN faces, calibrated to the dataset's own box convention; the class from the face's
    appearance where the calibration learned it (faceclass), else one default class."""

    def __init__(self, default_class: str, calibration: calib.Calibration, detector=None,
                 by_appearance: bool = True):
        from .facedetect import FaceDetector
        from .faceclass import from_dict
        self.detector = detector or FaceDetector()
        self.default_class = default_class
        self.calibration = calibration
        self.classifier = from_dict(calibration.classifier) if by_appearance else None
        self.name = "face detector"

    def detect(self, image: Path, score: float) -> list[Detection]:
        from .facedetect import face_features, load_rgb, to_lab
        pixels = load_rgb(image)
        height, width = pixels.shape[:2]
        lab = to_lab(pixels) if self.classifier else None
        found = []
        for face in self.detector.detect_array(pixels, score):
            name = self.default_class
            features = face_features(lab, face) if self.classifier else None
            if features is not None:
                name, _ = self.classifier.predict(features)
            found.append(Detection(name, self.calibration.apply(face.box, width, height), face.score))
        return found


def default_class(dataset: Dataset, classes: list[str]) -> str:
    """The class people used most in this dataset, so the curator relabels the fewest drafts."""
    counts = collections.Counter()
    for xml in dataset.annotation_files():
        try:
            annotation = voc.parse(xml)
        except voc.VocError:
            continue
        if not annotation.draft:
            counts.update(o.name for o in annotation.objects if o.name in classes)
    return counts.most_common(1)[0][0] if counts else classes[0]


def face_calibration(dataset: Dataset, detector, recalibrate: bool = False, limit: int = 60,
                     progress: bool = True) -> calib.Calibration:
    """The stored calibration, or one learned now (and stored) from person-annotated images.

    Learned again when asked, or when the dataset has twice the annotated images it was learned
    from (people's convention is better known by then)."""
    stored = calib.load(dataset)
    annotated = len(calib.annotated_examples(dataset))
    if stored is not None and not recalibrate and not stored.is_identity \
            and stored.extra.get("version") == calib.VERSION \
            and annotated < 2 * max(stored.extra.get("annotated_images", 0), 1):
        return stored
    if annotated == 0:
        return calib.IDENTITY
    learned = calib.learn_for_dataset(dataset, detector, limit=limit, progress=progress)
    learned.extra = {"annotated_images": annotated, "learned": now(), "version": calib.VERSION}
    if not learned.is_identity:
        calib.save(dataset, learned)
    return learned


# -- the stage ----------------------------------------------------------------------------------
def images_to_draft(dataset: Dataset, replace_drafts: bool = False) -> list[Path]:
    """Images with no VOC file (and, with replace_drafts, those whose file is still a draft)."""
    chosen = []
    for image in dataset.image_files():
        xml = dataset.annotation_for(image)
        if not xml.exists():
            chosen.append(image)
        elif replace_drafts and _is_draft(xml):
            chosen.append(image)
    return chosen


def _is_draft(xml: Path) -> bool:
    try:
        return voc.parse(xml).draft
    except voc.VocError:
        return False  # a broken file may be a person's: leave it for validate to report


def draft_annotation(image: Path, width: int, height: int, detections: list[Detection]) -> voc.VocAnnotation:
    objects = []
    for found in detections:
        x1, y1, x2, y2 = box_geometry.voc_from_zero_based(found.box, width, height)
        if x2 > x1 and y2 > y1:
            objects.append(voc.VocObject(found.name, x1, y1, x2, y2))
    return voc.VocAnnotation(filename=image.name, width=width, height=height, depth=3, objects=objects,
                             folder=image.parent.name, path=str(image), draft=True)


def _write_draft(dataset: Dataset, image: Path, annotation: voc.VocAnnotation, replace_drafts: bool) -> bool:
    """Write it unless a person's file is there now. True when written."""
    xml = dataset.annotation_for(image)
    if xml.exists():
        if not (replace_drafts and _is_draft(xml)):
            return False  # labelImg saved it while we were detecting: the person's file wins
        voc.write(annotation, xml, overwrite=True)
        return True
    try:
        voc.write(annotation, xml)
    except MasksetError:
        return False
    return True


def prelabel(dataset: Dataset, run: str | Path | None = None, score: float | None = None,
             runs_dir: Path | str = "runs", class_name: str | None = None, calibrate: bool = True,
             recalibrate: bool = False, replace_drafts: bool = False, limit: int | None = None,
             progress: bool = True, face_detector=None) -> PrelabelResult:
    """Draft VOC files for the images that have none; returns what was done. The caller holds
    the dataset's lock. face_detector lets a caller share one loaded FaceDetector across calls.
    """
    if limit is not None and limit < 1:
        raise MasksetError(f"LIMIT={limit}: give a positive number of images (or leave it out).")
    source = resolve_source(run, runs_dir)
    targets = images_to_draft(dataset, replace_drafts)[:limit]
    result = PrelabelResult(source=FACE if source == FACE else str(source),
                            images=len(dataset.image_files()), replace_drafts=replace_drafts)
    if source == FACE:
        from .facedetect import DEFAULT_MIN_SCORE
        result.score = DEFAULT_MIN_SCORE if score is None else score
        result.default_class = _chosen_class(dataset, class_name)
    else:
        result.score = DEFAULT_RUN_SCORE if score is None else score
    if not targets:
        return _finish(dataset, result)  # nothing to draft: no model to load
    if source == FACE:
        drafter = _face_drafter(dataset, result, class_name is None, calibrate, recalibrate,
                                face_detector, progress)
    else:
        drafter = _run_drafter(dataset, source)
    started = time.monotonic()
    boxes = collections.Counter()
    bar = progress_bars.bar(targets, desc=f"prelabel ({drafter.name})", enabled=progress)
    for image in bar:
        try:
            with open_image(image) as opened:
                width, height = opened.size
        except (NotAnImage, OSError) as error:
            raise MasksetError(f"{image}: cannot read this image ({error}). `make validate` lists "
                               f"broken images; drafts written so far are kept.") from None
        annotation = draft_annotation(image, width, height, drafter.detect(image, result.score))
        if not annotation.objects:
            result.empty.append(image.name)
        elif _write_draft(dataset, image, annotation, replace_drafts):
            result.drafted.append(image.name)
            boxes.update(o.name for o in annotation.objects)
        else:
            result.skipped_saved.append(image.name)
        bar.set_postfix(drafted=len(result.drafted), boxes=sum(boxes.values()))
    result.seconds = time.monotonic() - started
    result.boxes = dict(boxes)
    return _finish(dataset, result)


def _chosen_class(dataset: Dataset, class_name: str | None) -> str:
    classes = dataset.classes()
    if class_name is not None and class_name not in classes:
        raise MasksetError(f"--class {class_name!r} is not in {dataset.classes_file} "
                           f"({', '.join(classes)}). Use one of those, or add it there.")
    return class_name or default_class(dataset, classes)


def _face_drafter(dataset, result, by_appearance, calibrate, recalibrate, face_detector, progress):
    from .facedetect import FaceDetector
    detector = face_detector or FaceDetector()
    calibration = (face_calibration(dataset, detector, recalibrate, progress=progress)
                   if calibrate else calib.IDENTITY)
    result.calibration = asdict(calibration)
    log.info("calibration: %s", calibration.describe())
    return FaceDrafter(result.default_class, calibration, detector, by_appearance)


def _run_drafter(dataset: Dataset, run_dir: Path) -> RunDrafter:
    drafter = RunDrafter(run_dir)
    unknown = sorted(set(drafter.classes) - set(dataset.classes()))
    if unknown:
        log.warning("the run's classes %s are not in %s; `make validate` will flag those drafts.",
                    unknown, dataset.classes_file)
    return drafter


def _finish(dataset: Dataset, result: PrelabelResult) -> PrelabelResult:
    """export/prelabel.json: what the last prelabel did, for people and the report."""
    record = asdict(result)
    record.update(time=now(), seconds_per_image=result.seconds_per_image, summary=result.summary_line())
    atomic.write_json(dataset.export / REPORT_NAME, record)
    return result
