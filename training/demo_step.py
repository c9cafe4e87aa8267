"""Demo step: brief training on the demo dataset's export, then evaluate and detect on one val image."""
from __future__ import annotations

import csv

from .config import TrainConfig
from .detect import detect
from .evaluate import evaluate_run
from .train import config_from_dataset, train

QUICK = dict(epochs=2, steps=6, batch=2, image_min_side=128, image_max_side=160)
FULL = dict(epochs=6, steps=12, batch=4, image_min_side=240, image_max_side=320)


def run(ctx) -> str:
    sizes = QUICK if ctx.quick else FULL
    # from scratch (no download in the demo), unfrozen: a random backbone is worth training
    config: TrainConfig = config_from_dataset(ctx.data.root, weights="none", lr=1e-3, seed=0,
                                              freeze_backbone=False, random_transform=False, **sizes)
    run_dir = train(config, ctx.runs)
    ctx.notes["train_run"] = run_dir
    summary = evaluate_run(run_dir, ctx.data.root)
    with open(ctx.data.export / "val.csv", newline="") as handle:
        first_val = next(csv.reader(handle))[0]
    out = detect(run_dir, image=str(ctx.data.export / first_val), score=0.3)
    ctx.notes["detections"] = out
    aps = ", ".join(f"{name} {c['ap']:.3f}" for name, c in summary["classes"].items())
    m = summary["mAP"]
    return (f"trained {sizes['epochs']} epochs, val mAP {m:.3f} ({aps}), "
            f"detections in {out.relative_to(ctx.work) if out.is_relative_to(ctx.work) else out}")
