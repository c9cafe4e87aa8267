"""`make evaluate [RUN=..] [PART=test|val|train] [AT=0.5]`: a run's figures on one part of the
split, saying which part it scored.

Training picks best.h5 on val, so val's figures flatter the model: evaluate scores the test part
when there is one, and otherwise scores val with a warning that the figure is optimistic. It
writes into the run folder: evaluation.json, evaluation.md (also printed), pr_curve.png and
evaluation-errors.html (the images with the most misses, false alarms and swapped classes).
The figures (training/figures.py) are AP at IoU 0.5 per class exactly as the training log's,
COCO's mAP@[.5:.95]/AP50/AP75 by pycocotools, precision/recall/F1 at AT and the threshold that
maximises F1, and a confusion matrix with missed objects and false alarms. When the part's
images (names and bytes) differ from those the run recorded in config.json, it warns.
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset import atomic
from dataset.errors import MasksetError
from dataset.results import Result

from . import figures as evaluation_figures
from . import runs
from .config import TrainConfig

log = logging.getLogger(__name__)

IOU = evaluation_figures.IOU
AT = 0.5            # the score threshold for precision, recall, F1 and the confusion matrix (detect's default)
PARTS = ("test", "val", "train")
ERRORS_PAGE = "evaluation-errors.html"


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


def class_names(generator) -> list[str]:
    return [generator.label_to_name(label) for label in range(generator.num_classes())]


def evaluate_generator(generator, prediction_model, iou: float = IOU, score: float = 0.05,
                       max_detections: int = 100, progress: bool = True) -> dict:
    """{"mAP", "classes": {name: {"ap", "instances", "precision", "recall"}}} over a CSVGenerator:
    what the training log records each epoch (figures.average_precisions, keras-retinanet's AP)."""
    detections, truth = detections_and_truth(generator, prediction_model, score, max_detections, progress)
    classes, m_ap, _ = evaluation_figures.average_precisions(detections, truth, class_names(generator), iou)
    return {"iou": iou, "mAP": m_ap, "classes": classes}


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


# -- which part ------------------------------------------------------------------------------------
def _rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row)


def part_csv(data: Path | None, config: TrainConfig, part: str | None = None) -> tuple[str, Path, list[str]]:
    """(part, its CSV, warnings): PART= if given, else test when the split has one, else val.

    The CSV is DATA's export/<part>.csv when DATA has a split, else the one the run recorded."""
    export = Path(data) / "export" if data else None
    recorded = {"train": config.train_csv, "val": config.val_csv, "test": config.test_csv}
    own_split = export is not None and (export / "split.json").is_file()

    def found(name):
        candidate = export / f"{name}.csv" if own_split else Path(recorded[name] or "")
        return candidate.resolve() if candidate.is_file() and _rows(candidate) > 0 else None

    notes = []
    if part in (None, "", "auto"):
        part = "test" if found("test") else "val"
        if part == "val":
            notes.append("there is no test part, so this scores val, the part training chose best.h5 on: "
                         "the figures are optimistic. `make split TEST=0.1 RESPLIT=test` makes a test part "
                         "(then train again).")
    elif part not in PARTS:
        raise MasksetError(f"PART={part}: use test, val or train (default: test if the split has one).")
    elif part != "test":
        notes.append(f"scoring {part}: " + ("training chose best.h5 on it, so the figures are optimistic."
                                            if part == "val" else "the model learned from it; these are not "
                                            "figures of how it does on new images."))
    path = found(part)
    if path is None:
        where = export / f"{part}.csv" if own_split else recorded[part] or f"the run's {part} CSV"
        raise MasksetError(f"{where}: missing or empty, so there is no {part} part to score. Run "
                           f"`make export` and `make split`" + (" TEST=0.1 RESPLIT=test" if part == "test" else "")
                           + ", or pick another PART=.")
    return part, path, notes


def data_check(config: TrainConfig, part: str, csv_path: Path, data: Path | None) -> tuple[dict, list[str]]:
    """The part's digest now against the one the run recorded at training time."""
    from dataset.split import csv_digest
    images = next((folder for folder in (Path(data) / "images" if data else None,
                                         Path(config.data) / "images" if config.data else None)
                   if folder is not None and folder.is_dir()), None)
    now = csv_digest(csv_path, images)
    then = (config.data_digest or {}).get(part)
    check = {"digest": now, "trained_with": then, "changed": bool(then) and then != now}
    notes = []
    if not config.data_digest:
        notes.append("the run recorded no digest of its data (trained before maskset did): cannot tell whether "
                     f"the {part} part changed since training.")
    elif then is None:
        notes.append(f"the run had no {part} part when it trained: these images may overlap what it trained on.")
    elif check["changed"]:
        notes.append(f"the {part} part has changed since training: the run saw {then['images']} images "
                     f"(digest {then['sha256'][:12]}), now {now['images']} ({now['sha256'][:12]}). These figures "
                     f"are not comparable with earlier evaluations, and images that moved out of train "
                     f"would flatter it; evaluate a run trained on this split.")
    return check, notes


