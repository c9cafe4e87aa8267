"""Box geometry shared by the stages: IoU, matching, clamping, and the coordinate conventions.

The one owner of box arithmetic. Conventions (docs/formats.md has them with examples):
- VOC (labelImg): 1-based inclusive integer pixels: xmin..xmax names the first and the last pixel
  column of the box, so a box over a whole W x H image is (1, 1, W, H).
- keras-retinanet CSV: 0-based integer pixels, VOC minus 1 (as its own VOC reader does).
- COCO: [x, y, width, height] in 0-based float pixels of the image's continuous extent: the
  VOC box (xmin, ymin, xmax, ymax) covers x = xmin - 1 .. xmax, so it is
  [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]; the whole image is [0, 0, W, H].
- YOLO (ultralytics): class, centre x, centre y, width, height of the same continuous extent,
  each divided by the image's width or height: the whole image is 0.5 0.5 1 1.
- A model's detections: 0-based float pixels, x1 < x2, inside the image.
Reading a float format into VOC rounds each edge to the nearest pixel boundary (halves up), so
VOC -> COCO -> VOC is exact and VOC -> YOLO -> VOC is exact up to the printed decimals.
"""
from __future__ import annotations

import math
from typing import Sequence

Box = Sequence[float]  # x1, y1, x2, y2


