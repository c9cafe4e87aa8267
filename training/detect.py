"""`make detect [RUN=..|MODEL=..] IMAGE=..|DIR=..|VIDEO=..`: run a trained model; write copies with
boxes, class names and scores drawn, and detections.json, into <run>/detect/<time>/.
(SOURCE=, live input, is training/live.py.)

The model is a run's inference.h5 (Keras) or a file `make export-model` wrote, run through its
own runtime (training/runtimes.py); `InferenceModel.predict` is the one call every path makes.
`load_inference_model` + `detect_image` are the API other stages (prelabel) reuse.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset import atomic, boxes as box_geometry
from dataset.errors import MasksetError
from dataset.layout import IMAGE_SUFFIXES
from dataset.results import Result

from . import runs
from .config import TrainConfig

DEFAULT_SCORE = 0.5
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


# keras-retinanet's preprocess_image mode per backbone family (models/<family>.py), so an
# exported model's preprocessing needs no TensorFlow; other backbones ask keras-retinanet.
PREPROCESS_MODES = {"resnet": "caffe", "vgg": "caffe", "mobilenet": "tf", "densenet": "tf"}


@dataclass
class InferenceModel:
    keras_model: object                # the Keras inference model (None for an exported model)
    backbone: str
    min_side: int
    max_side: int
    classes: dict[int, str]
    run_dir: Path | None               # the run it comes from (None if the export's run is gone)
    runner: object = None              # runtimes.Runner: what predict() calls
    source: str = ""                   # what it is, for messages: "runs/x/inference.h5 (keras)"
    manifest: dict | None = None       # an export's manifest

    def __post_init__(self):
        if self.runner is None and self.keras_model is not None:
            from .runtimes import KerasRunner
            self.runner = KerasRunner(self.keras_model)

    def predict(self, batch: np.ndarray):
        """(boxes, scores, labels) for a preprocessed batch, as the Keras inference model gives them."""
        return self.runner.predict(batch)

    def preprocess(self, image_bgr):
        from keras_retinanet.utils.image import preprocess_image, resize_image
        image, scale = resize_image(image_bgr, min_side=self.min_side, max_side=self.max_side)
        family = next((mode for prefix, mode in PREPROCESS_MODES.items() if self.backbone.startswith(prefix)), None)
        if family is None:
            from .model import backbone
            return backbone(self.backbone).preprocess_image(image.astype(np.float32)), scale
        return preprocess_image(image.astype(np.float32), mode=family), scale

    @property
    def home(self) -> Path:
        """Where detect's output folders go by default: <run>/detect/, or beside the export."""
        if self.run_dir is not None:
            return self.run_dir
        return Path(self.manifest["_folder"]) if self.manifest else Path.cwd()


def load_inference_model(run_dir: Path | str) -> InferenceModel:
    """The run's inference.h5 with the image sizes and classes it was trained with."""
    from .model import load_inference, quiet_tensorflow
    quiet_tensorflow()
    run_dir = Path(run_dir).resolve()
    if not (run_dir / runs.INFERENCE).is_file():
        raise MasksetError(f"{run_dir}: no {runs.INFERENCE}; the run has not finished. "
                           f"Continue it with `make train RESUME={run_dir}` or pick another RUN=.")
    config = TrainConfig.from_json(run_dir / runs.CONFIG)
    return InferenceModel(load_inference(run_dir / runs.INFERENCE, config.backbone), config.backbone,
                          config.image_min_side, config.image_max_side, runs.read_classes(run_dir), run_dir,
                          source=f"{run_dir / runs.INFERENCE} (keras)")


def load_exported_model(path: Path | str, threads: int | None = None) -> InferenceModel:
    """A model `make export-model` wrote (its manifest beside it), on its own runtime."""
    import logging
    from .runtimes import load_exported, manifest_path
    path = Path(path).resolve()
    runner, manifest = load_exported(path, threads)
    if not manifest.get("verify", {}).get("ok", False):
        logging.getLogger(__name__).warning(
            "%s: when it was exported this model did NOT give the Keras model's detections (%s lists the "
            "disagreements); its detections may be wrong.", path, manifest_path(path))
    run_dir = Path(manifest.get("run", ""))
    run_dir = run_dir if manifest.get("run") and runs.is_run(run_dir) else None
    return InferenceModel(None, manifest["backbone"], int(manifest["image_min_side"]), int(manifest["image_max_side"]),
                          dict(enumerate(manifest["classes"])), run_dir, runner,
                          f"{path} ({runner.name}, {manifest['graph']} graph)", manifest)


def detect_array(model: InferenceModel, image_bgr: np.ndarray, classes=None, score: float = DEFAULT_SCORE):
    """Detections on a BGR array: [{"class", "score", "box": [x1, y1, x2, y2]}], best first."""
    names = classes if classes is not None else model.classes
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    image, scale = model.preprocess(image_bgr)
    boxes, scores, labels = model.predict(np.expand_dims(image, 0))[:3]
    height, width = image_bgr.shape[:2]
    found = []
    for box, s, label in zip(boxes[0] / scale, scores[0], labels[0]):
        if s < score or label < 0:  # FilterDetections pads with -1
            continue
        clipped = clip_box(box, width, height)
        if clipped is None:
            continue
        found.append({"class": names.get(int(label), str(int(label))), "score": round(float(s), 4),
                      "box": clipped})
    return sorted(found, key=lambda d: -d["score"])


