"""A training run's settings: defaults as in the original projects, and the run's config.json.

The config is everything needed to repeat a run: `make train` with the same values (or
`python -m training.train --config runs/<id>/config.json`) trains the same model again.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dataset.cli import yes_no
from dataset.errors import MasksetError

from .geometry import IMAGE_MAX_SIDE, IMAGE_MIN_SIDE

GPU_BATCH = 8   # the original projects' batch size on a GPU
CPU_BATCH = 1   # ... and on a CPU, where a batch of 8 at 800x1333 is slow and memory-hungry
DEFAULT_LR = 1e-5        # keras-retinanet's default
CLIPNORM = 0.001         # keras-retinanet's optimizer_clipnorm
DEFAULT_EPOCHS = 50      # keras-retinanet's default


def parse_bool(text: str | bool, name: str) -> bool:
    return yes_no(text, name)


def has_gpu() -> bool:
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


@dataclass
class TrainConfig:
    data: str                       # the dataset folder (absolute)
    train_csv: str                  # export/train.csv
    val_csv: str | None             # export/val.csv (None: no validation, no val mAP)
    classes_csv: str                # export/classes.csv
    epochs: int = DEFAULT_EPOCHS
    steps: int | None = None        # steps per epoch; None: one pass over train.csv
    batch: int | None = None        # None: GPU_BATCH on a GPU, CPU_BATCH on a CPU
    backbone: str = "resnet50"
    weights: str | None = "auto"    # a .h5 file, "coco", "imagenet", "none", or "auto"
    lr: float = DEFAULT_LR
    clipnorm: float = CLIPNORM
    image_min_side: int = IMAGE_MIN_SIDE
    image_max_side: int = IMAGE_MAX_SIDE
    freeze_backbone: bool = True
    random_transform: bool = True
    reduce_lr_patience: int = 2     # ReduceLROnPlateau on loss, as keras-retinanet's train.py
    reduce_lr_factor: float = 0.1
    # the first epoch whose val mAP is computed (the last one always is): a from-scratch model's first
    # epochs score about 0, and scoring them is slow (NMS over thousands of near-uniform boxes)
    val_from: int = 1
    seed: int | None = None
    weights_file: str | None = None  # the file `weights` resolved to (filled in at start)
    device: str = ""                 # "gpu" or "cpu" (filled in at start)
    extra: dict = field(default_factory=dict)
    test_csv: str | None = None      # export/test.csv when the split has a test part (make evaluate scores it)
    # the data the run saw, filled in at start: per part {"images": n, "sha256": digest of the sorted
    # "name sha256" lines of its images} (dataset.split.digest); make evaluate compares it
    data_digest: dict = field(default_factory=dict)
    # DEVICES=: "1" (one device, no strategy), "N" or "all" (training/devices.py); and what it gave,
    # filled in at start: the devices used, how many replicas, each one's share of the batch
    devices: str = "1"
    device_names: list = field(default_factory=list)
    replicas: int = 1
    per_replica_batch: int | None = None

    def resolved(self) -> "TrainConfig":
        """A copy with the device-dependent defaults filled in."""
        config = dataclasses.replace(self)
        gpu = has_gpu()
        config.device = "gpu" if gpu else "cpu"
        if config.batch is None:
            config.batch = GPU_BATCH if gpu else CPU_BATCH
        config.check()
        return config

    def check(self) -> None:
        for name in ("epochs", "image_min_side", "image_max_side", "val_from"):
            if int(getattr(self, name)) < 1:
                raise MasksetError(f"{name.upper()}={getattr(self, name)}: must be a positive integer.")
        if self.steps is not None and self.steps < 1:
            raise MasksetError(f"STEPS={self.steps}: must be a positive integer (or unset: one pass).")
        if self.batch is not None and self.batch < 1:
            raise MasksetError(f"BATCH={self.batch}: must be a positive integer.")
        if not 0 < self.lr < 1:
            raise MasksetError(f"LR={self.lr}: a learning rate between 0 and 1 is expected, e.g. 1e-5.")
        if self.image_min_side > self.image_max_side:
            raise MasksetError(f"IMAGE_MIN_SIDE={self.image_min_side} is larger than "
                               f"IMAGE_MAX_SIDE={self.image_max_side}.")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path: Path) -> "TrainConfig":
        from .runs import read_settings
        return read_settings(cls, path, "make train")
