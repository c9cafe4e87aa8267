"""Benchmark: maskset's duplicate finder and `make dedupe`, against imagededup's PHash, measured
in the same run.

1. Builds the labelled sets (bench/dedupe_labelled_set.py: seed-voc originals, 6 realistic
   copies each: crops up to 20 %, rotations up to 5 degrees, mirror images, pads, PNG re-saves,
   upscales ...), one from each half of the originals: "tune" and "test".
2. Speed, as the user runs it: `make dedupe DATA=<a fresh copy of the test set>` timed as a
   whole process (hashing, verification, keepers, the review page and the quarantine moves, from
   an empty cache), alternating with imagededup's PHash encode + search on the same folder;
   medians of --rounds rounds. Target: make dedupe at least 4x faster. For information, the
   finder alone (hashing + candidates + verification + groups, in this process), and the
   curator's way in: `make import SRC=<the folder>` (which fingerprints every image from the
   decode it makes anyway) then `make dedupe`, each timed as a process.
3. Quality, on the test half (the settings were chosen on the tune half, whose figures are
   printed too): pair and group precision and recall with FLIP off and on, group recall by
   transformation, how often the copy `make dedupe` keeps is the original, and how many of the
   seed data's distinct pictures the finder merges (FLIP off and on). Targets: recall >= 0.95
   overall and >= 0.90 for crops, rotations and two transformations at once; mirror images
   (FLIP on) >= 0.90; precision >= 0.999; the original kept in >= 95 % of the groups; 0 merges.
4. Scaling: hashing + grouping (the finder, verification included) of --scale sizes and a
   --memory run (small JPEGs cut from the seed photos), each in a fresh process that reports
   its peak memory. Targets: 100k images in at most 60 s and 2 GB.

    .venv/bin/python bench/bench_dedupe.py [--originals 200] [--rounds 5] [--scale 20000]
                                           [--memory 100000] [--quick] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads, as the CLI does (dataset/cli.py)

from PIL import Image, ImageOps  # noqa: E402

import dedupe_labelled_set as labelled  # noqa: E402  (bench/, a sibling)
from make_target import make  # noqa: E402
from dataset import hashcache, neighbours, verify  # noqa: E402

SPEED_TARGET = 4.0
MEMORY_LIMIT_MB = 2048
SCALE_SECONDS = 60.0
TARGETS = {"recall": 0.95, "crop": 0.90, "rotate": 0.90, "combined": 0.90, "mirror": 0.90,
           "precision": 0.999, "keeper": 0.95}


def load() -> float:
    return round(os.getloadavg()[0], 1)


# -- the tools ----------------------------------------------------------------------------------------
def finder(paths: list[Path], flip: bool) -> verify.Found:
    """maskset's finder from files to accepted pairs (keys: file names), as dedupe runs it."""
    records = hashcache.hash_records(paths)
    found = verify.find_pairs({p.name: fp for p, (fp, _) in records.items()}, {p.name: p for p in paths},
                              {p.name: sha for p, (_, sha) in records.items()}, flip=flip)
    found.pairs += neighbours.same_bytes_pairs({p.name: sha for p, (_, sha) in records.items()})
    return found


def make_dedupe(images: Path, data: Path, *variables: str) -> tuple[float, dict]:
    """`make dedupe` on a fresh dataset holding (hard links to) these images, put there by hand
    (so dedupe hashes every one), as a user runs it: (seconds, dedupe.json)."""
    shutil.rmtree(data, ignore_errors=True)
    (data / "images").mkdir(parents=True)
    for path in images.iterdir():
        os.link(path, data / "images" / path.name)
    seconds, _ = make("dedupe", data, *variables)
    return seconds, json.loads((data / "export" / "dedupe.json").read_text())


def import_then_dedupe(images: Path, data: Path) -> tuple[float, float]:
    """The curator's way in: `make import SRC=` (which decodes every image once and leaves the
    fingerprints in the hash cache), then `make dedupe`: (import seconds, dedupe seconds)."""
    shutil.rmtree(data, ignore_errors=True)
    return make("import", data, f"SRC={images}")[0], make("dedupe", data)[0]


def _import_imagededup():
    """imagededup's PHash without torch: its package __init__ files import the CNN modules (the
    only users of torch/torchvision), which the hashing path never calls, so those two modules
    are left out."""
    for name in ("imagededup.utils.models", "imagededup.methods.cnn"):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.CustomModel = stub.CNN = None
            sys.modules[name] = stub
    try:
        from imagededup.methods.hashing import PHash
    except ImportError as error:
        raise SystemExit(f"bench_dedupe: imagededup is missing ({error}). Install it with "
                         f"`make bench-setup`.")
    import logging
    logging.getLogger("imagededup").setLevel(logging.WARNING)
    return PHash


