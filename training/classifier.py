"""`make train-classifier`: the mask/no-mask classifier of the two-stage detector (twostage.py),
trained on face crops cut from the dataset's own boxes.

The crops follow the dataset's split: `export/split.json` says which part each image is in, the
image's VOC file gives its boxes, and every box becomes one crop of that part, so crops of one
picture (or of its duplicates, which the split keeps together) never straddle train, val and
test. Each crop is the box grown by MARGIN of its width and height on every side (the original
two-stage projects cut faces with a margin too), clamped to the image (dataset/boxes.py), and
resized to SIZE x SIZE. A box whose shorter side is under MIN_BOX pixels is too small to
classify: it is counted and left out.

The model is a small CNN (BACKBONE=small, the default) or a keras.applications backbone
(mobilenetv2, resnet50, xception, ...) built with weights=None: it trains from scratch, or from a
weights file the user gives (WEIGHTS=<file.h5>: keras.applications' no-top weights of that
backbone, or a classifier run's weights; WEIGHTS=<classifier run> starts from that run). Nothing
is downloaded.

A run folder as `make train` makes (training/runs.py): config.json (every setting, the crops
counted per part and class, the data digest of each part as `make train` records it),
classes.csv, log.csv, curves.png, snapshots/best.h5 (lowest val loss) and last.h5 (weights),
classifier.h5 (the best weights, what the detector loads) and calibration.json (the face
detector's box calibration, learned from the train part: twostage.calibrate).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataset import atomic, boxes as box_geometry
from dataset.errors import MasksetError
from dataset.results import Result

from . import runs

log = logging.getLogger(__name__)

KIND = "classifier"
DEFAULT_BACKBONE = "small"
DEFAULT_SIZE = 64
DEFAULT_MARGIN = 0.2
DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 32
DEFAULT_LR = 1e-3
DEFAULT_SEED = 0
MIN_BOX = 12                  # pixels: a box with a shorter side below this is too small to classify
CALIBRATION_IMAGES = 60       # train images the face detector's calibration is learned from
PARTS = ("train", "val", "test")

# BACKBONE= -> (keras.applications module, constructor, smallest SIZE it accepts)
APPLICATIONS = {
    "mobilenet": ("mobilenet", "MobileNet", 32),
    "mobilenetv2": ("mobilenet_v2", "MobileNetV2", 32),
    "resnet50": ("resnet50", "ResNet50", 32),
    "xception": ("xception", "Xception", 71),
    "efficientnetb0": ("efficientnet", "EfficientNetB0", 32),
    "densenet121": ("densenet", "DenseNet121", 32),
    "vgg16": ("vgg16", "VGG16", 32),
    "inceptionv3": ("inception_v3", "InceptionV3", 75),
}
BACKBONES = (DEFAULT_BACKBONE, *APPLICATIONS)


# -- the settings -------------------------------------------------------------------------------------
@dataclass
class ClassifierConfig:
    data: str                          # the dataset folder (absolute)
    classes: list[str]                 # export/classes.csv's names, in id order: the model's outputs
    kind: str = KIND                   # tells a classifier run from a RetinaNet run (runs.detector)
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None         # WEIGHTS= as given: none, a .h5 file or a classifier run
    weights_file: str | None = None    # the file it resolved to
    epochs: int = DEFAULT_EPOCHS
    batch: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    size: int = DEFAULT_SIZE           # crops are resized to size x size
    margin: float = DEFAULT_MARGIN     # the box grown by this share of its width and height per side
    min_box: int = MIN_BOX
    augment: bool = True               # flips, shifts and zooms, brightness and contrast
    seed: int = DEFAULT_SEED
    calibration_images: int = CALIBRATION_IMAGES
    split: str | None = None           # export/split.json the parts came from
    classes_csv: str | None = None
    train_csv: str | None = None       # the export's part CSVs (make evaluate MODEL=two-stage scores one)
    val_csv: str | None = None
    test_csv: str | None = None
    data_digest: dict = field(default_factory=dict)  # per part {"images", "sha256"}, as make train records it
    crops: dict = field(default_factory=dict)        # per part {class: n}, and what was left out
    device: str = ""
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.backbone not in BACKBONES:
            raise MasksetError(f"BACKBONE={self.backbone}: use {', '.join(BACKBONES)} (default {DEFAULT_BACKBONE}).")
        for name in ("epochs", "batch", "size", "min_box"):
            if int(getattr(self, name)) < 1:
                raise MasksetError(f"{name.upper()}={getattr(self, name)}: must be a positive integer.")
        smallest = APPLICATIONS[self.backbone][2] if self.backbone in APPLICATIONS else 16
        if self.size < smallest:
            raise MasksetError(f"SIZE={self.size}: {self.backbone} needs crops of at least {smallest} pixels.")
        if not 0 < self.lr < 1:
            raise MasksetError(f"LR={self.lr}: a learning rate between 0 and 1 is expected, e.g. 1e-3.")
        if not (math.isfinite(self.margin) and 0 <= self.margin <= 2):
            raise MasksetError(f"MARGIN={self.margin}: a share of the box from 0 to 2 (e.g. 0.2: 20% on each side).")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path: Path) -> "ClassifierConfig":
        def classifier_run(values):
            if not isinstance(values, dict) or values.get("kind") != KIND:
                raise MasksetError(f"{path}: not a classifier run (made by `make train`?). MODEL=two-stage needs "
                                   f"a run of `make train-classifier`.")
        return runs.read_settings(cls, path, "make train-classifier", classifier_run)


# -- crops -------------------------------------------------------------------------------------------
OK, CLAMPED, TOO_SMALL, OUTSIDE = "ok", "clamped", "too_small", "outside"


def crop_region(box, margin: float, width: int, height: int) -> tuple[tuple[int, int, int, int] | None, bool]:
    """(the pixels to cut: x1, y1, x2, y2 with x2, y2 exclusive, or None when nothing of it is in
    the image; whether the grown box had to be clamped to the image)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    grown = (x1 - margin * w, y1 - margin * h, x2 + margin * w, y2 + margin * h)
    inside = box_geometry.clamp(grown, (0.0, 0.0), (float(width), float(height)))
    clamped = any(abs(a - b) > 1e-9 for a, b in zip(grown, inside))
    left, top = int(math.floor(inside[0])), int(math.floor(inside[1]))
    right, bottom = min(width, int(math.ceil(inside[2]))), min(height, int(math.ceil(inside[3])))
    if right - left < 1 or bottom - top < 1:
        return None, clamped
    return (left, top, right, bottom), clamped


