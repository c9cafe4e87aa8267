"""`make train`: train keras-retinanet RetinaNet on DATA/export/train.csv (val.csv for val mAP).

Each run is a folder runs/<id>/ (see runs.py); RESUME=runs/<id> continues it from its last
snapshot at the next epoch.
"""
from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from dataset import atomic
from dataset.errors import MasksetError
from dataset.results import Result

from . import runs
from .config import TrainConfig

log = logging.getLogger(__name__)


def csv_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row)


def check_images(annotations_csv: Path) -> None:
    """Every image the CSV names must exist (keras-retinanet only finds out mid-epoch)."""
    base = annotations_csv.parent
    with open(annotations_csv, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if row and not (base / row[0]).is_file():
                raise MasksetError(f"{annotations_csv}:{number}: image {row[0]} does not exist. "
                                   f"Re-run `make export` and `make split` after changing images/.")


def config_from_dataset(data: Path, **settings) -> TrainConfig:
    from dataset.layout import Dataset
    export = Dataset.at(data).require().export
    train_csv, val_csv, classes_csv = export / "train.csv", export / "val.csv", export / "classes.csv"
    for path, how in ((classes_csv, "make export"), (train_csv, "make split")):
        if not path.is_file():
            raise MasksetError(f"{path}: missing. Run `make export` then `make split` "
                               f"(DATA={data}) first; `{how}` writes it.")
    if csv_rows(train_csv) == 0:
        raise MasksetError(f"{train_csv}: no training rows. Annotate images (`make annotate`), then "
                           f"`make export` and `make split`.")
    if not val_csv.is_file() or csv_rows(val_csv) == 0:
        log.warning("%s is missing or empty: no val mAP; the best snapshot is the lowest loss.", val_csv)
        val_csv = None
    test_csv = export / "test.csv"
    test_csv = test_csv if test_csv.is_file() and csv_rows(test_csv) > 0 else None
    return TrainConfig(data=str(Path(data).resolve()), train_csv=str(train_csv),
                       val_csv=str(val_csv) if val_csv else None, classes_csv=str(classes_csv),
                       test_csv=str(test_csv) if test_csv else None, **settings)


def data_digest(config: TrainConfig) -> dict:
    """What the run sees, per part: the images (file names and sha256) its CSVs name."""
    from dataset.split import csv_digest
    images = Path(config.data) / "images" if config.data else None
    return {part: csv_digest(path, images) for part, path in
            (("train", config.train_csv), ("val", config.val_csv), ("test", config.test_csv))
            if path and Path(path).is_file()}


def resolve_weights(spec: str | None, backbone_name: str) -> str | None:
    """WEIGHTS= as a file to load: none, coco (make weights' cache), imagenet, auto, or a path."""
    from . import weights
    word = (spec or "auto").strip()
    lowered = word.lower()
    if lowered in ("none", "scratch", ""):
        return None
    if lowered in ("coco", "auto"):
        cached = weights.cached_file()
        if cached is not None and backbone_name == "resnet50":
            return str(cached)
        if lowered == "coco":
            raise MasksetError("WEIGHTS=coco: the COCO weights are not downloaded yet. Run `make weights` "
                               "(needs the internet once), or use WEIGHTS=none to train from scratch.")
        lowered = "imagenet"
    if lowered == "imagenet":
        from .model import backbone
        try:
            return backbone(backbone_name).download_imagenet()
        except Exception as error:  # keras' get_file raises several kinds when offline
            raise MasksetError(
                f"WEIGHTS={word}: could not get ImageNet weights for {backbone_name} ({error}). Offline? "
                f"Run `make weights` for the COCO ResNet50 weights, pass WEIGHTS=<file.h5>, or "
                f"WEIGHTS=none to train from scratch.") from None
    path = Path(word).expanduser()
    if not path.is_file():
        raise MasksetError(f"WEIGHTS={word}: no such file. Pass a .h5 weights file, coco, imagenet or none.")
    return str(path.resolve())


def seed_everything(seed: int) -> None:
    import numpy as np
    import tensorflow as tf
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


def transforms(random_transform: bool):
    """Augmentation exactly as keras-retinanet's train.py sets it up."""
    from keras_retinanet.utils.image import random_visual_effect_generator
    from keras_retinanet.utils.transform import random_transform_generator
    if not random_transform:
        return random_transform_generator(flip_x_chance=0.5), None
    return (random_transform_generator(min_rotation=-0.1, max_rotation=0.1, min_translation=(-0.1, -0.1),
                                       max_translation=(0.1, 0.1), min_shear=-0.1, max_shear=0.1,
                                       min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1),
                                       flip_x_chance=0.5, flip_y_chance=0.5),
            random_visual_effect_generator(contrast_range=(0.9, 1.1), brightness_range=(-.1, .1),
                                           hue_range=(-0.05, 0.05), saturation_range=(0.95, 1.05)))


def generators(config: TrainConfig, classes_csv: Path | None = None):
    """Train and val generators; `classes_csv`: a run's own copy (RESUME keeps the run's classes)."""
    from .evaluate import csv_generator
    classes_csv = classes_csv or config.classes_csv
    check_images(Path(config.train_csv))
    transform, visual = transforms(config.random_transform)
    train = csv_generator(config.train_csv, classes_csv, config, batch_size=config.batch,
                          transform_generator=transform, visual_effect_generator=visual)
    val = None
    if config.val_csv:
        check_images(Path(config.val_csv))
        val = csv_generator(config.val_csv, classes_csv, config, batch_size=1, shuffle_groups=False)
    return train, val


