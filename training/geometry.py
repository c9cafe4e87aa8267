"""keras-retinanet's image and anchor geometry, the one place maskset states it.

Images are resized so the short side is IMAGE_MIN_SIDE and the long side at most IMAGE_MAX_SIDE
(its compute_resize_scale); anchors come in these sizes, scales and ratios
(AnchorParameters.default). Training's defaults, the report's tiny-box check and export's
RESIZE= all read them from here. Pure numpy: no TensorFlow.
"""
from __future__ import annotations

import numpy as np

IMAGE_MIN_SIDE = 800
IMAGE_MAX_SIDE = 1333
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ANCHOR_SCALES = (2 ** 0, 2 ** (1 / 3), 2 ** (2 / 3))
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
POSITIVE_IOU = 0.5  # keras-retinanet's positive_overlap: a box with no anchor above it is never learned


def anchor_shapes() -> np.ndarray:
    """(width, height) of every anchor shape, as keras-retinanet's generate_anchors makes them."""
    shapes = []
    for size in ANCHOR_SIZES:
        for scale in ANCHOR_SCALES:
            area = (size * scale) ** 2
            for ratio in ANCHOR_RATIOS:
                width = np.sqrt(area / ratio)
                shapes.append((width, width * ratio))
    return np.array(shapes)


def resize_scale(width, height, min_side=IMAGE_MIN_SIDE, max_side=IMAGE_MAX_SIDE) -> np.ndarray:
    """keras-retinanet's compute_resize_scale, vectorised."""
    width, height = np.asarray(width, float), np.asarray(height, float)
    scale = min_side / np.minimum(width, height)
    return np.where(np.maximum(width, height) * scale > max_side, max_side / np.maximum(width, height), scale)


def best_anchor_iou(box_w: np.ndarray, box_h: np.ndarray) -> np.ndarray:
    """The best IoU any anchor shape reaches with each box when centred on it (the best case:
    on the real stride grid it is lower). Below POSITIVE_IOU the box gets no positive anchor."""
    anchors = anchor_shapes()
    w, h = box_w[:, None], box_h[:, None]
    inter = np.minimum(w, anchors[:, 0]) * np.minimum(h, anchors[:, 1])
    union = w * h + anchors[:, 0] * anchors[:, 1] - inter
    if len(box_w) == 0:
        return np.zeros(0)
    return (inter / np.maximum(union, 1e-9)).max(axis=1)