def iou(a: Box, b: Box) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(predicted: Sequence[Box], truth: Sequence[Box], threshold: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching, best IoU first (as detection benchmarks count):
    [(index in predicted, index in truth, IoU)] for the pairs at or above threshold.

    IoUs are computed with numpy a block of rows at a time, keeping only the pairs at or above
    the threshold, so two copies with thousands of boxes each stay fast and small."""
    import numpy as np
    if len(predicted) == 0 or len(truth) == 0:
        return []
    p = np.asarray(predicted, dtype=np.float64).reshape(-1, 4)
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    found_i, found_j, found_iou = [], [], []
    block = max(1, 4_000_000 // len(t))
    for start in range(0, len(p), block):
        q = p[start:start + block]
        ix = np.minimum(q[:, None, 2], t[None, :, 2]) - np.maximum(q[:, None, 0], t[None, :, 0])
        iy = np.minimum(q[:, None, 3], t[None, :, 3]) - np.maximum(q[:, None, 1], t[None, :, 1])
        inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
        union = ((q[:, 2] - q[:, 0]) * (q[:, 3] - q[:, 1]))[:, None] + area_t[None, :] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = np.where(union > 0, inter / union, 0.0)
        i, j = np.nonzero((overlap >= threshold) & (inter > 0))
        found_i.append(i + start)
        found_j.append(j)
        found_iou.append(overlap[i, j])
    i, j, overlap = (np.concatenate(x) for x in (found_i, found_j, found_iou))
    order = np.lexsort((-j, -i, -overlap))  # best IoU first; ties as sorted(reverse=True) broke them
    used_p, used_t, pairs = set(), set(), []
    for k in order.tolist():
        a, b = int(i[k]), int(j[k])
        if a in used_p or b in used_t:
            continue
        used_p.add(a)
        used_t.add(b)
        pairs.append((a, b, float(overlap[k])))
    return pairs


def clamp(box: Box, low: tuple[float, float], high: tuple[float, float]) -> tuple[float, ...]:
    """Each corner moved inside [low, high] (x, y): the one clamp every stage uses."""
    x1, y1, x2, y2 = box
    return (min(max(x1, low[0]), high[0]), min(max(y1, low[1]), high[1]),
            min(max(x2, low[0]), high[0]), min(max(y2, low[1]), high[1]))


def is_finite(box: Box) -> bool:
    return all(math.isfinite(v) for v in box)


def voc_clamped(box: Box, width: int, height: int) -> tuple[float, ...]:
    """A VOC box inside the image: corners in 0..width, 0..height (validate's FIX=1)."""
    return clamp(box, (0, 0), (width, height))


def voc_from_zero_based(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """A 0-based box (a detector's) as labelImg's 1-based integer VOC numbers, inside the image."""
    corners = tuple(int(round(v + 1)) for v in box)
    return tuple(int(v) for v in clamp(corners, (1, 1), (width, height)))


def csv_from_voc(box: Box, width: int, height: int, scale: float = 1.0) -> tuple[int, int, int, int]:
    """VOC 1-based inclusive pixels -> keras-retinanet 0-based integers, inside the image (of a
    copy resized by `scale`). A box at the very edge that another tool wrote 0-based (xmin 0,
    xmax 1) would collapse to x1 == x2, which keras-retinanet rejects: it stays a pixel wide."""
    width, height = round(width * scale), round(height * scale)
    corners = tuple(int(round((int(round(v)) - 1) * scale)) for v in box)
    x1, y1, x2, y2 = (int(v) for v in clamp(corners, (0, 0), (width - 1, height - 1)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def detection_clipped(box: Box, width: int, height: int) -> list[float] | None:
    """A detector's [x1, y1, x2, y2] clipped to the image and rounded to 0.1 px, or None when
    nothing is left: RetinaNet's regression does not keep x1 < x2, so a weakly trained model can
    predict an inverted box, and a box wholly outside the image clips to nothing."""
    x1, y1, x2, y2 = (round(v, 1) for v in clamp([float(v) for v in box], (0.0, 0.0),
                                                  (float(width), float(height))))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2, y2]


# -- the exchange formats <-> VOC (docs/formats.md) -------------------------------------------------
def _pixel(value: float) -> int:
    """The nearest pixel boundary, halves up (Python's round() would send 2.5 to 2)."""
    return int(math.floor(value + 0.5))


def _edges_to_voc(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Continuous 0-based edges -> VOC 1-based inclusive pixels inside the image, at least two
    pixels wide and high (validate and keras-retinanet refuse xmax <= xmin)."""
    xmin, ymin = _pixel(x0) + 1, _pixel(y0) + 1
    xmax, ymax = _pixel(x1), _pixel(y1)
    xmin, ymin, xmax, ymax = (int(v) for v in clamp((xmin, ymin, xmax, ymax), (1, 1), (width, height)))
    if xmax <= xmin:
        xmin, xmax = (xmin, xmin + 1) if xmin < width else (xmin - 1, xmin)
    if ymax <= ymin:
        ymin, ymax = (ymin, ymin + 1) if ymin < height else (ymin - 1, ymin)
    return xmin, ymin, xmax, ymax


def _voc_edges(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """A VOC box's continuous 0-based extent, inside the image (a box another tool wrote 0-based,
    xmin 0, starts at the image's edge)."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    return clamp((xmin - 1, ymin - 1, xmax, ymax), (0.0, 0.0), (float(width), float(height)))


def coco_from_voc(box: Box, width: int, height: int) -> list[float]:
    """VOC 1-based inclusive pixels -> COCO [x, y, width, height], 0-based, inside the image."""
    x0, y0, x1, y1 = _voc_edges(box, width, height)
    return [x0, y0, x1 - x0, y1 - y0]


def voc_from_coco(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """COCO [x, y, width, height] (floats) -> VOC 1-based inclusive integer pixels."""
    x, y, w, h = (float(v) for v in bbox)
    return _edges_to_voc(x, y, x + w, y + h, width, height)


def yolo_from_voc(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """VOC 1-based inclusive pixels -> YOLO centre x, centre y, width, height, normalised."""
    x0, y0, x1, y1 = _voc_edges(box, width, height)
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def voc_from_yolo(cx: float, cy: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int]:
    """YOLO normalised centre and size -> VOC 1-based inclusive integer pixels of a width x height
    image (the real image's size: YOLO files do not carry it)."""
    return _edges_to_voc((cx - w / 2) * width, (cy - h / 2) * height,
                         (cx + w / 2) * width, (cy + h / 2) * height, width, height)


def voc_from_csv(box: Box) -> tuple[int, int, int, int]:
    """keras-retinanet CSV 0-based integers -> VOC (plus 1: the inverse of csv_from_voc)."""
    return tuple(int(v) + 1 for v in box)


def edges_outside(x0: float, y0: float, x1: float, y1: float, width: int, height: int,
                  tolerance: float = 1.0) -> bool:
    """Whether continuous 0-based edges leave a width x height image by more than `tolerance`
    pixels (less is rounding in another tool, clamped on the way in)."""
    return x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance
