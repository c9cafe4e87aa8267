"""Keras callbacks for a run folder: val AP per class, best+last snapshots, log.csv + curves.png."""
from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path

from tensorflow import keras
from tqdm import tqdm
from keras_retinanet.callbacks import RedirectModel
from keras_retinanet.callbacks.eval import Evaluate

from dataset import atomic

from . import runs
from .evaluate import evaluate_generator
from .model import optimizer_lr, save_atomic

LOSSES = ("loss", "regression_loss", "classification_loss")


class EvaluateClasses(Evaluate):
    """keras-retinanet's Evaluate, also putting AP per class into the epoch's logs (AP_<class>).
    Epochs before first_epoch are not scored (TrainConfig.val_from), except last_epoch."""

    def __init__(self, generator, first_epoch: int = 1, last_epoch: int | None = None, **kwargs):
        super().__init__(generator, **kwargs)
        self.first_epoch, self.last_epoch = first_epoch, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if epoch + 1 < self.first_epoch and epoch + 1 != self.last_epoch:
            return
        result = evaluate_generator(self.generator, self.model, iou=self.iou_threshold,
                                    score=self.score_threshold, max_detections=self.max_detections)
        self.mean_ap = result["mAP"]
        logs["mAP"] = result["mAP"] if result["mAP"] is not None else 0.0
        for name, c in result["classes"].items():
            logs[f"AP_{name}"] = c["ap"]


def evaluation(generator, prediction_model, first_epoch: int = 1, last_epoch: int | None = None):
    return RedirectModel(EvaluateClasses(generator, first_epoch, last_epoch, verbose=0), prediction_model)


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch's training steps only (first in the list, so evaluation is excluded)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.lr = optimizer_lr(self.model)   # the LR this epoch trains at, read from the optimizer

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self.started
            logs["lr"] = self.lr


class Snapshots(keras.callbacks.Callback):
    """snapshots/last.h5 every epoch; snapshots/best.h5 when val mAP improves (loss if no val set).

    best.h5 is a hard link to that epoch's last.h5: free, and the next epoch's rename of last.h5
    leaves it alone. state.json says which epoch each holds, for RESUME.
    """

    def __init__(self, run_dir: Path, state: dict, has_val: bool):
        super().__init__()
        self.folder = Path(run_dir) / runs.SNAPSHOTS
        self.state = dict(state)
        self.has_val = has_val

    def _better(self, value: float) -> bool:
        best = self.state.get("best_value")
        if best is None:
            return True
        return value > best if self.has_val else value < best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        last = save_atomic(self.model, self.folder / runs.LAST)
        metric = "val_mAP" if self.has_val else "loss"
        value = logs.get("mAP") if self.has_val else logs.get("loss")
        self.state.update(last_epoch=epoch + 1, metric=metric)
        if value is not None and self._better(float(value)):
            tmp = self.folder / ".best.h5.link"
            tmp.unlink(missing_ok=True)
            os.link(last, tmp)
            os.replace(tmp, self.folder / runs.BEST)
            self.state.update(best_epoch=epoch + 1, best_value=float(value))
        atomic.write_json(self.folder / runs.STATE, self.state)


class RunLog(keras.callbacks.Callback):
    """log.csv (one row per epoch), curves.png, and one readable line per epoch on stdout."""

    def __init__(self, run_dir: Path, class_names: list[str], epochs: int, rows: list[dict], scored: bool = False):
        super().__init__()
        self.scored = scored  # a val part is scored (from some epoch on)
        self.run_dir = Path(run_dir)
        self.class_names = class_names
        self.epochs = epochs
        self.rows = rows
        self.columns = ["epoch", *LOSSES, "val_mAP", *[f"AP_{c}" for c in class_names], "lr", "seconds"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "val_mAP": logs.get("mAP"),
               **{k: logs.get(k) for k in self.columns if k not in ("epoch", "val_mAP")}}
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.columns})
        atomic.write_text(self.run_dir / runs.LOG, out.getvalue())
        plot_curves(self.rows, self.class_names, self.run_dir / runs.CURVES)
        aps = ", ".join(f"{c} {logs[f'AP_{c}']:.3f}" for c in self.class_names if f"AP_{c}" in logs)
        val = f"  val mAP {logs['mAP']:.4f} ({aps})" if "mAP" in logs else "  val not scored yet" if self.scored else ""
        tqdm.write(f"epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f} "
              f"(regression {logs.get('regression_loss', float('nan')):.4f}, classification "
              f"{logs.get('classification_loss', float('nan')):.4f}){val}  lr {logs.get('lr', 0):.2g}  "
              f"[{logs.get('seconds', 0):.1f}s]", file=sys.stdout)


def plot_curves(rows: list[dict], class_names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for key in LOSSES:
        left.plot(epochs, [r.get(key) for r in rows], marker="o", label=key)
    left.set(xlabel="epoch", ylabel="loss (log scale)", title="training loss", yscale="log")
    left.legend(fontsize=8)
    if any(r.get("val_mAP") is not None for r in rows):
        right.plot(epochs, [r.get("val_mAP") for r in rows], marker="o", linewidth=2, label="val mAP")
        for c in class_names:
            right.plot(epochs, [r.get(f"AP_{c}") for r in rows], linestyle="--", label=f"AP {c}")
        right.set_ylim(0, 1)
        right.legend(fontsize=8)
    right.set(xlabel="epoch", ylabel="AP at IoU 0.5", title="validation")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())


class StepsPerEpoch(keras.utils.Sequence):
    """A fixed number of batches per epoch over a keras-retinanet generator, wrapping around.

    A keras Sequence ends after len() batches ("input ran out of data"); STEPS may be more or
    fewer than one pass, so we cycle, reshuffling (the generator's on_epoch_end) at each wrap.
    """

    def __init__(self, generator, steps: int, start_epoch: int = 0):
        super().__init__()
        self.generator = generator
        self.steps = steps
        self.offset = start_epoch * steps

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        position = self.offset + index
        return self.generator[position % len(self.generator)]

    def on_epoch_end(self):
        before = self.offset // len(self.generator)
        self.offset += self.steps
        if self.offset // len(self.generator) != before:
            self.generator.on_epoch_end()