# -- writing -----------------------------------------------------------------------------------------
def summary_of(result: dict, extra: dict) -> dict:
    """evaluation.json: the figures without the PR curves' arrays and per-image detail."""
    classes = {n: {k: v for k, v in c.items() if k not in ("precision", "recall")}
               for n, c in result["classes"].items()}
    images = result.get("images") or []
    errors = {"missed": sum(len(i["missed"]) for i in images), "swapped": sum(len(i["swapped"]) for i in images),
              "false_alarms": sum(len(i["false_alarms"]) for i in images)}
    return {"iou": result["iou"], "mAP": result["mAP"], "classes": classes, "coco": result.get("coco"),
            "at": result.get("at"), "best_f1": result.get("best_f1"), "confusion": result.get("confusion"),
            "errors": errors, **extra}


def write_results(run_dir: Path, result: dict, extra: dict, image_paths: list[str] | None = None) -> dict:
    """evaluation.json, evaluation.md, pr_curve.png and (with image paths) the error page."""
    summary = summary_of(result, extra)
    atomic.write_json(run_dir / runs.EVALUATION, summary)
    atomic.write_text(run_dir / "evaluation.md", markdown_table(summary))
    plot_pr(result, run_dir / "pr_curve.png")
    if image_paths is not None and result.get("images") is not None:
        from .evaluate_page import write_errors_page
        write_errors_page(run_dir / ERRORS_PAGE, summary, result["images"], image_paths)
    return summary


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(summary: dict) -> str:
    part = summary.get("part")
    where = f"the {part} part (`{summary.get('csv')}`, {summary.get('images')} images)" if part else \
        f"`{summary.get('csv') or summary.get('val_csv', 'val.csv')}`"
    at = summary.get("at") or {}
    threshold = at.get("score", AT)
    lines = [f"Evaluation on {where}; IoU {summary['iou']}", "",
             f"| class | instances | AP@{summary['iou']} | COCO mAP@[.5:.95] | precision | recall | F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    coco = summary.get("coco") or {}
    for name, c in summary["classes"].items():
        point = c.get("at") or {}
        lines.append(f"| {name} | {c['instances']} | {c['ap']:.4f} | {_f((coco.get('classes') or {}).get(name))} | "
                     f"{_f(point.get('precision'))} | {_f(point.get('recall'))} | {_f(point.get('f1'))} |")
    m = summary["mAP"]
    lines.append(f"| **mAP** | {sum(c['instances'] for c in summary['classes'].values())} | "
                 f"**{_f(m, 4)}** | **{_f(coco.get('mAP'))}** | {_f(at.get('precision'))} | "
                 f"{_f(at.get('recall'))} | {_f(at.get('f1'))} |")
    lines.append("")
    if coco:
        lines.append(f"COCO (pycocotools): mAP@[.5:.95] {_f(coco.get('mAP'))}, AP50 {_f(coco.get('AP50'))}, "
                     f"AP75 {_f(coco.get('AP75'))}")
    if at:
        line = f"Precision, recall and F1 at score >= {threshold:g}"
        best = summary.get("best_f1")
        if best:
            line += (f"; F1 is highest, {best['f1']:.3f}, at score >= {best['score']:.3f} (precision "
                     f"{best['precision']:.3f}, recall {best['recall']:.3f})")
        lines.append(line)
    confusion = summary.get("confusion")
    if confusion:
        names = confusion["classes"]
        lines += ["", f"Confusion at score >= {confusion['score']:g}, IoU {confusion['iou']} (rows: the true "
                      f"class; columns: what was detected)", "",
                  "| true \\ detected | " + " | ".join(names) + " | missed |",
                  "|---|" + "---:|" * (len(names) + 1)]
        for name, row, missed in zip(names, confusion["matrix"], confusion["missed"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + f" | {missed} |")
        lines.append("| background (false alarms) | " + " | ".join(str(v) for v in confusion["false_alarms"])
                     + " | |")
    for note in summary.get("warnings") or []:
        lines += ["", f"Warning: {note}"]
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


def evaluate_run(run_dir: Path, data: Path | None, score: float = 0.05, iou: float = IOU,
                 part: str | None = None, at: float = AT, progress: bool = True) -> dict:
    from .model import load_inference, quiet_tensorflow
    if not 0 <= at <= 1:
        raise MasksetError(f"AT={at}: a score threshold from 0 to 1 (e.g. AT=0.5).")
    quiet_tensorflow()
    config = TrainConfig.from_json(run_dir / runs.CONFIG)
    part, part_path, notes = part_csv(data, config, part)
    check, more = data_check(config, part, part_path, data)
    notes += more
    for note in notes:
        log.warning("%s", note)
    generator = csv_generator(part_path, run_dir / runs.CLASSES, config, shuffle_groups=False, batch_size=1)
    model = load_inference(run_dir / runs.INFERENCE, config.backbone)
    started = time.monotonic()
    detections, truth = detections_and_truth(generator, model, score, progress=progress)
    result = evaluation_figures.figures(detections, truth, class_names(generator), iou, at)
    paths = [generator.image_path(i) for i in range(generator.size())]
    return write_results(run_dir, result, {
        "run": str(run_dir), "part": part, "csv": str(part_path), "images": generator.size(),
        "score_threshold": score, "data": check, "warnings": notes,
        "seconds": round(time.monotonic() - started, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, paths)


@dataclass
class EvaluationResult(Result):
    numbers: dict
    run: Path

    def summary(self) -> str:
        return (markdown_table(self.numbers)
                + f"\nwrote {self.run / runs.EVALUATION}, evaluation.md, pr_curve.png and {ERRORS_PAGE}")

    def to_json(self) -> dict:
        return self.numbers
