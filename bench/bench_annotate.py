"""Benchmark `make annotate` on the real seed data (691 images + VOC), on a private Xvfb display.

1. Opening labelImg on every image (ALL=1) through annotation.launcher, adapted, against the
   baseline measured in the same run: the same launcher with the adaptation off
   (MASKSET_LABELIMG_UNPATCHED=1; it opens fine, it only crashes once a box is drawn). The
   ratio is what the Python 3.10+ adaptation costs at start-up (should be ~1.0).
2. The session summary's scan of every annotation (annotation_states + session_summary) against
   the baseline of `make validate`'s check of the same files (validate, no report written),
   which a curator runs after annotating anyway.

The dataset is a temporary folder whose images/ and annotations/ are symlinks to seed-voc: the
bench only reads them (labelImg is closed without saving anything).

    .venv/bin/python bench/bench_annotate.py [--repeat 4]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from annotation import launcher  # noqa: E402
from annotation.annotate import (annotation_states, images_to_annotate,  # noqa: E402
                                 launcher_command, session_summary)
from dataset import atomic  # noqa: E402
from dataset.layout import Dataset  # noqa: E402
from dataset.validate import validate  # noqa: E402
from dataset.fixtures.display import VirtualDisplay  # noqa: E402  (Xvfb -displayfd)

SEED_VOC = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared")) / "data" / "seed-voc"


def seed_dataset(root: Path) -> Dataset:
    dataset = Dataset.at(root)
    root.mkdir(parents=True)
    # copies, not links: maskset refuses a dataset folder that is a link (it never writes through one)
    shutil.copytree(SEED_VOC / "images", root / "images")
    shutil.copytree(SEED_VOC / "annotations", root / "annotations")
    dataset.write_classes(["mask", "noMask"])
    return dataset


def time_to_window(screen, dataset: Dataset, image_list: Path, settings: Path, unpatched: bool) -> float:
    """Seconds from starting the launcher to labelImg's window showing the first image."""
    env = screen.env(PYTHONPATH=str(REPO), **{launcher.UNPATCHED_ENV: "1" if unpatched else ""})
    started = time.monotonic()
    process = subprocess.Popen(launcher_command(dataset, image_list, settings), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        screen.wait_until(lambda: any("1 / " in screen.xdotool("getwindowname", w)
                                      for w in screen.windows(pid=process.pid)),
                          timeout=120, interval=0.05, what="labelImg's first image")
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=4)
    args, _ = p.parse_known_args()  # `make bench BENCH_ARGS=..` hands every bench the same args
    if not (SEED_VOC / "images").is_dir():
        print(f"skip: {SEED_VOC} missing")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        dataset = seed_dataset(Path(tmp) / "data")
        states = annotation_states(dataset)
        images = images_to_annotate(dataset, states, all_images=True)
        image_list = atomic.write_text(Path(tmp) / "images.txt", "".join(f"{p}\n" for p in images))

        with VirtualDisplay() as screen:
            adapted, plain = [], []
            for i in range(args.repeat):  # interleaved, alternating who goes first: fair under load
                settings = Path(tmp) / f"settings-{i}.pkl"
                for unpatched in ((True, False) if i % 2 else (False, True)):
                    (plain if unpatched else adapted).append(
                        time_to_window(screen, dataset, image_list, settings, unpatched))
        a, b = statistics.median(adapted), statistics.median(plain)
        print(f"open labelImg on {len(images)} images: adapted {a:.2f}s, unadapted baseline "
              f"{b:.2f}s (medians of {args.repeat}) -> ratio {a / b:.2f}")

        scan, check = [], []
        for _ in range(args.repeat):
            started = time.monotonic()
            session_summary(states, annotation_states(dataset), dataset.classes())
            scan.append(time.monotonic() - started)
            started = time.monotonic()
            validate(dataset, progress=False, write_report=False)
            check.append(time.monotonic() - started)
        a, b = statistics.median(scan), statistics.median(check)
        print(f"session summary over {len(states)} annotations: {a:.3f}s; make validate baseline "
              f"{b:.3f}s -> ratio {a / b:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