def cut(pixels: np.ndarray, box, margin: float, size: int, min_box: int = MIN_BOX) -> tuple[np.ndarray | None, str]:
    """One crop (size x size x 3, uint8, the pixels' channel order) of `box` (0-based x1, y1, x2,
    y2) grown by `margin`, and what happened: OK, CLAMPED (part of it lay outside the image),
    TOO_SMALL (shorter side under min_box pixels: no crop) or OUTSIDE (no pixel inside)."""
    import cv2
    if not box_geometry.is_finite(box) or min(box[2] - box[0], box[3] - box[1]) < min_box:
        return None, TOO_SMALL
    height, width = pixels.shape[:2]
    region, clamped = crop_region(box, margin, width, height)
    if region is None:
        return None, OUTSIDE
    left, top, right, bottom = region
    patch = pixels[top:bottom, left:right]
    shrink = patch.shape[0] > size or patch.shape[1] > size
    crop = cv2.resize(np.ascontiguousarray(patch), (size, size),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return crop, CLAMPED if clamped else OK


@dataclass
class Crops:
    """The crops of some parts: per part, the crops (uint8 N x S x S x 3, RGB), their class ids and
    the image each was cut from; and how many boxes were clamped or left out, and why."""
    classes: list[str]
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    images: dict[str, list[str]]
    counts: Counter = field(default_factory=Counter)

    def per_class(self, part: str) -> dict[str, int]:
        tally = Counter(int(v) for v in self.y.get(part, []))
        return {name: tally.get(i, 0) for i, name in enumerate(self.classes)}

    def summary(self) -> dict:
        return {**{part: self.per_class(part) for part in self.x}, **{k: int(v) for k, v in self.counts.items()}}


def read_classes_csv(path: Path) -> list[str]:
    """export/classes.csv's class names in id order."""
    names = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), 1):
                if row:
                    names[int(row[1])] = row[0]
    except (OSError, ValueError, IndexError) as error:
        raise MasksetError(f"{path}: cannot read the classes ({error}). Re-create it with `make export`.") from None
    if sorted(names) != list(range(len(names))) or not names:
        raise MasksetError(f"{path}: class ids must run 0..n-1. Re-create it with `make export`.")
    return [names[i] for i in range(len(names))]


