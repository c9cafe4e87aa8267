"""keras-retinanet's inference tail in NumPy, for exported graphs that stop before it.

    regress_boxes(anchors, regression, height, width)   RegressBoxes (std 0.2) + ClipBoxes
    filter_detections(boxes, classification, ...)        FilterDetections for one image
    filter_batch(boxes, classification, ...)             ... over a batch

`filter_detections` reproduces keras_retinanet/layers/filter_detections.py with the options
convert_model uses (class_specific_filter=True, nms=True; score_threshold 0.05, nms_threshold 0.5,
max_detections 300), and tests/test_export_model.py checks it is array-equal to the TF layer:

  per class c:  candidates = scores[:, c] > score_threshold (in anchor order)
                keep = greedy NMS (tf.image.non_max_suppression semantics), at most max_detections
  all classes:  concatenate (class 0's kept, class 1's kept, ...), top_k by score (ties: the
                earlier one first, as tf.nn.top_k), pad to max_detections with -1.

tf.image.non_max_suppression (NonMaxSuppressionV3, CPU kernel):
  * candidates visited by score, highest first; equal scores: lower index first
  * IoU on float32 boxes, corners normalised with min/max (an inverted box is valid); a box of
    zero or negative area has IoU 0 with everything
  * a candidate is dropped when its IoU with any kept box is > iou_threshold

Why it exists: TFLite lowers the NMS to NON_MAX_SUPPRESSION_V4, whose indices come back padded
to 300, so a converted FilterDetections returns 300 "detections" per image (docs/deploy.md), and
ncnn's converter cannot take ClipBoxes' unstack. Those formats export the graph up to the raw
boxes and scores, and this module finishes the job.
"""
from __future__ import annotations

import numpy as np

DEFAULTS = dict(score_threshold=0.05, nms_threshold=0.5, max_detections=300)
REGRESSION_STD = np.float32(0.2)   # keras-retinanet's RegressBoxes default (mean 0)


def regress_boxes(anchors: np.ndarray, regression: np.ndarray, height: int, width: int) -> np.ndarray:
    """RegressBoxes (bbox_transform_inv, mean 0, std 0.2) then ClipBoxes to [0, W-1] x [0, H-1],
    in float32 as the TF layers compute them. anchors, regression: [N, 4]."""
    a = anchors.astype(np.float32, copy=False)
    r = regression.astype(np.float32, copy=False)
    w = a[:, 2] - a[:, 0]
    h = a[:, 3] - a[:, 1]
    x1 = a[:, 0] + (r[:, 0] * REGRESSION_STD + np.float32(0)) * w
    y1 = a[:, 1] + (r[:, 1] * REGRESSION_STD + np.float32(0)) * h
    x2 = a[:, 2] + (r[:, 2] * REGRESSION_STD + np.float32(0)) * w
    y2 = a[:, 3] + (r[:, 3] * REGRESSION_STD + np.float32(0)) * h
    right, bottom = np.float32(width) - np.float32(1), np.float32(height) - np.float32(1)
    zero = np.float32(0)
    return np.stack([np.clip(x1, zero, right), np.clip(y1, zero, bottom),
                     np.clip(x2, zero, right), np.clip(y2, zero, bottom)], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, max_output: int, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, in the order TF returns them (by score, ties by index).

    IoU as TF's kernel computes it, in float32: corners normalised with min/max, a box of zero or
    negative area overlapping nothing. The candidates are sorted once; each kept box is compared
    with the contiguous tail after it."""
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float32, copy=False)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    area = (x2 - x1) * (y2 - y1)
    threshold = np.float32(iou_threshold)
    zero = np.float32(0)
    alive = np.ones(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= max_output:
            break
        if not area[i] > 0:
            continue  # IoU 0 with everything: suppresses nothing
        iw = np.maximum(np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:]), zero)
        ih = np.maximum(np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:]), zero)
        inter = iw * ih
        other = area[i + 1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(other > 0, inter / (area[i] + other - inter), zero)
        alive[i + 1:] &= ~(iou > threshold)
    return np.asarray(keep, dtype=np.int64)


def filter_detections(boxes: np.ndarray, classification: np.ndarray, score_threshold: float = 0.05,
                      nms_threshold: float = 0.5, max_detections: int = 300):
    """(boxes [max_detections, 4], scores [max_detections], labels [max_detections]) for one image,
    padded with -1, as FilterDetections (class_specific_filter=True, nms=True) outputs them."""
    all_anchor, all_label = [], []
    threshold = np.float32(score_threshold)
    for c in range(classification.shape[1]):
        scores = classification[:, c]
        candidates = np.flatnonzero(scores > threshold)
        if len(candidates):
            kept = candidates[nms(boxes[candidates], scores[candidates], max_detections, nms_threshold)]
        else:
            kept = candidates
        all_anchor.append(kept)
        all_label.append(np.full(len(kept), c, dtype=np.int64))
    anchors = np.concatenate(all_anchor) if all_anchor else np.zeros(0, np.int64)
    labels = np.concatenate(all_label) if all_label else np.zeros(0, np.int64)
    scores = classification[anchors, labels]
    top = np.argsort(-scores, kind="stable")[:max_detections]
    count = len(top)
    out_boxes = np.full((max_detections, 4), -1, dtype=np.float32)
    out_scores = np.full((max_detections,), -1, dtype=np.float32)
    out_labels = np.full((max_detections,), -1, dtype=np.int32)
    out_boxes[:count] = boxes[anchors[top]]
    out_scores[:count] = scores[top]
    out_labels[:count] = labels[top]
    return out_boxes, out_scores, out_labels


def filter_batch(boxes: np.ndarray, classification: np.ndarray, **params):
    """filter_detections over a batch: (boxes [B, N, 4], scores [B, N], labels [B, N])."""
    results = [filter_detections(b, c, **params) for b, c in zip(boxes, classification)]
    return tuple(np.stack(parts) for parts in zip(*results))
