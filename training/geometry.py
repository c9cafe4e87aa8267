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


PYRAMID_LEVELS = (3, 4, 5, 6, 7)   # P3..P7: strides 8..128, one anchor size each


def anchors_for(height: int, width: int) -> np.ndarray:
    """Every anchor [x1, y1, x2, y2] of a height x width network input, in the order and float32
    arithmetic of keras-retinanet's Anchors layers (P3 first; per cell, its 9 shapes), for an
    exported graph that stops at the heads. Feature maps are ceil(side / stride), as
    keras-retinanet's guess_shapes (and ResNet's strided convolutions) make them."""
    ratios = np.array(ANCHOR_RATIOS, np.float32)
    scales = np.array(ANCHOR_SCALES, np.float32)
    levels = []
    for level, size in zip(PYRAMID_LEVELS, ANCHOR_SIZES):
        stride = 2 ** level
        # generate_anchors: computed in float64 from the float32 ratios and scales, then float32
        base = np.zeros((len(ratios) * len(scales), 4))
        base[:, 2:] = size * np.tile(scales, (2, len(ratios))).T
        areas = base[:, 2] * base[:, 3]
        base[:, 2] = np.sqrt(areas / np.repeat(ratios, len(scales)))
        base[:, 3] = base[:, 2] * np.repeat(ratios, len(scales))
        base[:, 0::2] -= np.tile(base[:, 2] * 0.5, (2, 1)).T
        base[:, 1::2] -= np.tile(base[:, 3] * 0.5, (2, 1)).T
        base = base.astype(np.float32)
        rows, cols = -(-int(height) // stride), -(-int(width) // stride)
        # backend.shift, in float32
        shift_x = (np.arange(cols, dtype=np.float32) + np.float32(0.5)) * np.float32(stride)
        shift_y = (np.arange(rows, dtype=np.float32) + np.float32(0.5)) * np.float32(stride)
        shift_x, shift_y = np.meshgrid(shift_x, shift_y)
        shifts = np.stack([shift_x.ravel(), shift_y.ravel(), shift_x.ravel(), shift_y.ravel()], axis=1)
        levels.append((base[None, :, :] + shifts[:, None, :]).reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)


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