def imagededup_pairs(folder: Path) -> set[tuple[str, str]]:
    PHash = _import_imagededup()
    found = PHash(verbose=False).find_duplicates(image_dir=folder)  # default threshold (10)
    return {tuple(sorted((a, b))) for a, dups in found.items() for b in dups}


# -- scoring ------------------------------------------------------------------------------------------
def score(record: dict, pairs, flip: bool) -> dict:
    """Pair and group precision/recall over the scored files (mirror images only with flip on),
    and group recall by transformation (is the copy in its original's group?)."""
    scored = labelled.scored_truth(record, flip)
    truth_pairs = labelled.true_pairs(scored)
    found = {(a, b) for a, b, *_ in pairs if a in scored and b in scored}
    groups = neighbours.groups(sorted(scored), found)
    group_pairs = {p for g in groups for p in itertools.combinations(sorted(g), 2)}
    precision, recall = labelled.precision_recall(found, truth_pairs)
    group_precision, group_recall = labelled.precision_recall(group_pairs, truth_pairs)
    group_of = {name: k for k, g in enumerate(groups) for name in g}
    original_of = {str(k): v for k, v in record["original_of"].items()}  # int keys until saved as JSON
    by_kind = defaultdict(list)
    for name, original in scored.items():
        kind = record["transform"][name]
        if kind != "original":
            by_kind[kind].append(group_of[name] == group_of[original_of[str(original)]])
    mixed = sum(len({scored[n] for n in g}) > 1 for g in groups)
    return {"files": len(scored), "precision": precision, "recall": recall, "group_precision": group_precision,
            "group_recall": group_recall, "mixed_groups": mixed,
            "by_transform": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_kind.items())}}


def keeper_share(record: dict, report: dict) -> dict:
    """Of the groups `make dedupe` formed that hold an original, how many kept the original."""
    kept = total = 0
    wrong: dict[str, int] = defaultdict(int)
    for detail in report["details"]:
        members = [detail["keeper"], *(d["file"] for d in detail["duplicates"])]
        originals = [m for m in members if record["transform"].get(m) == "original"]
        if len(originals) != 1:
            continue
        total += 1
        if detail["keeper"] == originals[0]:
            kept += 1
        else:
            wrong[record["transform"][detail["keeper"]]] += 1
    return {"groups": total, "original_kept": kept / total if total else 1.0, "kept_instead": dict(wrong)}


def seed_merges(flip: bool) -> tuple[int, list]:
    """Groups of the whole seed data (every file) that join two of its distinct pictures."""
    paths = sorted(p for p in labelled.SEED_IMAGES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    found = finder(paths, flip)
    originals = {p.name for p in labelled.originals()}
    merged = [sorted(originals.intersection(g)) for g in neighbours.groups([p.name for p in paths], found.pairs)
              if len(originals.intersection(g)) > 1]
    return len(merged), merged


# -- scaling: many small, distinct-ish photos cut from the seed images ------------------------------
def make_scale_folder(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in labelled.originals():
        with Image.open(path) as image:
            image.draft("RGB", (320, 320))
            sources.append(ImageOps.exif_transpose(image).convert("RGB"))

    def one(index: int) -> Path:
        r = random.Random(seed * 1_000_003 + index)
        image = sources[r.randrange(len(sources))]
        w, h = image.size
        cw, ch = int(w * r.uniform(0.35, 0.8)), int(h * r.uniform(0.35, 0.8))
        x, y = r.randrange(w - cw + 1), r.randrange(h - ch + 1)
        tile = image.resize((160, 120), Image.BILINEAR, box=(x, y, x + cw, y + ch))
        if r.random() < 0.5:
            tile = tile.transpose(Image.FLIP_LEFT_RIGHT)
        out = io.BytesIO()
        tile.save(out, "JPEG", quality=75)
        path = folder / f"s{index:06d}.jpg"
        path.write_bytes(out.getvalue())  # bench scratch data: plain writes
        return path

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, range(count)))


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    exec from the parent, so a child would report the bench's own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_run(folder: Path, count: int) -> dict:
    """In this process: hash + group the first `count` images; time and peak memory."""
    paths = sorted(folder.iterdir())[:count]
    started = time.perf_counter()
    records = hashcache.hash_records(paths)
    hashed = time.perf_counter()
    found = verify.find_pairs({p.name: fp for p, (fp, _) in records.items()}, {p.name: p for p in paths},
                              {p.name: sha for p, (_, sha) in records.items()})
    pairs = found.pairs
    groups = neighbours.groups(sorted(p.name for p in paths), pairs)
    done = time.perf_counter()
    # Hashing may run in forked worker processes: count each at its own peak as if none of its
    # pages were shared with this one (they mostly are), so the total is an upper bound.
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = hashcache._workers() if worker_mb else 0
    return {"images": len(paths), "hash_s": hashed - started, "group_s": done - hashed,
            "total_s": done - started, "pairs": len(pairs), "groups": sum(len(g) > 1 for g in groups),
            "candidates": found.candidates, "verified": found.verified,
            "main_peak_mb": peak_mb(), "worker_peak_mb": worker_mb, "workers": workers,
            "peak_mb": peak_mb() + workers * worker_mb}