def split_parts(dataset) -> dict[str, list[str]]:
    """{part: [image names]} from export/split.json (dataset.split owns the record)."""
    from dataset.split import read_record
    record = read_record(dataset)
    if record is None:
        raise MasksetError(f"{dataset.export / 'split.json'}: missing, so there are no parts to cut crops from. "
                           f"Run `make export` and `make split` (DATA={dataset.root}) first.")
    parts = {part: [] for part in PARTS}
    for name, part in sorted(record["parts"].items()):
        parts[part].append(name)
    return parts


def load_crops(dataset, parts: dict[str, list[str]], classes: list[str], margin: float = DEFAULT_MARGIN,
               size: int = DEFAULT_SIZE, min_box: int = MIN_BOX, progress: bool = True) -> Crops:
    """Every box of the listed images as a crop, by part. Boxes come from the images' VOC files
    (labelImg's 1-based numbers made 0-based, as everywhere: annotation.calibration.voc_box)."""
    from dataset import progress as progress_bars, voc
    from annotation.calibration import voc_box
    from annotation.facedetect import load_rgb
    label_of = {name: i for i, name in enumerate(classes)}
    x, y, images, counts = {}, {}, {}, Counter()
    jobs = [(part, name) for part in PARTS for name in parts.get(part, [])]
    bag = {part: ([], [], []) for part in PARTS if part in parts}
    for part, name in progress_bars.bar(jobs, desc="cutting crops", enabled=progress):
        image = dataset.images / name
        xml = dataset.annotation_for(image)
        if not image.is_file() or not xml.is_file():
            raise MasksetError(f"{image if not image.is_file() else xml}: missing, but export/split.json places "
                               f"{name} in {part}. Run `make export` and `make split` again.")
        annotation = voc.parse(xml)  # a VocError names the file and the field
        if not annotation.objects:
            continue
        pixels = load_rgb(image)
        for obj in annotation.objects:
            if obj.name not in label_of:
                counts["unknown_class"] += 1
                log.warning("%s: class %r is not in export/classes.csv (%s); its box is left out. Run `make "
                            "validate`.", xml, obj.name, ", ".join(classes))
                continue
            crop, status = cut(pixels, voc_box(obj), margin, size, min_box)
            if crop is None:
                counts[status] += 1
                continue
            if status == CLAMPED:
                counts[CLAMPED] += 1
            bag[part][0].append(crop)
            bag[part][1].append(label_of[obj.name])
            bag[part][2].append(name)
    for part, (crops, labels, names) in bag.items():
        x[part] = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        y[part] = np.asarray(labels, np.int64)
        images[part] = names
    for status, what in ((TOO_SMALL, f"too small to classify (shorter side under {min_box} px)"),
                         (OUTSIDE, "wholly outside their image")):
        if counts.get(status):
            log.warning("%d boxes %s: counted and left out", counts[status], what)
    return Crops(list(classes), x, y, images, counts)


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips, shifts and zooms (a window of 80-100% of the crop, resized back),
    brightness and contrast: the crop a detector cuts is never exactly the one a person drew."""
    import cv2
    out = np.empty_like(batch)
    side = batch.shape[1]
    for i, crop in enumerate(batch):
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        k = max(2, int(round(side * rng.uniform(0.8, 1.0))))
        left, top = rng.integers(0, side - k + 1, size=2)
        crop = cv2.resize(np.ascontiguousarray(crop[top:top + k, left:left + k]), (side, side),
                          interpolation=cv2.INTER_LINEAR)
        values = crop.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
        out[i] = np.clip(values, 0, 255).astype(np.uint8)
    return out


# -- the model ---------------------------------------------------------------------------------------
def preprocess(backbone: str, batch: np.ndarray) -> np.ndarray:
    """uint8 RGB crops as the backbone expects them (keras.applications' own preprocess_input)."""
    batch = np.asarray(batch, np.float32)
    if backbone not in APPLICATIONS:
        return batch / 255.0
    import importlib
    module = importlib.import_module(f"keras.applications.{APPLICATIONS[backbone][0]}")
    return module.preprocess_input(batch.copy())


def build(backbone: str, num_classes: int, size: int):
    """The classifier, untrained: (model, the backbone inside it or None for the small CNN)."""
    from tensorflow import keras
    layers = keras.layers
    inputs = keras.Input((size, size, 3), name="crop")
    if backbone == DEFAULT_BACKBONE:
        base, x = None, inputs
        for level, filters in enumerate((16, 32, 64, 128)):  # narrow where the crop is large: cheap on a CPU
            if level:
                x = layers.MaxPooling2D()(x)
            for _ in range(2):
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization()(x)
                x = layers.Activation("relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        module, constructor, _ = APPLICATIONS[backbone]
        applications = getattr(keras.applications, constructor)
        try:
            base = applications(include_top=False, weights=None, input_tensor=inputs, pooling="avg")
        except ValueError as error:
            raise MasksetError(f"BACKBONE={backbone} SIZE={size}: {error}") from None
        x = base.output
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name=f"classifier_{backbone}"), base


def resolve_weights(spec: str | None, classes: list[str]) -> str | None:
    """WEIGHTS= as a file: none (from scratch), a .h5 file, or a classifier run (its classifier.h5,
    refused when its classes are not these)."""
    word = (spec or "none").strip()
    if word.lower() in ("none", "scratch", ""):
        return None
    if word.lower() in ("imagenet", "auto", "coco"):
        raise MasksetError(f"WEIGHTS={word}: nothing is downloaded. Pass a weights file (.h5: keras.applications' "
                           f"no-top weights of BACKBONE=, or a classifier run's snapshot), a classifier run "
                           f"folder, or WEIGHTS=none to train from scratch.")
    path = Path(word).expanduser()
    if path.is_dir():
        if not runs.is_run(path) or runs.detector(path) != runs.TWO_STAGE:
            raise MasksetError(f"WEIGHTS={word}: a folder, but not a classifier run of `make train-classifier`.")
        theirs = ClassifierConfig.from_json(path / runs.CONFIG).classes
        check_classes(theirs, classes, f"WEIGHTS={word}")
        path = path / runs.CLASSIFIER
    if not path.is_file():
        raise MasksetError(f"WEIGHTS={word}: no such file. Pass a .h5 weights file, a classifier run, or none.")
    return str(path.resolve())


def check_classes(theirs: list[str], ours: list[str], what: str) -> None:
    """A classifier of other classes than the dataset's is refused, saying both."""
    if list(theirs) != list(ours):
        raise MasksetError(f"{what} classifies {', '.join(theirs)}; this dataset's classes (export/classes.csv) "
                           f"are {', '.join(ours)}. Train a classifier on this dataset (`make train-classifier`) "
                           f"or point DATA= at the dataset it was trained on.")


def load_weights(model, base, path: str, config: ClassifierConfig) -> None:
    """A whole classifier's weights (same backbone, size and classes), else the backbone's
    (keras.applications' no-top file): a clear error when it is neither."""
    try:
        model.load_weights(path)
        return
    except (ValueError, OSError, KeyError) as whole:
        reason = str(whole).splitlines()[0][:200]
    if base is not None:
        try:
            base.load_weights(path)
            log.info("WEIGHTS=%s: loaded into the %s backbone; the classification layer starts untrained", path,
                     config.backbone)
            return
        except (ValueError, OSError, KeyError) as error:
            reason += f"; as backbone weights: {str(error).splitlines()[0][:200]}"
    raise MasksetError(f"WEIGHTS={path}: does not fit a BACKBONE={config.backbone} classifier of {len(config.classes)} "
                       f"classes at SIZE={config.size} ({reason}). Pass that backbone's keras.applications no-top "
                       f".h5, or a classifier run trained with the same BACKBONE, SIZE and classes.")


def compile_model(model, lr: float):
    from tensorflow import keras
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def load_classifier(run_dir: Path, config: ClassifierConfig | None = None):
    """The run's classifier.h5 in its architecture (built from config.json)."""
    from .model import quiet_tensorflow
    quiet_tensorflow()
    run_dir = Path(run_dir)
    config = config or ClassifierConfig.from_json(run_dir / runs.CONFIG)
    model, _ = build(config.backbone, len(config.classes), config.size)
    try:
        model.load_weights(str(run_dir / runs.CLASSIFIER))
    except (ValueError, OSError, KeyError) as error:
        raise MasksetError(f"{run_dir / runs.CLASSIFIER}: cannot load the classifier ({str(error)[:200]}); its "
                           f"config.json says {config.backbone}, size {config.size}, {len(config.classes)} classes. "
                           f"Train it again with `make train-classifier`.") from None
    return model


def predict(model, backbone: str, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class probabilities (N x classes) of uint8 RGB crops."""
    if len(crops) == 0:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    out = [model.predict_on_batch(preprocess(backbone, crops[i:i + batch])) for i in range(0, len(crops), batch)]
    return np.concatenate([np.asarray(o) for o in out])


def accuracy(model, backbone: str, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and the confusion counts (rows: true class, columns: predicted) on labelled crops."""
    k = model.output_shape[-1]
    predicted = predict(model, backbone, x).argmax(axis=1) if len(x) else np.zeros(0, int)
    matrix = np.zeros((k, k), int)
    for t, p in zip(y, predicted):
        matrix[int(t), int(p)] += 1
    return {"accuracy": float((predicted == y).mean()) if len(y) else None, "crops": int(len(y)),
            "confusion": matrix.tolist()}


# -- training ----------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    import tensorflow as tf
    random.seed(seed)
    np.random.seed(seed)
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()  # the same seed gives the same run
    except (AttributeError, RuntimeError):
        pass


def batches(x: np.ndarray, y: np.ndarray, backbone: str, batch: int, seed: int, augmenting: bool):
    """A keras Sequence over the training crops: reshuffled each epoch, augmented, seeded."""
    from tensorflow import keras

    class Batches(keras.utils.Sequence):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = np.arange(len(x))
            self.on_epoch_end()

        def __len__(self):
            return max(1, math.ceil(len(x) / batch))

        def __getitem__(self, index):
            chosen = self.order[index * batch:(index + 1) * batch]
            crops = x[chosen]
            if augmenting:
                crops = augment(crops, np.random.default_rng([seed, self.epoch, index]))
            return preprocess(backbone, crops), y[chosen]

        def on_epoch_end(self):
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(x))
            self.epoch += 1

    return Batches()


COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def run_callback(run_dir: Path, epochs: int, has_val: bool):
    """snapshots/last.h5 every epoch, best.h5 at the lowest val loss (train loss without val),
    snapshots/state.json, log.csv, curves.png and one log line per epoch."""
    from tensorflow import keras

    class RunFolder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows, self.state = [], {}
            self.folder = Path(run_dir) / runs.SNAPSHOTS

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            seconds = time.perf_counter() - self.started
            lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, **{k: logs.get(k) for k in COLUMNS[1:5]}, "lr": lr, "seconds": round(seconds, 3)}
            self.rows.append(row)
            last = self.folder / runs.LAST
            with atomic.writing(last) as tmp:
                self.model.save_weights(str(tmp))
            metric = "val_loss" if has_val else "loss"
            value = logs.get(metric)
            self.state.update(last_epoch=epoch + 1, metric=metric)
            if value is not None and (self.state.get("best_value") is None or value < self.state["best_value"]):
                atomic.copy_file(last, self.folder / runs.BEST)
                self.state.update(best_epoch=epoch + 1, best_value=float(value),
                                  best_val_accuracy=logs.get("val_accuracy"), best_accuracy=logs.get("accuracy"))
            atomic.write_json(self.folder / runs.STATE, self.state)
            write_log(Path(run_dir) / runs.LOG, self.rows)
            plot_curves(self.rows, Path(run_dir) / runs.CURVES)
            val = (f"  val loss {logs['val_loss']:.4f}, val accuracy {logs['val_accuracy']:.3f}"
                   if has_val and "val_loss" in logs else "")
            log.info("epoch %d/%d: loss %.4f, accuracy %.3f%s  [%.1fs]", epoch + 1, epochs, logs.get("loss", float("nan")),
                     logs.get("accuracy", float("nan")), val, seconds)

    return RunFolder()