def train(config: TrainConfig, runs_dir: Path | str = "runs", resume: Path | None = None) -> Path:
    """Train (or continue) a run; returns its folder. The core that the CLI and the demo share."""
    from .model import quiet_tensorflow
    quiet_tensorflow()
    from tensorflow import keras
    from tqdm.keras import TqdmCallback
    from dataset import progress as progress_bars
    from . import callbacks as cb
    from . import devices
    from .model import build, convert_and_save, load_snapshot

    placement = devices.configure(config.devices)  # before TensorFlow makes any tensor
    if resume is None:
        config = config.resolved()
        devices.record(config, placement)
        if config.seed is None:
            config.seed = random.randrange(2**31)
        config.weights_file = resolve_weights(config.weights, config.backbone)
        train_gen, val_gen = generators(config)  # bad CSVs fail here, before a run folder exists
        config.data_digest = data_digest(config)
        run_dir = runs.new_run(Path(runs_dir), config.backbone)
        atomic.copy_file(config.classes_csv, run_dir / runs.CLASSES)
        state, rows = {}, []
    else:
        run_dir = Path(resume).resolve()
        state = runs.read_state(run_dir)
        if not (run_dir / runs.SNAPSHOTS / runs.LAST).is_file() or "last_epoch" not in state:
            raise MasksetError(f"RESUME={resume}: no snapshot yet (the run ended before its first epoch); "
                               f"start a new run instead.")
        if state["last_epoch"] >= config.epochs:
            raise MasksetError(f"RESUME={resume}: already trained {state['last_epoch']} of {config.epochs} "
                               f"epochs. Pass EPOCHS= larger than {state['last_epoch']} to train on.")
        rows = [r for r in runs.read_log(run_dir) if r["epoch"] <= state["last_epoch"]]
        devices.record(config, placement)
        train_gen, val_gen = generators(config, run_dir / runs.CLASSES)
    atomic.write_json(run_dir / runs.CONFIG, config.to_json())
    seed_everything(config.seed + len(rows))
    log.info("run %s\n  %s, weights %s, batch %s on %s, lr %g, images %s-%spx, freeze backbone %s, "
             "random transform %s", run_dir, config.backbone, config.weights_file or "none (from scratch)",
             config.batch if placement.strategy is None else f"{config.batch} ({config.per_replica_batch} per device)",
             placement.describe(), config.lr, config.image_min_side, config.image_max_side,
             config.freeze_backbone, config.random_transform)

    class_names = [train_gen.label_to_name(i) for i in range(train_gen.num_classes())]
    if resume is None:
        model, prediction_model = build(config, train_gen.num_classes(), config.weights_file, placement.strategy)
    else:
        lr = rows[-1]["lr"] if rows and rows[-1].get("lr") else config.lr  # after any ReduceLROnPlateau
        model, prediction_model = load_snapshot(run_dir / runs.SNAPSHOTS / runs.LAST, config.backbone, lr,
                                                placement.strategy)
        log.info("  resuming after epoch %s at lr %g", state["last_epoch"], lr)

    steps = config.steps or len(train_gen)
    initial_epoch = state.get("last_epoch", 0)
    callbacks = [cb.EpochTimer()]  # first: times the training steps only
    if val_gen is not None:
        callbacks.append(cb.evaluation(val_gen, devices.for_evaluation(prediction_model, placement),
                                       first_epoch=config.val_from, last_epoch=config.epochs))
    callbacks += [
        cb.Snapshots(run_dir, state, has_val=val_gen is not None),
        cb.RunLog(run_dir, class_names, config.epochs, rows, scored=val_gen is not None),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=config.reduce_lr_factor,
                                          patience=config.reduce_lr_patience, min_delta=1e-4, verbose=1),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / runs.TENSORBOARD), write_graph=False,
                                    profile_batch=0),
    ]
    if progress_bars.wanted():  # in a log, RunLog's one line per epoch says enough
        callbacks.append(TqdmCallback(verbose=1, epochs=config.epochs, initial=initial_epoch, miniters=1,
                                      data_size=steps * config.batch, batch_size=config.batch,
                                      dynamic_ncols=True))
    model.fit(cb.StepsPerEpoch(train_gen, steps, initial_epoch), epochs=config.epochs,
              initial_epoch=initial_epoch, verbose=0, callbacks=callbacks, shuffle=False)

    final = runs.read_state(run_dir)
    source = run_dir / runs.SNAPSHOTS / (runs.BEST if (run_dir / runs.SNAPSHOTS / runs.BEST).exists() else runs.LAST)
    model.load_weights(str(source))
    convert_and_save(model, run_dir / runs.INFERENCE)
    log.info("inference model from epoch %s (%s %.4f): %s", final.get("best_epoch", final.get("last_epoch")),
             final.get("metric"), final.get("best_value", float("nan")), run_dir / runs.INFERENCE)
    return run_dir


@dataclass
class TrainResult(Result):
    run: Path
    state: dict

    def summary(self) -> str:
        best = self.state.get("best_epoch", self.state.get("last_epoch"))
        return (f"train: {self.run} after {self.state.get('last_epoch')} epochs; inference model from "
                f"epoch {best}: {self.run / runs.INFERENCE}")
