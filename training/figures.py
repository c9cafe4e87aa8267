"""The evaluation figures: a pure function of detections, ground truth and class names.

No model and no generator here: `figures(detections, truth, class_names)` is what `make evaluate`
computes for keras-retinanet, and what another detector (a two-stage one, say) can compute for
its own detections. Per image i and label l: detections[i][l] is an array of [x1, y1, x2, y2,
score] rows, truth[i][l] an array of [x1, y1, x2, y2] rows, in the image's pixels.

- AP at IoU 0.5 per class, as keras-retinanet's Evaluate computes it (its matching, its
  _compute_ap), so the figures equal the training log's; mAP averages the classes that have
  instances.
- COCO's mAP@[.5:.95], AP50 and AP75 (and mAP@[.5:.95] per class), computed by pycocotools.
- Precision, recall and F1 at a chosen score threshold, per class and over all boxes: the points
  of the same precision-recall curves; and the threshold that maximises F1 over all boxes.
- A confusion matrix at that threshold: each true class against each predicted class, the
  objects missed and the false alarms on background. Matching: first class by class as for AP
  (a detection takes the unclaimed box of its class it overlaps most, best scores first), then
  each detection left over takes a box of another class left over that it overlaps by the IoU
  (a swapped class). What is left is missed (boxes) or a false alarm (detections; a second
  detection of a box already found counts as one). So the diagonal is the true positives at
  that threshold, and precision = diagonal / detections, recall = diagonal / boxes.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from dataset import boxes as box_geometry

IOU = 0.5


def _overlaps(box, others) -> np.ndarray:
    """IoU of one box with each of others (keras-retinanet's compute_overlap: continuous pixels)."""
    from keras_retinanet.utils.compute_overlap import compute_overlap
    return compute_overlap(np.asarray(box, np.float64)[None, :4], np.asarray(others, np.float64)[:, :4])[0]


def _class_matches(found: np.ndarray, truth: np.ndarray, iou: float):
    """keras-retinanet's rule for one image and one class: detections by score, each takes the box
    it overlaps most if that overlap reaches iou and the box is not taken. (order, hit flags,
    the box index each hit took)."""
    order = np.argsort(-found[:, 4], kind="stable") if len(found) else np.zeros(0, int)
    hits, took, taken = [], [], set()
    for d in order:
        if len(truth) == 0:
            hits.append(0)
            took.append(-1)
            continue
        overlaps = _overlaps(found[d], truth)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou and best not in taken:
            taken.add(best)
            hits.append(1)
            took.append(best)
        else:
            hits.append(0)
            took.append(-1)
    return order, hits, took


def scored_hits(detections, truth, label: int, iou: float = IOU):
    """(scores, hit flags, instances) of one class over every image: the data of its PR curve."""
    scores, hits, instances = [], [], 0
    for found, boxes in zip(detections, truth):
        f, t = np.asarray(found[label], float).reshape(-1, 5), np.asarray(boxes[label], float).reshape(-1, 4)
        instances += len(t)
        order, flags, _ = _class_matches(f, t, iou)
        scores += f[order, 4].tolist()
        hits += flags
    return np.asarray(scores, float), np.asarray(hits, float), instances


def pr_curve(scores: np.ndarray, hits: np.ndarray, instances: int):
    """(precision, recall) at each detection, best score first (keras-retinanet's arrays)."""
    order = np.argsort(-scores, kind="stable")
    hit = hits[order]
    tp, fp = np.cumsum(hit), np.cumsum(1 - hit)
    recall = tp / max(instances, 1)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return precision, recall


def average_precision(recall, precision) -> float:
    """keras-retinanet's _compute_ap (py-faster-rcnn's all-point interpolation)."""
    from keras_retinanet.utils.eval import _compute_ap
    return float(_compute_ap(recall, precision))


def at_threshold(scores: np.ndarray, hits: np.ndarray, instances: int, threshold: float) -> dict:
    """Precision, recall and F1 counting the detections scoring at least `threshold`."""
    kept = scores >= threshold
    tp, fp = int(hits[kept].sum()), int((1 - hits[kept]).sum())
    return _prf(tp, fp, instances, threshold)


def _prf(tp: int, fp: int, instances: int, threshold: float) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / instances if instances else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"score": float(threshold), "precision": precision, "recall": recall, "f1": f1,
            "tp": tp, "fp": fp, "fn": instances - tp}


def best_f1(scores: np.ndarray, hits: np.ndarray, instances: int) -> dict | None:
    """The score threshold that maximises F1 (the highest such threshold), with its figures."""
    if not len(scores) or not instances:
        return None
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hits[order]
    tp, fp = np.cumsum(h), np.cumsum(1 - h)
    last = np.r_[s[1:] != s[:-1], True]      # the end of each run of equal scores
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / instances
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1))                 # the first maximum: the highest threshold
    return _prf(int(tp[last][best]), int(fp[last][best]), instances, float(s[last][best]))