def run_child(folder: Path, count: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(count)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the report ---------------------------------------------------------------------------------------
def _quality(name: str, record: dict, folder: Path) -> dict:
    paths = sorted(folder.iterdir())
    out = {}
    for flip in (False, True):
        found = finder(paths, flip)
        row = score(record, found.pairs, flip)
        row.update(candidates=found.candidates, verified=found.verified)
        out["flip" if flip else "no_flip"] = row
        print(f"{name} FLIP={int(flip)}: {row['files']} files; pairs P {row['precision']:.4f} R {row['recall']:.4f}; "
              f"groups P {row['group_precision']:.4f} R {row['group_recall']:.4f} ({row['mixed_groups']} mixed); "
              f"{found.candidates} candidates, {found.verified} verified", flush=True)
        print("   by transformation: " + ", ".join(f"{k} {v:.2f}" for k, v in row["by_transform"].items()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--originals", type=int, default=200)
    p.add_argument("--variants", type=int, default=6)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scale", type=int, nargs="*", default=[20000])
    p.add_argument("--memory", type=int, default=100000, help="the size that must fit 60 s and 2 GB")
    p.add_argument("--quick", action="store_true", help="a small run (smoke test of the bench itself)")
    p.add_argument("--skip-scale", action="store_true", help="leave out the scaling runs")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dedupe.json")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)  # make bench passes BENCH_ARGS to every bench
    if args.child:
        print(json.dumps(child_run(Path(args.child[0]), int(args.child[1]))))
        return 0
    if args.quick:
        args.originals, args.rounds = 40, 1
        args.scale, args.memory = [2000], 4000

    results: dict = {"threshold": neighbours.DEFAULT_THRESHOLD, "dhash_threshold": neighbours.DEFAULT_DHASH_THRESHOLD,
                     "view_threshold": neighbours.VIEW_THRESHOLD, "view_dhash_threshold": neighbours.VIEW_DHASH_THRESHOLD,
                     "verification": verify.VERSION, "load_start": load()}
    verdict = {}
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        tmp = Path(tmp)
        sets = {}
        for part in labelled.PARTS:
            print(f"building the {part} set ({args.originals} originals x {args.variants} copies) ...", flush=True)
            sets[part] = (tmp / part, labelled.build(tmp / part, args.originals, args.variants, part=part))
        folder, record = sets["test"]

        # 2. speed: make dedupe as a process, against imagededup, alternating
        _import_imagededup()
        mine, theirs, inside, imports, after_import = [], [], [], [], []
        reports = {}
        for round_ in range(args.rounds):
            seconds, reports[False] = make_dedupe(folder, tmp / "data")
            mine.append(seconds)
            started = time.perf_counter()
            imagededup_pairs(folder)
            theirs.append(time.perf_counter() - started)
            started = time.perf_counter()
            finder(sorted(folder.iterdir()), False)
            inside.append(time.perf_counter() - started)
            seconds, dedupe_seconds = import_then_dedupe(folder, tmp / "imported")
            imports.append(seconds)
            after_import.append(dedupe_seconds)
            print(f"round {round_ + 1} (load {load()}): make dedupe {mine[-1]:.2f}s, imagededup {theirs[-1]:.2f}s, "
                  f"finder alone {inside[-1]:.2f}s; make import {imports[-1]:.2f}s then make dedupe "
                  f"{after_import[-1]:.2f}s", flush=True)
        flip_seconds, reports[True] = make_dedupe(folder, tmp / "data", "FLIP=1")
        ratio = statistics.median(theirs) / statistics.median(mine)
        results["speed"] = {"images": len(record["truth"]), "rounds": args.rounds,
                            "make_dedupe_s": mine, "imagededup_s": theirs, "finder_s": inside,
                            "make_dedupe_flip_s": flip_seconds, "ratio": ratio,
                            "make_import_s": imports, "make_dedupe_after_import_s": after_import,
                            "ratio_after_import": statistics.median(theirs) / statistics.median(after_import),
                            "finder_ratio": statistics.median(theirs) / statistics.median(inside), "load": load()}
        print(f"speed ({len(record['truth'])} images): make dedupe {statistics.median(mine):.2f}s (FLIP=1 "
              f"{flip_seconds:.2f}s), imagededup PHash {statistics.median(theirs):.2f}s: {ratio:.1f}x "
              f"(target >= {SPEED_TARGET:.0f}x); the finder alone {results['speed']['finder_ratio']:.1f}x")
        print(f"after `make import` (which fingerprints from its own decode; median {statistics.median(imports):.2f}s): "
              f"make dedupe {statistics.median(after_import):.2f}s = {results['speed']['ratio_after_import']:.1f}x")
        verdict["speed"] = ratio >= SPEED_TARGET

        # 3. quality
        results["tune"] = _quality("tune", sets["tune"][1], sets["tune"][0])
        results["test"] = test = _quality("test", record, folder)
        results["keeper"] = {("flip" if f else "no_flip"): keeper_share(record, reports[f]) for f in (False, True)}
        for flip in (False, True):
            k = results["keeper"]["flip" if flip else "no_flip"]
            print(f"keeper (make dedupe FLIP={int(flip)}): the original kept in {k['original_kept']:.3f} of "
                  f"{k['groups']} groups; instead: {k['kept_instead']}")
        results["seed_merges"] = {}
        for flip in (False, True):
            count, merged = seed_merges(flip)
            results["seed_merges"]["flip" if flip else "no_flip"] = {"merged": count, "groups": merged}
            print(f"seed data, FLIP={int(flip)}: {count} groups join distinct pictures {merged}")
        on, off = test["flip"], test["no_flip"]
        verdict.update(
            recall=off["group_recall"] >= TARGETS["recall"] and on["group_recall"] >= TARGETS["recall"],
            crop=off["by_transform"].get("crop", 1) >= TARGETS["crop"],
            rotate=off["by_transform"].get("rotate", 1) >= TARGETS["rotate"],
            combined=off["by_transform"].get("combined", 1) >= TARGETS["combined"],
            mirror=on["by_transform"].get("mirror", 1) >= TARGETS["mirror"],
            precision=min(off["precision"], on["precision"], off["group_precision"],
                          on["group_precision"]) >= TARGETS["precision"],
            keeper=min(k["original_kept"] for k in results["keeper"].values()) >= TARGETS["keeper"],
            seed=all(v["merged"] == 0 for v in results["seed_merges"].values()))

        # 4. scaling, each size in a fresh process
        if not args.skip_scale:
            biggest = max([*args.scale, args.memory])
            scale_folder = tmp / "scale"
            print(f"\nwriting {biggest} small JPEGs for the scaling runs ...", flush=True)
            make_scale_folder(scale_folder, biggest)
            print(f"{'images':>8}{'hash s':>9}{'group s':>9}{'total s':>9}{'peak MB':>9}{'cand.':>9}{'verified':>9}"
                  f"{'pairs':>8}   (peak: main process + each worker at its own peak, an upper bound)")
            scaling = []
            for count in sorted(set([*args.scale, args.memory])):
                row = run_child(scale_folder, count)
                row["load"] = load()
                scaling.append(row)
                print(f"{row['images']:8d}{row['hash_s']:9.1f}{row['group_s']:9.1f}{row['total_s']:9.1f}"
                      f"{row['peak_mb']:9.0f}{row['candidates']:9d}{row['verified']:9d}{row['pairs']:8d}"
                      f"  (load {row['load']})", flush=True)
            results["scaling"] = scaling
            memory_row = next(r for r in scaling if r["images"] == args.memory)
            verdict["scale_memory"] = memory_row["peak_mb"] <= MEMORY_LIMIT_MB
            verdict["scale_time"] = memory_row["total_s"] <= SCALE_SECONDS

    results["verdict"] = verdict
    print("\nverdict: " + ", ".join(f"{k} {'OK' if v else 'MISSED'}" for k, v in verdict.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
