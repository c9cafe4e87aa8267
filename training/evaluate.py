"""`make evaluate [RUN=..]`: per-class AP and mAP at IoU 0.5 on export/val.csv, as JSON, a
Markdown table and a precision-recall plot in the run folder.

Detections and ground truth come from keras-retinanet's own evaluation helpers, and AP from its
`_compute_ap`, so the numbers match its Evaluate callback; we keep the PR curves it discards.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset import atomic
from dataset.errors import MasksetError
from dataset.results import Result

from . import runs
from .config import TrainConfig

IOU = 0.5


def pr_curves(all_detections, all_annotations, label: int, iou: float = IOU):
    """(precision, recall, ap, instances) for one label, matching detections greedily by score.

    The matching rule is keras-retinanet's (utils/eval.py); AP is its _compute_ap.
    """
    from keras_retinanet.utils.anchors import compute_overlap
    from keras_retinanet.utils.eval import _compute_ap
    scores, hits, instances = [], [], 0
    for detections, annotations in zip(all_detections, all_annotations):
        truth = annotations[label]
        found = detections[label]
        instances += truth.shape[0]
        taken = set()
        for d in found[np.argsort(-found[:, 4])] if len(found) else found:
            scores.append(d[4])
            if truth.shape[0] == 0:
                hits.append(0)
                continue
            overlaps = compute_overlap(np.expand_dims(d[:4].astype(np.float64), 0), truth.astype(np.float64))[0]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= iou and best not in taken:
                taken.add(best)
                hits.append(1)
            else:
                hits.append(0)
    if instances == 0:
        return np.zeros(0), np.zeros(0), 0.0, 0
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    hit = np.asarray(hits, dtype=float)[order]
    tp, fp = np.cumsum(hit), np.cumsum(1 - hit)
    recall = tp / instances
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return precision, recall, float(_compute_ap(recall, precision)), instances


def detections_and_truth(generator, prediction_model, score: float = 0.05, max_detections: int = 100,
                         progress: bool = True):
    """Per image, per label: detections [x1, y1, x2, y2, score] and ground-truth boxes.

    Our own loop rather than keras-retinanet's _get_detections, for a tqdm bar that stays one
    line (its progressbar2 bar prints a line per image when output is not a terminal).
    """
    from dataset import progress as progress_bars
    labels = range(generator.num_classes())
    detections, truth = [], []
    for i in progress_bars.bar(range(generator.size()), desc="evaluating", leave=False, enabled=progress):
        image, scale = generator.resize_image(generator.load_image(i))
        image = generator.preprocess_image(image)
        boxes, scores, found = prediction_model.predict_on_batch(np.expand_dims(image, 0))[:3]
        keep = np.where(scores[0] > score)[0]
        keep = keep[np.argsort(-scores[0][keep])][:max_detections]
        rows = np.concatenate([boxes[0, keep] / scale, scores[0, keep, None]], axis=1)
        detections.append({label: rows[found[0, keep] == label] for label in labels})
        annotations = generator.load_annotations(i)
        truth.append({label: annotations["bboxes"][annotations["labels"] == label] for label in labels})
    return detections, truth


def evaluate_generator(generator, prediction_model, iou: float = IOU, score: float = 0.05,
                       max_detections: int = 100, progress: bool = True) -> dict:
    """{"mAP", "classes": {name: {"ap", "instances", "precision", "recall"}}} over a CSVGenerator.

    mAP averages the classes that have instances (as keras-retinanet's Evaluate); None if none do.
    """
    detections, annotations = detections_and_truth(generator, prediction_model, score, max_detections, progress)
    classes = {}
    for label in range(generator.num_classes()):
        precision, recall, ap, instances = pr_curves(detections, annotations, label, iou)
        classes[generator.label_to_name(label)] = {
            "ap": ap, "instances": int(instances),
            "precision": precision.tolist(), "recall": recall.tolist()}
    present = [c["ap"] for c in classes.values() if c["instances"] > 0]
    return {"iou": iou, "mAP": float(np.mean(present)) if present else None, "classes": classes}


def csv_generator(annotations_csv: Path, classes_csv: Path, config: TrainConfig, **kwargs):
    """keras-retinanet's CSVGenerator; its ValueErrors (which name file and line) become MasksetErrors."""
    from keras_retinanet.preprocessing.csv_generator import CSVGenerator
    from .model import backbone
    try:
        return CSVGenerator(str(annotations_csv), str(classes_csv),
                            image_min_side=config.image_min_side, image_max_side=config.image_max_side,
                            preprocess_image=backbone(config.backbone).preprocess_image, **kwargs)
    except ValueError as error:
        raise MasksetError(f"{error}. Re-create it with `make export` and `make split`.") from None


def write_results(run_dir: Path, result: dict, extra: dict) -> dict:
    """evaluation.json, evaluation.md and pr_curve.png in the run folder."""
    summary = {"iou": result["iou"], "mAP": result["mAP"],
               "classes": {n: {"ap": c["ap"], "instances": c["instances"]} for n, c in result["classes"].items()},
               **extra}
    atomic.write_json(run_dir / runs.EVALUATION, summary)
    atomic.write_text(run_dir / "evaluation.md", markdown_table(summary))
    plot_pr(result, run_dir / "pr_curve.png")
    return summary


def markdown_table(summary: dict) -> str:
    lines = [f"Evaluation at IoU {summary['iou']} on `{summary.get('val_csv', 'val.csv')}`", "",
             "| class | instances | AP |", "|---|---:|---:|"]
    for name, c in summary["classes"].items():
        lines.append(f"| {name} | {c['instances']} | {c['ap']:.4f} |")
    m = summary["mAP"]
    lines.append(f"| **mAP** | | **{m:.4f}** |" if m is not None else "| **mAP** | | n/a |")
    return "\n".join(lines) + "\n"


def plot_pr(result: dict, path: Path) -> None:
    import io
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for name, c in result["classes"].items():
        if c["instances"]:
            ax.plot(c["recall"] or [0], c["precision"] or [0], label=f"{name} (AP {c['ap']:.3f}, n={c['instances']})")
    m = result["mAP"]
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title=f"precision-recall at IoU {result['iou']}" + (f", mAP {m:.3f}" if m is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())


def val_csv_for(data: Path, config: TrainConfig) -> Path:
    """DATA's export/val.csv if there is one, else the val.csv the run was trained with."""
    for candidate in (Path(data) / "export" / "val.csv", Path(config.val_csv or "")):
        if candidate.is_file():
            return candidate.resolve()
    raise MasksetError(f"{Path(data) / 'export' / 'val.csv'}: missing, and the run's own val CSV "
                       f"({config.val_csv}) is gone too. Run `make export` and `make split` first.")


def evaluate_run(run_dir: Path, data: Path, score: float = 0.05, iou: float = IOU) -> dict:
    from .model import load_inference, quiet_tensorflow
    quiet_tensorflow()
    config = TrainConfig.from_json(run_dir / runs.CONFIG)
    val_csv = val_csv_for(data, config)
    generator = csv_generator(val_csv, run_dir / runs.CLASSES, config, shuffle_groups=False, batch_size=1)
    if generator.size() == 0:
        raise MasksetError(f"{val_csv}: no images to evaluate on. Re-run `make split` with VAL= > 0.")
    model = load_inference(run_dir / runs.INFERENCE, config.backbone)
    started = time.monotonic()
    result = evaluate_generator(generator, model, iou=iou, score=score)
    return write_results(run_dir, result, {
        "val_csv": str(val_csv), "images": generator.size(), "score_threshold": score,
        "seconds": round(time.monotonic() - started, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


@dataclass
class EvaluationResult(Result):
    numbers: dict
    run: Path

    def summary(self) -> str:
        return (markdown_table(self.numbers)
                + f"\nwrote {self.run / runs.EVALUATION}, evaluation.md and pr_curve.png")

    def to_json(self) -> dict:
        return self.numbers
