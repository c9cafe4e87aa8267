"""Training speed and memory: `make train` against a bare keras-retinanet loop, image decoding,
pre-resizing, and peak RSS at the default CPU settings. Every number is a ratio against a
baseline measured in the same run (the machine is shared; absolute times drift).

1. steps/s through `make train` vs a bare keras-retinanet loop (same generator settings, model,
   optimizer, batch, steps): ratio must be >= 0.95. Both time only the training steps of
   epochs 2.. (epoch 1 includes graph tracing; evaluation and snapshots are excluded).
2. decode + resize (keras-retinanet's read_image_bgr + resize_image to 800/1333) of large
   scraped-size JPEGs vs the same images pre-resized to a 1333 px long side.
3. `make train` at the default CPU settings (ResNet50, batch 1, 800/1333, frozen backbone,
   random transform) on the large images vs pre-resized copies: steps/s ratio, and peak RSS.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python")
SPEED = dict(BACKBONE="resnet50", WEIGHTS="none", BATCH=1, IMAGE_MIN_SIDE=240, IMAGE_MAX_SIDE=320,
             FREEZE_BACKBONE=1, RANDOM_TRANSFORM=1, LR="1e-5")


def sample_dataset(root: Path, count: int, size, seed: int = 0):
    from dataset.export import export
    from dataset.importer import import_folder
    from dataset.layout import Dataset
    from dataset.fixtures.scenes import make_sample
    from dataset.split import make_split
    make_sample(root / "src", count=count, size=size, seed=seed, duplicates=0)
    dataset = Dataset.at(root / "data")
    import_folder(dataset, root / "src")
    export(dataset)
    make_split(dataset, val=0.2, seed=0, progress=False)
    return dataset


def make_train(data: Path, runs: Path, **settings) -> tuple[Path, float]:
    """Runs `make train`; returns the run folder and the peak RSS (MiB) of its process tree."""
    import psutil
    args = ["make", "--no-print-directory", "-C", str(REPO), "train", f"DATA={data}", f"RUNS={runs}",
            *[f"{k}={v}" for k, v in settings.items()]]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
        root, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.2)
        if process.returncode:
            log.seek(0)
            sys.exit(f"make train failed:\n{log.read()[-4000:]}")
    run_dir = max((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return run_dir, peak / 2**20


def steps_per_second(run_dir: Path, steps: int) -> float:
    with open(run_dir / "log.csv", newline="") as handle:
        seconds = [float(r["seconds"]) for r in csv.DictReader(handle)][1:]  # epoch 1: tracing
    return steps / statistics.median(seconds)


def bare_loop(train_csv: str, classes_csv: str, steps: int, epochs: int) -> float:
    """keras-retinanet used directly, as its train.py does (without our run folder): steps/s."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow import keras
    from keras_retinanet import losses, models
    from keras_retinanet.preprocessing.csv_generator import CSVGenerator
    from keras_retinanet.utils.image import random_visual_effect_generator
    from keras_retinanet.utils.model import freeze
    from keras_retinanet.utils.transform import random_transform_generator
    backbone = models.backbone(SPEED["BACKBONE"])
    generator = CSVGenerator(
        train_csv, classes_csv, batch_size=SPEED["BATCH"], image_min_side=SPEED["IMAGE_MIN_SIDE"],
        image_max_side=SPEED["IMAGE_MAX_SIDE"], preprocess_image=backbone.preprocess_image,
        transform_generator=random_transform_generator(
            min_rotation=-0.1, max_rotation=0.1, min_translation=(-0.1, -0.1), max_translation=(0.1, 0.1),
            min_shear=-0.1, max_shear=0.1, min_scaling=(0.9, 0.9), max_scaling=(1.1, 1.1),
            flip_x_chance=0.5, flip_y_chance=0.5),
        visual_effect_generator=random_visual_effect_generator(
            contrast_range=(0.9, 1.1), brightness_range=(-.1, .1), hue_range=(-0.05, 0.05),
            saturation_range=(0.95, 1.05)))
    assert len(generator) >= steps, "the bare loop cannot wrap around: make the dataset bigger"
    model = backbone.retinanet(generator.num_classes(), modifier=freeze)
    model.compile(loss={"regression": losses.smooth_l1(), "classification": losses.focal()},
                  optimizer=keras.optimizers.Adam(learning_rate=float(SPEED["LR"]), clipnorm=0.001))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    model.fit(generator, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[Timer()])
    return steps / statistics.median(times[1:])


def large_images(root: Path, count: int, size=(4000, 3000), seed: int = 1) -> Path:
    """A labelled folder of scraped-size photos (12 MP JPEGs) rendered by dataset.fixtures.scenes."""
    from dataset import atomic, voc
    from dataset.fixtures.scenes import annotation_for, jpeg_bytes, render_scene
    rng = random.Random(seed)
    folder = root / "large-src"
    folder.mkdir(parents=True)
    for i in range(count):
        image, faces = render_scene(rng, size)
        name = f"large_{i:03d}.jpg"
        atomic.write_bytes(folder / name, jpeg_bytes(image, 90))
        voc.write(annotation_for(name, image, faces, str(folder)), folder / f"large_{i:03d}.xml")
    return folder