def clip_box(box, width: int, height: int) -> list[float] | None:
    """[x1, y1, x2, y2] inside the image, or None (dataset.boxes.detection_clipped)."""
    return box_geometry.detection_clipped(box, width, height)


def read_bgr(path: Path) -> np.ndarray:
    from keras_retinanet.utils.image import read_image_bgr
    try:
        return read_image_bgr(str(path))
    except Exception as error:  # PIL raises several kinds for broken files
        raise MasksetError(f"{path}: cannot read the image ({error}).") from None


def detect_image(model: InferenceModel, image_path: Path | str, classes=None, score: float = DEFAULT_SCORE):
    return detect_array(model, read_bgr(Path(image_path)), classes, score)


def draw(image_bgr: np.ndarray, detections: list[dict], classes: dict[int, str]) -> np.ndarray:
    """A copy with each box, its class name and score drawn (keras-retinanet's colours and captions)."""
    from keras_retinanet.utils.colors import label_color
    from keras_retinanet.utils.visualization import draw_box, draw_caption
    label_of = {name: label for label, name in classes.items()}
    canvas = image_bgr.copy()
    for d in detections:
        box = np.array(d["box"]).astype(int)
        draw_box(canvas, box, color=label_color(label_of.get(d["class"], 0)))
        draw_caption(canvas, box, f"{d['class']} {d['score']:.2f}")
    return canvas


def write_image(path: Path, image_bgr: np.ndarray) -> None:
    import cv2
    ok, data = cv2.imencode(path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".jpg", image_bgr)
    if not ok:
        raise MasksetError(f"{path}: cannot encode the annotated copy.")
    atomic.write_bytes(path, data.tobytes())


def detect_files(model: InferenceModel, images: list[Path], out: Path, score: float) -> dict:
    from dataset import progress as progress_bars
    results = {}
    for path in progress_bars.bar(images, desc="detecting"):
        image = read_bgr(path)
        found = detect_array(model, image, score=score)
        name = path.name if path.suffix.lower() in (".jpg", ".jpeg", ".png") else path.stem + ".jpg"
        target = atomic.unique_path(out / name)  # two inputs with one name: both kept
        write_image(target, draw(image, found, model.classes))
        results[str(path)] = {"output": target.name, "detections": found}
    return results


def detect_video(model: InferenceModel, video: Path, out: Path, score: float) -> dict:
    """An annotated .mp4 copy plus the detections of every frame."""
    import cv2
    from dataset import progress as progress_bars
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise MasksetError(f"{video}: OpenCV cannot open this video; convert it to .mp4 (H.264) and retry.")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = out / (video.stem + ".mp4")
    writer, frames = None, []
    try:
        with atomic.writing(target) as tmp, progress_bars.bar(total=total, desc="detecting", unit="frame") as bar:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if writer is None:
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (frame.shape[1], frame.shape[0]))
                found = detect_array(model, frame, score=score)
                writer.write(draw(frame, found, model.classes))
                frames.append({"frame": len(frames), "time": round(len(frames) / fps, 3), "detections": found})
                bar.update(1)
            if writer is None:
                raise MasksetError(f"{video}: no frames could be read.")
            writer.release()
    finally:
        capture.release()
    return {str(video): {"output": target.name, "fps": fps, "frames": frames}}


def inputs_from(image: str | None, folder: str | None) -> list[Path]:
    if image:
        path = Path(image)
        if not path.is_file():
            raise MasksetError(f"IMAGE={image}: no such file.")
        return [path.resolve()]
    path = Path(folder)
    if not path.is_dir():
        raise MasksetError(f"DIR={folder}: no such folder.")
    images = sorted(p.resolve() for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise MasksetError(f"DIR={folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it.")
    return images


def detect(run_dir: Path | None, image: str | None = None, folder: str | None = None, video: str | None = None,
           score: float = DEFAULT_SCORE, out: Path | None = None, model: InferenceModel | None = None) -> Path:
    """The core: detections for IMAGE, DIR or VIDEO; returns the output folder.

    `model`: an already loaded inference model (this run's, or an exported one: run_dir may then
    be None); loading one takes seconds.
    """
    if sum(x is not None for x in (image, folder, video)) != 1:
        raise MasksetError("pass exactly one of IMAGE=<file>, DIR=<folder> or VIDEO=<file>.")
    if video and not Path(video).is_file():
        raise MasksetError(f"VIDEO={video}: no such file.")
    model = model or load_inference_model(run_dir)
    if out is None:  # a fresh folder per call: earlier results are never overwritten
        out = new_output_folder(model)
    out.mkdir(parents=True, exist_ok=True)
    if video:
        results = detect_video(model, Path(video).resolve(), out, score)
    else:
        results = detect_files(model, inputs_from(image, folder), out, score)
    atomic.write_json(out / "detections.json", {"run": str(model.run_dir) if model.run_dir else None,
                                                "model": model.source,
                                                "score_threshold": score, "classes": list(model.classes.values()),
                                                "inputs": results})
    return out


def new_output_folder(model: InferenceModel) -> Path:
    return atomic.unique_path(model.home / "detect" / time.strftime("%Y%m%d-%H%M%S"))


@dataclass
class DetectResult(Result):
    out: Path
    inputs: dict
    score: float

    def summary(self) -> str:
        count = sum(len(v.get("detections", [])) or sum(len(f["detections"]) for f in v.get("frames", []))
                    for v in self.inputs.values())
        return (f"{count} detections at score >= {self.score} in {len(self.inputs)} input(s); "
                f"annotated copies and detections.json in {self.out}")
