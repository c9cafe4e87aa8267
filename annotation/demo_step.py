"""`make demo` step: draft boxes for the demo's unannotated (scraped) images with the face detector.

No run is trained yet at this point of the demo, so this is the packaged MTCNN, calibrated on the
sample's own annotations. The demo's rendered faces are drawings, which MTCNN (trained on photos)
finds only now and then; on real photos it drafts most faces (docs/prelabel.md has the numbers).
"""
from __future__ import annotations

from .prelabel import prelabel


def run(ctx) -> str:
    result = prelabel(ctx.data, run="face", runs_dir=ctx.runs, progress=not ctx.quick)
    ctx.notes["prelabel"] = {"drafted": result.drafted, "boxes": result.boxes, "empty": result.empty}
    print(result.summary())
    boxes = sum(result.boxes.values())
    return (f"drafted {len(result.drafted)} images, {boxes} boxes "
            f"({len(result.empty)} images with no face found, {result.seconds_per_image:.2f} s/image)")
