"""Benchmark: the weekly cycle on 20,000 replicated seed files, every stage timed as a process,
as a user runs it (`make <stage> DATA=...`).

1. `make import` of 20,000 files (the seed-voc photos and VOC files, replicated).
2. `make validate` + `make export` right after the import (each round cold: the validation cache
   and export's memo removed before it). Target: at least 2,000 files/s together. Baseline, in
   the same run: `make validate RECHECK=1` (every image decoded, as validate did before), twice:
   once for validate and once for the validation export ran again.
3. The same two again with nothing changed. Target: at most 0.2x the time of step 2. (And, for
   information, after 1% of the VOC files were saved again.)
4. `make split VAL=0.2 TEST=0.1` of the 20,000; import 1,000 more (and validate, export); then
   `make split` again (the stable split: the earlier images kept, the new ones placed), from the
   20,000's hash cache and split.json restored before each round. Target: it hashes exactly the
   1,000 new images and takes at most 0.2x the time of splitting all 21,000 from an empty cache
   (split.json and the hash cache removed), measured in the same run.

Medians of --rounds rounds; the machine's load average is printed with each.

    .venv/bin/python bench/bench_cycle.py [--images 20000] [--added 1000] [--rounds 3] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from make_target import make  # bench/, a sibling

from dataset.hashcache import CACHE_NAME

REPO = Path(__file__).resolve().parents[1]
SEED_VOC = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared")) / "data" / "seed-voc"
RATE_TARGET = 2000.0     # files/s for validate + export right after import
WARM_TARGET = 0.2        # validate + export with nothing changed, against right after import
SPLIT_TARGET = 0.2       # incremental split, against splitting everything from an empty cache


def replicate(src: Path, out: Path, count: int, start: int = 0) -> int:
    """`count` image+VOC pairs copied from seed-voc under new names (r<k>_<name>), from the k-th
    replica on: a labelImg folder as a curator's growing dataset would hold."""
    images = sorted((src / "images").iterdir())
    out.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        image = images[index % len(images)]
        name = f"r{index // len(images):03d}_{image.name}"
        shutil.copyfile(image, out / name)
        xml = src / "annotations" / (image.stem + ".xml")
        if xml.exists():
            shutil.copyfile(xml, out / (Path(name).stem + ".xml"))
    return count


def load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--added", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", help="work here and keep it (default: a temp folder)")
    args, _ = p.parse_known_args(argv)  # make bench passes one BENCH_ARGS to every bench
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-cycle-"))
    data = root / "data"
    memory = data / ".cache" / "validate-v1.json"
    memo = data / ".cache" / "memo" / "export.json"
    ok = True
    try:
        started = time.perf_counter()
        replicate(SEED_VOC, root / "week1", args.images)
        replicate(SEED_VOC, root / "week2", args.added, start=args.images)
        print(f"set-up: {args.images} + {args.added} replicated seed files in {time.perf_counter() - started:.1f}s")

        seconds, _ = make("import", data, f"SRC={root / 'week1'}")
        print(f"make import of {args.images} files: {seconds:.1f}s ({args.images / seconds:.0f} files/s; {load()})")

        # -- validate + export -------------------------------------------------------------------
        cold, warm, touched, baseline = [], [], [], []
        for round_ in range(args.rounds):
            memory.unlink(missing_ok=True)  # right after import: nothing remembered yet
            memo.unlink(missing_ok=True)
            v, out = make("validate", data)
            assert f"{args.images} VOC files checked, 0 images decoded" in out, out  # import's facts
            e, out = make("export", data)
            assert "validation: 0 VOC files checked" in out and "wrote" in out, out  # validate's, reused
            cold.append(v + e)
            v2, _ = make("validate", data)
            e2, out = make("export", data)
            assert "validation: 0 VOC files checked" in out and "up to date" in out, out
            warm.append(v2 + e2)
            for xml in sorted((data / "annotations").iterdir())[:args.images // 100]:
                os.utime(xml)  # 1% of the VOC files saved again (unchanged contents)
            v3, out = make("validate", data)
            assert f"{args.images // 100} VOC files checked, 0 images decoded" in out, out
            e3, _ = make("export", data)
            touched.append(v3 + e3)
            b, _ = make("validate", data, "RECHECK=1")
            baseline.append(2 * b)
            print(f"  round {round_ + 1}: after import {v:.2f}+{e:.2f}s, unchanged {v2:.2f}+{e2:.2f}s, "
                  f"1% touched {v3:.2f}+{e3:.2f}s, RECHECK=1 validate {b:.2f}s ({load()})")
        rate = args.images / median(cold)
        ratio = median(warm) / median(cold)
        print(f"baseline (every image decoded, by validate and again for export): {median(baseline):.2f}s "
              f"= {args.images / median(baseline):.0f} files/s")
        print(f"validate + export right after import: {median(cold):.2f}s = {rate:.0f} files/s "
              f"({median(baseline) / median(cold):.1f}x the baseline); target >= {RATE_TARGET:.0f} files/s: "
              + ("PASS" if rate >= RATE_TARGET else "FAIL"))
        print(f"validate + export with nothing changed: {median(warm):.2f}s = {ratio:.2f}x the time right after "
              f"import; target <= {WARM_TARGET}x: " + ("PASS" if ratio <= WARM_TARGET else "FAIL"))
        print(f"validate + export after 1% of the VOC files were saved again: {median(touched):.2f}s")
        ok &= rate >= RATE_TARGET and ratio <= WARM_TARGET

        # -- split ---------------------------------------------------------------------------------
        seconds, _ = make("split", data, "VAL=0.2", "TEST=0.1")
        print(f"make split of {args.images} (fingerprinted by import: nothing to hash): {seconds:.1f}s ({load()})")
        saved = root / "saved"
        saved.mkdir(exist_ok=True)
        # the 20,000's hash cache, before week2's import adds its 1,000 (import fingerprints them: a
        # user's split after it hashes none; this measures the split that has to hash them)
        caches = [data / ".cache" / CACHE_NAME]
        for path in caches + [data / "export" / "split.json"]:
            shutil.copy2(path, saved / path.name)
        make("import", data, f"SRC={root / 'week2'}")
        make("validate", data)
        make("export", data)
        incremental, full = [], []
        for round_ in range(args.rounds):
            for path in caches + [data / "export" / "split.json"]:
                shutil.copy2(saved / path.name, path)  # the 20,000's split and hash cache
            seconds, out = make("split", data)
            hashed = int(re.search(r"hashed (\d+) new or changed images", out).group(1))
            assert hashed == args.added, out
            incremental.append(seconds)
            for path in caches + [data / "export" / "split.json"]:
                path.unlink()  # an empty cache, no record
            everything, out = make("split", data, "VAL=0.2", "TEST=0.1")
            assert f"hashed {args.images + args.added} new" in out, out
            full.append(everything)
            print(f"  round {round_ + 1}: adding {args.added}: {seconds:.2f}s (hashed {hashed}); all "
                  f"{args.images + args.added} from an empty cache: {everything:.2f}s ({load()})")
        ratio = median(incremental) / median(full)
        print(f"split after adding {args.added} images: {median(incremental):.2f}s, hashing only the new ones; "
              f"all {args.images + args.added} from an empty cache: {median(full):.2f}s; ratio {ratio:.3f}; "
              f"target <= {SPLIT_TARGET}x: " + ("PASS" if ratio <= SPLIT_TARGET else "FAIL"))
        ok &= ratio <= SPLIT_TARGET
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