def coco(detections, truth, class_names) -> dict:
    """COCO's mAP@[.5:.95], AP50, AP75 and mAP@[.5:.95] per class, by pycocotools (its own
    matching and 101-point interpolation; boxes as [x, y, width, height]). None where no class
    has a box."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    names = list(class_names)
    images, annotations, results = [], [], []
    for i, (found, boxes) in enumerate(zip(detections, truth), 1):
        images.append({"id": i})
        for label in range(len(names)):
            for x1, y1, x2, y2 in np.asarray(boxes[label], float).reshape(-1, 4):
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                    "iscrowd": 0})
            for x1, y1, x2, y2, score in np.asarray(found[label], float).reshape(-1, 5):
                results.append({"image_id": i, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "score": float(score)})
    empty = {"mAP": None, "AP50": None, "AP75": None, "classes": {n: None for n in names}}
    if not annotations:
        return empty
    if not results:  # pycocotools cannot load no results; no detection scores 0 everywhere
        present = {names[a["category_id"] - 1] for a in annotations}
        return {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0, "classes": {n: 0.0 if n in present else None for n in names}}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations,
                          "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [None if v < 0 else float(v) for v in evaluation.stats[:3]]
    precision = evaluation.eval["precision"]  # [IoU, recall, class, area, max detections]
    per_class = {}
    for k, name in enumerate(names):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[name] = float(values.mean()) if values.size else None
    return {"mAP": stats[0], "AP50": stats[1], "AP75": stats[2], "classes": per_class}


def errors(detections, truth, class_names, threshold: float, iou: float = IOU) -> tuple[dict, list[dict]]:
    """The confusion matrix at `threshold` and each image's errors.

    Returns ({"classes", "matrix" (true x predicted), "missed", "false_alarms"}, per image
    {"found": [(box, class)], "missed": [(box, class)], "swapped": [(box, true class, detected box,
    detected class, score)], "false_alarms": [(box, class, score)]})."""
    names = list(class_names)
    k = len(names)
    matrix = np.zeros((k, k), int)
    missed, false_alarms = np.zeros(k, int), np.zeros(k, int)
    per_image = []
    for found, boxes in zip(detections, truth):
        record = {"found": [], "missed": [], "swapped": [], "false_alarms": []}
        left_dets, left_truth = [], []
        for label in range(k):
            f = np.asarray(found[label], float).reshape(-1, 5)
            f = f[f[:, 4] >= threshold]
            t = np.asarray(boxes[label], float).reshape(-1, 4)
            order, flags, took = _class_matches(f, t, iou)
            claimed = {b for b in took if b >= 0}
            for d, flag, b in zip(order, flags, took):
                if flag:
                    matrix[label, label] += 1
                    record["found"].append((t[b].tolist(), names[label]))
                else:
                    left_dets.append((f[d, :4], label, float(f[d, 4])))
            left_truth += [(t[b], label) for b in range(len(t)) if b not in claimed]
        # a detection left over may have found a box of another class: a swapped class
        left_dets.sort(key=lambda d: -d[2])
        pairs = box_geometry.match([d[0] for d in left_dets], [t[0] for t in left_truth], iou)
        swapped_dets, swapped_truth = set(), set()
        for di, ti, _ in sorted(pairs, key=lambda p: (-left_dets[p[0]][2], p[0])):
            (dbox, dlabel, score), (tbox, tlabel) = left_dets[di], left_truth[ti]
            if dlabel == tlabel:
                continue  # a second detection of a box already found: a false alarm
            matrix[tlabel, dlabel] += 1
            swapped_dets.add(di)
            swapped_truth.add(ti)
            record["swapped"].append((tbox.tolist(), names[tlabel], dbox.tolist(), names[dlabel], score))
        for ti, (tbox, tlabel) in enumerate(left_truth):
            if ti not in swapped_truth:
                missed[tlabel] += 1
                record["missed"].append((tbox.tolist(), names[tlabel]))
        for di, (dbox, dlabel, score) in enumerate(left_dets):
            if di not in swapped_dets:
                false_alarms[dlabel] += 1
                record["false_alarms"].append((dbox.tolist(), names[dlabel], score))
        per_image.append(record)
    return ({"classes": names, "matrix": matrix.tolist(), "missed": missed.tolist(),
             "false_alarms": false_alarms.tolist(), "score": float(threshold), "iou": iou}, per_image)


def average_precisions(detections, truth, class_names, iou: float = IOU, at: float | None = None):
    """({name: {"ap", "instances", "detections", "precision", "recall"[, "at"]}}, mAP, pooled
    (scores, hits, instances)): AP at `iou` per class as keras-retinanet's Evaluate computes it,
    and mAP over the classes that have instances (None if none has). With `at`, each class's
    precision, recall and F1 at that score threshold too."""
    classes, pooled_scores, pooled_hits, pooled_instances = {}, [np.zeros(0)], [np.zeros(0)], 0
    for label, name in enumerate(class_names):
        scores, hits, instances = scored_hits(detections, truth, label, iou)
        precision, recall = pr_curve(scores, hits, instances)
        classes[name] = {"ap": average_precision(recall, precision) if instances else 0.0,
                         "instances": int(instances), "detections": int(len(scores)),
                         "precision": precision.tolist() if instances else [],
                         "recall": recall.tolist() if instances else []}
        if at is not None:
            classes[name]["at"] = at_threshold(scores, hits, instances, at)
        pooled_scores.append(scores)
        pooled_hits.append(hits)
        pooled_instances += instances
    present = [c["ap"] for c in classes.values() if c["instances"] > 0]
    pooled = (np.concatenate(pooled_scores), np.concatenate(pooled_hits), pooled_instances)
    return classes, (float(np.mean(present)) if present else None), pooled


def figures(detections, truth, class_names, iou: float = IOU, at: float = 0.5) -> dict:
    """Every figure `make evaluate` reports (see the module's docstring), and "images": each
    image's errors at `at`, for the error page."""
    names = list(class_names)
    classes, m_ap, (scores, hits, instances) = average_precisions(detections, truth, names, iou, at)
    confusion, per_image = errors(detections, truth, names, at, iou)
    return {"iou": iou, "mAP": m_ap, "classes": classes, "coco": coco(detections, truth, names),
            "at": at_threshold(scores, hits, instances, at), "best_f1": best_f1(scores, hits, instances),
            "confusion": confusion, "images": per_image}
