"""Box geometry shared by the stages: IoU and greedy one-to-one matching."""
from __future__ import annotations

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
    [(index in predicted, index in truth, IoU)] for the pairs at or above threshold."""
    candidates = sorted(
        ((iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)),
        reverse=True)
    used_p, used_t, pairs = set(), set(), []
    for overlap, i, j in candidates:
        if overlap < threshold:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        pairs.append((i, j, overlap))
    return pairs
