"""Benchmark: `make import` of a 20,000-image COCO set costs at most 1.3x a plain copy of the same
files, measured side by side (issue 12).

Builds a COCO set (instances_default.json + images/: the seed photos copied round-robin under
20,000 names, one box each), then, in alternating order each round, times as processes:
  - the baseline: `cp -r SRC COPY`, then `sync` (the import's files are on disk when it returns;
    a copy's are only once synced, so the sync is part of the copy);
  - `make import SRC=SRC DATA=...` as a user runs it (format detected, every image read and
    checked, VOC files written, manifest, one sync).
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
        subprocess.run(["sync"], check=True)
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
    args, _ = p.parse_known_args(argv)  # make bench passes one BENCH_ARGS to every bench
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = root / "coco"
        started = time.monotonic()
        if not (src / "instances_default.json").exists():
            coco_set(src, sorted((SEED / "images").iterdir()), args.images)
        size = sum(p.stat().st_size for p in (src / "images").iterdir())
        print(f"set-up: {args.images} images, {size / 1e9:.2f} GB, in {time.monotonic() - started:.1f}s")
        copies, bare, imports, cpu = [], [], [], {"copy": [], "import": []}
        for round_ in range(args.rounds):
            for which in (("copy", "import") if round_ % 2 == 0 else ("import", "copy")):
                target = root / which
                shutil.rmtree(target, ignore_errors=True)
                if which == "copy":
                    copy = timed(["cp", "-r", str(src), str(target)])
                    cpu["copy"].append(CPU[0])
                    copies.append(copy + timed(["sync"], settle=False))
                    bare.append(copy)
                else:
                    imports.append(timed(["make", "--no-print-directory", "-C", str(REPO), "import",
                                          f"SRC={src}", f"DATA={target}"], MASKSET_PROGRESS="0"))
                    cpu["import"].append(CPU[0])
                    assert len(list((target / "images").iterdir())) == args.images, "the import lost images"
                shutil.rmtree(target)
            load = os.getloadavg()[0]
            print(f"round {round_ + 1}: copy+sync {copies[-1]:.2f}s (copy alone {bare[-1]:.2f}s), "
                  f"import {imports[-1]:.2f}s = {imports[-1] / copies[-1]:.2f}x; CPU seconds: cp "
                  f"{cpu['copy'][-1]:.2f}, import {cpu['import'][-1]:.2f} (load {load:.1f})")
        copy, alone, imported = (statistics.median(v) for v in (copies, bare, imports))
        ratio = imported / copy
        print(f"median: copy+sync {copy:.2f}s (copy alone {alone:.2f}s), import {imported:.2f}s; median of "
              f"the rounds' ratios {statistics.median(i / c for i, c in zip(imports, copies)):.2f}x; CPU seconds: "
              f"cp {statistics.median(cpu['copy']):.2f}, import {statistics.median(cpu['import']):.2f}")
        print(f"{'PASS' if ratio <= TARGET else 'FAIL'}: import is {ratio:.2f}x a plain copy of the same files "
              f"(target at most {TARGET}x; {imported / alone:.2f}x the copy without its sync)")
        return 0 if ratio <= TARGET else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
