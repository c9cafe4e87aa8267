"""Benchmark: `make import` of a 20,000-image COCO set costs at most 1.3x a plain copy of the same
files, measured side by side (issue 12).

Builds a COCO set (instances_default.json + images/: the seed photos copied round-robin under
20,000 names, one box each), then, in alternating order each round, times as processes:
  - the baseline: `cp -r SRC COPY`, then `sync` (the import's files are on disk when it returns;
    a copy's are only once synced, so the sync is part of the copy);
  - `make import SRC=SRC DATA=...` as a user runs it (format detected, every image read and
    checked, copied, VOC files written, manifest, one sync);
  - with --link, `make import ... LINK=1` too (images hard-linked instead of copied).
Before each timed command the file system is synced untimed, so neither pays for the other's
writes. It prints each round, the medians, and the ratio of the medians; the copy without its
sync is printed too, for reference.

    .venv/bin/python bench/bench_import.py [--images 20000] [--rounds 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared")) / "data" / "seed-voc"
TARGET = 1.3

from dataset.fixtures.sources import coco_set  # noqa: E402


CPU: list[float] = []  # CPU seconds (user + system) of the last timed command


def timed(command: list[str], settle: bool = True, **env) -> float:
    """Wall seconds of a command run as a process (its CPU seconds go to CPU)."""
    if settle:
        os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[:] = [after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime]
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", help="build the COCO set here and keep it (default: a temp folder)")
    p.add_argument("--link", action="store_true", help="also time `make import LINK=1`")
    args, _ = p.parse_known_args(argv)  # make bench passes one BENCH_ARGS to every bench
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = root / "coco"
        started = time.monotonic()
        if not (src / "instances_default.json").exists():
            coco_set(src, sorted((SEED / "images").iterdir()), args.images)
        size = sum(p.stat().st_size for p in (src / "images").iterdir())
        print(f"set-up: {args.images} images, {size / 1e9:.2f} GB, in {time.monotonic() - started:.1f}s")
        variants = ["import"] + (["import LINK=1"] if args.link else [])
        wall: dict[str, list[float]] = {"copy": [], "copy alone": [], **{v: [] for v in variants}}
        cpu: dict[str, list[float]] = {"copy": [], **{v: [] for v in variants}}
        for round_ in range(args.rounds):
            order = ["copy", *variants]
            for which in (order if round_ % 2 == 0 else order[::-1]):
                target = root / "target"
                shutil.rmtree(target, ignore_errors=True)
                if which == "copy":
                    copy = timed(["cp", "-r", str(src), str(target)])
                    cpu["copy"].append(CPU[0])
                    wall["copy"].append(copy + timed(["sync"], settle=False))
                    wall["copy alone"].append(copy)
                else:
                    extra = ["LINK=1"] if which.endswith("LINK=1") else []
                    wall[which].append(timed(["make", "--no-print-directory", "-C", str(REPO), "import",
                                              f"SRC={src}", f"DATA={target}", *extra], MASKSET_PROGRESS="0"))
                    cpu[which].append(CPU[0])
                    assert len(list((target / "images").iterdir())) == args.images, "the import lost images"
                shutil.rmtree(target)
            print(f"round {round_ + 1}: copy+sync {wall['copy'][-1]:.2f}s (copy alone {wall['copy alone'][-1]:.2f}s, "
                  f"CPU {cpu['copy'][-1]:.2f}s); "
                  + "; ".join(f"{v} {wall[v][-1]:.2f}s = {wall[v][-1] / wall['copy'][-1]:.2f}x (CPU {cpu[v][-1]:.2f}s)"
                              for v in variants) + f" (load {os.getloadavg()[0]:.1f})")
        copy = statistics.median(wall["copy"])
        print(f"median: copy+sync {copy:.2f}s (copy alone {statistics.median(wall['copy alone']):.2f}s, CPU "
              f"{statistics.median(cpu['copy']):.2f}s)")
        ratios = {}
        for v in variants:
            ratios[v] = statistics.median(wall[v]) / copy
            paired = statistics.median(i / c for i, c in zip(wall[v], wall["copy"]))
            print(f"  {v}: {statistics.median(wall[v]):.2f}s = {ratios[v]:.2f}x the copy (median of the rounds' "
                  f"ratios {paired:.2f}x; CPU {statistics.median(cpu[v]):.2f}s)")
        ratio = ratios["import"]
        print(f"{'PASS' if ratio <= TARGET else 'FAIL'}: make import is {ratio:.2f}x a plain copy of the same files "
              f"(target at most {TARGET}x)")
        return 0 if ratio <= TARGET else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