def pre_resized_copy(data: Path, root: Path, max_side: int = 1333) -> Path:
    """What a pre-resizing export would write: images shrunk to max_side, boxes scaled."""
    from PIL import Image
    target = root / "resized"
    (target / "images").mkdir(parents=True)
    (target / "export").mkdir()
    scales = {}
    for image in (data / "images").iterdir():
        with Image.open(image) as im:
            scale = min(1.0, max_side / max(im.size))
            im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS).save(
                target / "images" / image.name, quality=90)
        scales[image.name] = scale
    for name in ("train.csv", "val.csv"):
        rows = []
        with open(data / "export" / name, newline="") as handle:
            for row in csv.reader(handle):
                s = scales[Path(row[0]).name]
                rows.append([row[0], *[str(int(int(v) * s)) if v else "" for v in row[1:5]], row[5]])
        with open(target / "export" / name, "w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(rows)
    (target / "export" / "classes.csv").write_text((data / "export" / "classes.csv").read_text())
    return target


def decode_resize_ms(paths: list[Path], repeat: int = 3) -> float:
    from keras_retinanet.utils.image import read_image_bgr, resize_image
    started = time.perf_counter()
    for _ in range(repeat):
        for path in paths:
            resize_image(read_image_bgr(str(path)), min_side=800, max_side=1333)
    return 1000 * (time.perf_counter() - started) / (repeat * len(paths))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternating make/bare rounds (noise)")
    p.add_argument("--large", type=int, default=10, help="large images for parts 2 and 3")
    p.add_argument("--default-steps", type=int, default=6)
    p.add_argument("--bare", nargs=2, help=argparse.SUPPRESS)  # internal: run the bare loop
    args = p.parse_args()
    if args.bare:
        print(json.dumps({"steps_per_s": bare_loop(*args.bare, args.steps, args.epochs)}))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        # -- 1. make train vs bare loop ---------------------------------------------------------
        dataset = sample_dataset(root / "speed", count=2 * args.steps + 12, size=(320, 240))
        train_csv, classes_csv = str(dataset.export / "train.csv"), str(dataset.export / "classes.csv")
        ours, bare = [], []
        def run_bare():
            out = subprocess.run([PY, __file__, "--bare", train_csv, classes_csv, "--steps", str(args.steps),
                                  "--epochs", str(args.epochs)], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            bare.append(json.loads(out.stdout.strip().splitlines()[-1])["steps_per_s"])

        def run_ours():
            run_dir, _ = make_train(dataset.root, root / "runs", EPOCHS=args.epochs, STEPS=args.steps, **SPEED)
            ours.append(steps_per_second(run_dir, args.steps))

        for round_ in range(args.rounds):  # alternate who goes first: the machine's load drifts
            for run in ((run_bare, run_ours) if round_ % 2 == 0 else (run_ours, run_bare)):
                run()
        ratio = statistics.median(ours) / statistics.median(bare)
        print(f"1. steps/s  make train {statistics.median(ours):.3f}  bare keras-retinanet loop "
              f"{statistics.median(bare):.3f}  ratio {ratio:.3f} (target >= 0.95)  "
              f"[{SPEED['BACKBONE']}, batch {SPEED['BATCH']}, {SPEED['IMAGE_MIN_SIDE']}-"
              f"{SPEED['IMAGE_MAX_SIDE']}px, {args.steps} steps x {args.epochs} epochs, {args.rounds} rounds: "
              f"ours {[round(x, 3) for x in ours]} bare {[round(x, 3) for x in bare]}]", flush=True)
        results["make_vs_bare_ratio"] = ratio

        # -- 2. decode + resize of large images --------------------------------------------------
        from dataset.export import export
        from dataset.importer import import_folder
        from dataset.layout import Dataset
        from dataset.split import make_split
        large = Dataset.at(root / "large")
        import_folder(large, large_images(root, args.large))
        export(large)
        make_split(large, val=0.2, seed=0, progress=False)
        resized = pre_resized_copy(large.root, root)
        big_ms = decode_resize_ms(large.image_files())
        small_ms = decode_resize_ms(sorted((resized / "images").iterdir()))
        print(f"2. decode+resize to 800/1333 per image: 4000x3000 JPEG {big_ms:.0f} ms, pre-resized to "
              f"1333 px {small_ms:.0f} ms: ratio {big_ms / small_ms:.2f}x", flush=True)
        results.update(decode_ms_large=big_ms, decode_ms_resized=small_ms)

        # -- 3. default CPU settings: large vs pre-resized, and peak RSS -------------------------
        default = dict(EPOCHS=2, STEPS=args.default_steps, WEIGHTS="none")  # everything else: defaults
        run_large, rss_large = make_train(large.root, root / "runs-large", **default)
        run_small, rss_small = make_train(resized, root / "runs-small", **default)
        large_sps = steps_per_second(run_large, args.default_steps)
        small_sps = steps_per_second(run_small, args.default_steps)
        config = json.loads((run_large / "config.json").read_text())
        print(f"3. default CPU settings ({config['backbone']}, batch {config['batch']}, "
              f"{config['image_min_side']}/{config['image_max_side']}, freeze {config['freeze_backbone']}, "
              f"random transform {config['random_transform']}): steps/s on 12 MP images {large_sps:.3f}, "
              f"pre-resized {small_sps:.3f}: pre-resize speed-up {small_sps / large_sps:.2f}x; "
              f"step time {1000 / large_sps:.0f} ms of which decode+resize ~{big_ms:.0f} ms "
              f"({100 * big_ms * 1 / (1000 / large_sps):.0f}%)", flush=True)
        print(f"   peak RSS of `make train` at default CPU settings: {rss_large:.0f} MiB "
              f"({rss_large / 1024 / 24 * 100:.1f}% of 24 GiB)", flush=True)
        results.update(default_sps_large=large_sps, default_sps_resized=small_sps, peak_rss_mib=rss_large)
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
