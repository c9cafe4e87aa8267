"""The two-stage detector against RetinaNet on the real seed data, and what leakage does to the
classifier's accuracy (issue 17).

seed-voc is imported into a scratch dataset, exported and split by `make split` (duplicate-aware,
train/val/test). Then:

1. Leakage. The mask/no-mask classifier of `make train-classifier` is trained and scored twice on
   seed-voc's face crops, with the same settings and seed:
     - random:  the crops shuffled into train/val/test with the same shares (what one original
                project effectively did: its crops were split one by one, so crops of one picture,
                and of its many copies, land on both sides);
     - maskset: the crops of each part of maskset's split (no picture or duplicate group on two sides),
                trained by `make train-classifier` itself.
   Each is scored on its own test crops (best epoch chosen on its own val crops). It prints both
   accuracies and the difference in points, how many of the random test's crops have their picture
   (or a duplicate) among the random train crops, and, for the 99.74% claim, the maskset-trained
   classifier scored on augmented copies of its own training crops (what that project's
   validation set held).
2. The detectors. `make evaluate MODEL=two-stage` (MTCNN + that classifier) and a RetinaNet run
   (`make train` + `make evaluate`, short CPU settings below, or --retinanet-run) scored on the same
   test part: the figures side by side, with settings and times.

There is no speed target: it reports. Timings depend on the machine's load, printed with them.

    .venv/bin/python bench/bench_twostage.py [--epochs 30] [--size 64] [--seed 0]
        [--retinanet-run runs/<id>] [--skip-retinanet] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SEED_VOC = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared")) / "data" / "seed-voc"
MASKSET = str(Path(sys.executable).parent / "maskset")
RETINANET = dict(BACKBONE="resnet50", WEIGHTS="none", IMAGE_MIN_SIDE=192, IMAGE_MAX_SIDE=288, BATCH=4, STEPS=50,
                 EPOCHS=10, FREEZE_BACKBONE=0, RANDOM_TRANSFORM=1, LR="8e-4", TRAIN_SEED=0)


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def stage(name: str, data: Path, runs: Path, **variables) -> tuple[str, float]:
    """One stage as `make <name>` runs it (maskset --make, variables from the environment)."""
    env = {**os.environ, "MASKSET_PROGRESS": "0", "DATA": str(data), "RUNS": str(runs),
           **{k: str(v) for k, v in variables.items()}}
    started = time.monotonic()
    done = subprocess.run([MASKSET, "--make", name], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"maskset {name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout, time.monotonic() - started


def seed_dataset(work: Path, val: float, test: float, seed: int):
    from dataset.export import export
    from dataset.importer import import_folder
    from dataset.layout import Dataset
    from dataset.split import make_split
    dataset = Dataset.at(work / "seed")
    import_folder(dataset, SEED_VOC, progress=False)  # copies into the scratch folder, never the repository
    export(dataset, progress=False)
    result = make_split(dataset, val=val, test=test, seed=seed, progress=False)
    return dataset, result


def random_crop_split(crops, val: float, test: float, seed: int):
    """The same crops, shuffled one by one into parts of the same shares (dataset.split.random_parts)."""
    from dataset.split import random_parts
    from training.classifier import Crops
    keys, pool = [], []
    for part in ("train", "val", "test"):
        for i, image in enumerate(crops.images[part]):
            keys.append(f"{image}#{part}#{i}")
            pool.append((crops.x[part][i], crops.y[part][i], image))
    parts = random_parts(keys, val, test, seed)
    x, y, images = {}, {}, {}
    for part in ("train", "val", "test"):
        chosen = [pool[k] for k, key in enumerate(keys) if parts[key] == part]
        x[part] = np.stack([c[0] for c in chosen])
        y[part] = np.asarray([c[1] for c in chosen])
        images[part] = [c[2] for c in chosen]
    return Crops(crops.classes, x, y, images, Counter())


def leaked(crops, record: dict) -> int:
    """Test crops whose picture, or a duplicate of it (split.json's groups), has crops in train."""
    group = {}
    for number, members in enumerate(record.get("near_duplicate_groups") or []):
        for name in members:
            group[name] = number
    key = lambda name: group.get(name, name)  # noqa: E731
    trained = {key(name) for name in crops.images["train"]}
    return sum(key(name) in trained for name in crops.images["test"])


def leakage(dataset, run_dir: Path, val: float, test: float) -> dict:
    from training import classifier
    from training.runs import CONFIG
    config = classifier.ClassifierConfig.from_json(run_dir / CONFIG)
    parts = classifier.split_parts(dataset)
    crops = classifier.load_crops(dataset, parts, config.classes, config.margin, config.size, config.min_box,
                                  progress=False)
    record = json.loads((dataset.export / "split.json").read_text())
    shuffled = random_crop_split(crops, val, test, config.seed)
    started = time.monotonic()
    model = classifier.fit(config, shuffled, None, progress=False)
    random_seconds = time.monotonic() - started
    random_score = classifier.accuracy(model, config.backbone, shuffled.x["test"], shuffled.y["test"])
    ours = classifier.load_classifier(run_dir, config)
    maskset_score = classifier.accuracy(ours, config.backbone, crops.x["test"], crops.y["test"])
    copies = classifier.augment(crops.x["train"], np.random.default_rng(config.seed))
    augmented = classifier.accuracy(ours, config.backbone, copies, crops.y["train"])
    return {"random": random_score, "maskset": maskset_score, "augmented_train_copies": augmented,
            "random_test_leaked": leaked(shuffled, record), "random_test_crops": len(shuffled.y["test"]),
            "maskset_test_leaked": leaked(crops, record), "random_seconds": random_seconds,
            "crops": {p: len(crops.y[p]) for p in crops.y}, "random_crops": {p: len(shuffled.y[p]) for p in shuffled.y}}


def figures_row(name: str, evaluation: dict, train_seconds: float | None, settings: str) -> list:
    classes = evaluation.get("classes") or {}
    at, best, coco = evaluation.get("at") or {}, evaluation.get("best_f1") or {}, evaluation.get("coco") or {}
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    per_image = evaluation["seconds"] / max(evaluation["images"], 1)
    return [name, f(evaluation.get("mAP")), *[f(c.get("ap")) for c in classes.values()], f(coco.get("mAP")),
            f"{f(at.get('precision'))} / {f(at.get('recall'))} / {f(at.get('f1'))}",
            f"{f(best.get('f1'))} at {f(best.get('score'))}",
            "n/a" if train_seconds is None else f"{train_seconds / 60:.1f} min", f"{per_image:.2f} s", settings]


def table(header: list, rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val", type=float, default=0.2)
    parser.add_argument("--test", type=float, default=0.2)
    parser.add_argument("--retinanet-run", help="a RetinaNet run trained on this split (skips training one)")
    parser.add_argument("--skip-retinanet", action="store_true")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()
    if not (SEED_VOC / "images").is_dir():
        print(f"skip: {SEED_VOC} missing")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-twostage-") as scratch:
        work = Path(args.work or scratch)
        work.mkdir(parents=True, exist_ok=True)
        runs = work / "runs"
        print(f"load average at the start: {load()} (2 cores)")
        started = time.monotonic()
        dataset, split = seed_dataset(work, args.val, args.test, args.seed)
        counts = {p: split.counts[p]["images"] for p in ("train", "val", "test")}
        print(f"seed-voc: make split VAL={args.val} TEST={args.test} SEED={args.seed}: {counts} images, "
              f"{split.pairs} duplicate pairs kept in one part ({time.monotonic() - started:.1f} s)")

        settings = dict(EPOCHS=args.epochs, SIZE=args.size, TRAIN_SEED=args.seed)
        out, classifier_seconds = stage("train-classifier", dataset.root, runs, **settings)
        run_dir = Path(out.split("train-classifier: ", 1)[1].split(" after ", 1)[0])
        config = json.loads((run_dir / "config.json").read_text())
        what = (f"BACKBONE={config['backbone']} SIZE={config['size']} MARGIN={config['margin']} EPOCHS={config['epochs']} "
                f"BATCH={config['batch']} LR={config['lr']} AUGMENT={int(config['augment'])} TRAIN_SEED={config['seed']} "
                f"WEIGHTS=none")
        print(f"make train-classifier {what}: {classifier_seconds / 60:.1f} min (load {load()})")

        leak = leakage(dataset, run_dir, args.val, args.test)
        r, m = leak["random"]["accuracy"], leak["maskset"]["accuracy"]
        print(f"\n## 1. What leakage does to the classifier's accuracy (same settings, seed {args.seed})\n")
        print(table(["split of the crops", "train / val / test crops", "test accuracy", "test crops whose picture "
                     "or a duplicate is in train"], [
            ["random, crop by crop", " / ".join(str(leak["random_crops"][p]) for p in ("train", "val", "test")),
             f"{100 * r:.2f}%", f"{leak['random_test_leaked']} of {leak['random_test_crops']}"],
            ["maskset's duplicate-aware split", " / ".join(str(leak["crops"][p]) for p in ("train", "val", "test")),
             f"{100 * m:.2f}%", f"{leak['maskset_test_leaked']} of {leak['crops']['test']}"],
        ]))
        print(f"\ndifference: {100 * (r - m):+.2f} points (random minus duplicate-aware)")
        print(f"the duplicate-aware classifier on augmented copies of its own training crops (a validation set "
              f"like the 99.74% project's): {100 * leak['augmented_train_copies']['accuracy']:.2f}%")
        print(f"(random-split training took {leak['random_seconds'] / 60:.1f} min; load {load()})")

        print("\n## 2. The two-stage detector and RetinaNet on the same test part\n")
        out, two_eval_seconds = stage("evaluate", dataset.root, runs, MODEL="two-stage", RUN=run_dir)
        two_stage = json.loads((run_dir / "evaluation.json").read_text())
        rows = [figures_row("two-stage (MTCNN + classifier)", two_stage, classifier_seconds,
                            f"make train-classifier {what}")]
        retinanet_run, retinanet_seconds, retinanet_settings = None, None, ""
        if args.retinanet_run:
            retinanet_run = Path(args.retinanet_run).resolve()
            retinanet_settings = "given run " + retinanet_run.name
        elif not args.skip_retinanet:
            out, retinanet_seconds = stage("train", dataset.root, runs, **RETINANET)
            retinanet_run = Path(out.split("train: ", 1)[1].split(" after ", 1)[0])
            retinanet_settings = "make train " + " ".join(f"{k}={v}" for k, v in RETINANET.items())
            print(f"{retinanet_settings}: {retinanet_seconds / 60:.1f} min (load {load()})")
        if retinanet_run is not None:
            stage("evaluate", dataset.root, runs, RUN=retinanet_run)
            retinanet = json.loads((retinanet_run / "evaluation.json").read_text())
            if retinanet.get("part") != two_stage.get("part") or retinanet["data"]["digest"] != two_stage["data"]["digest"]:
                print("warning: the two evaluations did not score the same images")
            rows.append(figures_row("RetinaNet", retinanet, retinanet_seconds, retinanet_settings))
        names = list((two_stage.get("classes") or {}))
        print(f"test part: {two_stage['images']} images, "
              + ", ".join(f"{n} {c['instances']} boxes" for n, c in two_stage["classes"].items()) + "\n")
        print(table(["detector", "mAP (AP50)", *[f"AP {n}" for n in names], "COCO mAP@[.5:.95]",
                     "P / R / F1 at 0.5", "best F1 at score", "training", "evaluation per image", "settings"], rows))
        faces = two_stage.get("faces") or {}
        print(f"\ntwo-stage: {faces.get('found')} faces found by MTCNN in {two_stage['images']} test images "
              f"({sum(c['instances'] for c in two_stage['classes'].values())} boxes), {faces.get('too_small', 0)} too "
              f"small to classify, {faces.get('clamped', 0)} crops clamped; calibration {two_stage.get('calibration')}")
        print(f"two-stage confusion at 0.5: {two_stage['confusion']['matrix']} missed {two_stage['confusion']['missed']} "
              f"false alarms {two_stage['confusion']['false_alarms']} ({', '.join(two_stage['confusion']['classes'])})")
        if retinanet_run is not None:
            print(f"RetinaNet confusion at 0.5: {retinanet['confusion']['matrix']} missed "
                  f"{retinanet['confusion']['missed']} false alarms {retinanet['confusion']['false_alarms']} "
                  f"({', '.join(retinanet['confusion']['classes'])})")
        print(f"\nbench: {(time.monotonic() - started) / 60:.1f} min in all; load average at the end {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