def write_log(path: Path, rows: list[dict]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    atomic.write_text(path, out.getvalue())


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, key, title in ((left, "loss", "loss (cross-entropy)"), (right, "accuracy", "accuracy")):
        ax.plot(epochs, [r.get(key) for r in rows], marker="o", label=f"train {key}")
        if any(r.get(f"val_{key}") is not None for r in rows):
            ax.plot(epochs, [r.get(f"val_{key}") for r in rows], marker="o", label=f"val {key}")
        ax.set(xlabel="epoch", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    right.set_ylim(0, 1.02)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def part_digests(dataset, parts: dict[str, list[str]]) -> dict:
    """Per part, the digest `make train` records (dataset.split.digest of each image's name and
    sha256), so `make evaluate` can tell whether the part changed since."""
    from dataset.manifest import sha256_file
    from dataset.split import digest
    return {part: digest([(name, sha256_file(dataset.images / name)) for name in names])
            for part, names in parts.items() if names}


def fit(config: ClassifierConfig, crops: Crops, run_dir: Path | None = None, progress: bool = True,
        weights_file: str | None = None):
    """Train on crops.x["train"] (val for the best epoch, when there is one): the model, with
    the best epoch's weights. With run_dir, the run folder's log, curves and snapshots."""
    from .model import quiet_tensorflow
    quiet_tensorflow()
    from dataset import progress as progress_bars
    seed_everything(config.seed)
    model, base = build(config.backbone, len(config.classes), config.size)
    if weights_file:
        load_weights(model, base, weights_file, config)
    compile_model(model, config.lr)
    has_val = len(crops.y.get("val", [])) > 0
    validation = (preprocess(config.backbone, crops.x["val"]), crops.y["val"]) if has_val else None
    callbacks = []
    if run_dir is not None:
        callbacks.append(run_callback(run_dir, config.epochs, has_val))
    else:
        callbacks.append(best_in_memory(has_val))
    if progress and progress_bars.wanted():
        from tqdm.keras import TqdmCallback
        callbacks.append(TqdmCallback(verbose=0, epochs=config.epochs, dynamic_ncols=True))
    model.fit(batches(crops.x["train"], crops.y["train"], config.backbone, config.batch, config.seed, config.augment),
              validation_data=validation, epochs=config.epochs, verbose=0, shuffle=False, callbacks=callbacks)
    if run_dir is not None:
        snapshots = Path(run_dir) / runs.SNAPSHOTS
        best = snapshots / runs.BEST if (snapshots / runs.BEST).exists() else snapshots / runs.LAST
        model.load_weights(str(best))
    else:
        model.set_weights(callbacks[0].best_weights)
    return model


def best_in_memory(has_val: bool):
    """The best epoch's weights, kept in memory (the bench trains without a run folder)."""
    from tensorflow import keras

    class Best(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_weights, self.best_epoch = None, None, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get("val_loss" if has_val else "loss")
            if value is not None and (self.best is None or value < self.best):
                self.best, self.best_weights, self.best_epoch = value, self.model.get_weights(), epoch + 1

    return Best()


def train_classifier(dataset, runs_dir: Path | str = "runs", progress: bool = True, face_detector=None,
                     **settings) -> Path:
    """The core of `make train-classifier`: crops by the split's parts, the face detector's
    calibration from the train part, a run folder, training; returns the run folder."""
    from .model import quiet_tensorflow
    from .config import has_gpu
    from .twostage import calibrate
    quiet_tensorflow()
    export = dataset.export
    classes = read_classes_csv(export / "classes.csv")
    config = ClassifierConfig(data=str(dataset.root.resolve()), classes=classes, **settings)
    config.check()
    config.weights_file = resolve_weights(config.weights, classes)
    parts = split_parts(dataset)
    crops = load_crops(dataset, parts, classes, config.margin, config.size, config.min_box, progress)
    if len(crops.y["train"]) == 0:
        raise MasksetError(f"{export / 'split.json'}: the train part has no boxes to cut crops from. Annotate "
                           f"images (`make annotate`), then `make export` and `make split`.")
    if len(crops.y["val"]) == 0:
        log.warning("the val part has no boxes: no val loss, so the best epoch is the lowest training loss.")
    present = [name for name, n in crops.per_class("train").items() if n == 0]
    if present:
        log.warning("the train part has no boxes of %s: the classifier cannot learn them.", ", ".join(present))
    config.crops = crops.summary()
    config.split = str(export / "split.json")
    config.classes_csv = str(export / "classes.csv")
    for part in PARTS:
        path = export / f"{part}.csv"
        setattr(config, f"{part}_csv", str(path) if path.is_file() and parts[part] else None)
    config.data_digest = part_digests(dataset, parts)
    config.device = "gpu" if has_gpu() else "cpu"
    calibration = calibrate(dataset, parts["train"], config.calibration_images, face_detector, progress)
    run_dir = runs.new_run(Path(runs_dir), f"classifier-{config.backbone}")
    atomic.write_text(run_dir / runs.CLASSES, "".join(f"{name},{i}\n" for i, name in enumerate(classes)))
    atomic.write_json(run_dir / runs.CALIBRATION, dataclasses.asdict(calibration))
    atomic.write_json(run_dir / runs.CONFIG, config.to_json())
    log.info("run %s\n  %s classifier at %dx%d, margin %g, weights %s, batch %d, lr %g, %d epochs; crops: %s",
             run_dir, config.backbone, config.size, config.size, config.margin,
             config.weights_file or "none (from scratch)", config.batch, config.lr, config.epochs,
             "; ".join(f"{p} {sum(crops.per_class(p).values())}" for p in PARTS))
    model = fit(config, crops, run_dir, progress, config.weights_file)
    with atomic.writing(run_dir / runs.CLASSIFIER) as tmp:
        model.save_weights(str(tmp))
    return run_dir


@dataclass
class ClassifierResult(Result):
    run: Path
    state: dict
    crops: dict
    calibration: str

    def summary(self) -> str:
        state = self.state
        best = state.get("best_epoch", state.get("last_epoch"))
        val = state.get("best_val_accuracy")
        figure = f", val accuracy {val:.3f}" if isinstance(val, (int, float)) else ""
        parts = "; ".join(f"{part} " + ", ".join(f"{name} {n}" for name, n in self.crops[part].items())
                          for part in PARTS if part in self.crops)
        left = [f"{self.crops[k]} {what}" for k, what in (
            (TOO_SMALL, "too small to classify"), (OUTSIDE, "outside their image"), ("unknown_class", "of unknown classes"))
            if self.crops.get(k)]
        clamped = self.crops.get(CLAMPED, 0)
        return (f"train-classifier: {self.run} after {state.get('last_epoch')} epochs; classifier.h5 from epoch "
                f"{best} ({state.get('metric', 'loss')} {state.get('best_value', float('nan')):.4f}{figure})\n"
                f"crops: {parts}; {clamped} clamped to their image"
                + (f"; left out: {', '.join(left)}" if left else "")
                + f"\nface detector calibration: {self.calibration}\n"
                f"next: `make detect MODEL=two-stage IMAGE=..`, `make evaluate MODEL=two-stage`")


def result_for(run_dir: Path) -> ClassifierResult:
    from annotation.calibration import Calibration
    config = ClassifierConfig.from_json(Path(run_dir) / runs.CONFIG)
    calibration = Calibration(**runs.read_json(Path(run_dir) / runs.CALIBRATION))
    return ClassifierResult(Path(run_dir), runs.read_state(run_dir), config.crops, calibration.describe())
