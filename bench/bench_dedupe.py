"""Benchmark: maskset's duplicate finder against imagededup's PHash, measured in the same run.

1. Builds the labelled sets (bench/dedupe_labelled_set.py: seed-voc originals + realistic copies),
   one from each half of the originals: "tune" and "test".
2. Times both tools from image files to duplicate pairs on the test set, alternating rounds
   (the machine is shared: the median of each is compared), and prints the ratio.
   Target: maskset at least 5x faster.
3. Precision and recall of both on the test set's labelled pairs (imagededup at its default
   threshold 10). Target: neither worse than imagededup's. Then maskset's sweep over both
   thresholds on the tune set, and how many different seed pictures each setting merges on the
   whole seed data: how DEFAULT_THRESHOLD and DEFAULT_DHASH_THRESHOLD were chosen.
4. Scaling: hashing + grouping 10k, 20k, 40k images (small JPEGs cut from the seed photos), and
   a 100k run, each in a fresh process that reports its peak memory. Target: 100k under 2 GB.

    .venv/bin/python bench/bench_dedupe.py [--originals 200] [--scale 10000 20000 40000]
                                           [--memory 100000] [--rounds 5] [--quick] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from PIL import Image, ImageOps  # noqa: E402

from bench import dedupe_labelled_set as labelled  # noqa: E402
from dataset import hashcache, hashing, neighbours  # noqa: E402

SPEED_TARGET = 5.0
MEMORY_LIMIT_MB = 2048


# -- the two tools, from files to pairs --------------------------------------------------------------
def maskset_pairs(folder: Path) -> set[tuple[str, str]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix == ".jpg")
    hashes = {p.name: h for p, h in hashcache.hash_files(paths).items()}
    pairs = neighbours.similar_pairs(hashes)
    neighbours.groups(sorted(hashes), pairs)  # dedupe groups them too: part of the cost
    return {(a, b) for a, b, _ in pairs}


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
                         f"`.venv/bin/pip install --no-deps -r requirements-bench-nodeps.txt` "
                         f"and `.venv/bin/pip install -r requirements-bench.txt`.")
    import logging
    logging.getLogger("imagededup").setLevel(logging.WARNING)
    return PHash


def imagededup_pairs(folder: Path) -> set[tuple[str, str]]:
    PHash = _import_imagededup()
    found = PHash(verbose=False).find_duplicates(image_dir=folder)  # default threshold (10)
    return {tuple(sorted((a, b))) for a, dups in found.items() for b in dups}


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
    hashes = {p.name: h for p, h in hashcache.hash_files(paths).items()}
    hashed = time.perf_counter()
    pairs = neighbours.similar_pairs(hashes)
    groups = neighbours.groups(sorted(hashes), pairs)
    done = time.perf_counter()
    # Hashing may run in forked worker processes: count each at its own peak as if none of its
    # pages were shared with this one (they mostly are), so the total is an upper bound.
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    workers = hashcache._workers() if worker_mb else 0
    return {"images": len(paths), "hash_s": hashed - started, "group_s": done - hashed,
            "total_s": done - started, "pairs": len(pairs), "groups": sum(len(g) > 1 for g in groups),
            "main_peak_mb": peak_mb(), "worker_peak_mb": worker_mb, "workers": workers,
            "peak_mb": peak_mb() + workers * worker_mb}


def run_child(folder: Path, count: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(count)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def imagededup_child(folder: Path, count: int) -> dict:
    """imagededup on the first `count` images of folder (a fresh process; symlinked subset)."""
    out = subprocess.run([sys.executable, __file__, "--child-imagededup", str(folder), str(count)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- choosing the thresholds ----------------------------------------------------------------------
SWEEP_PHASH = (6, 8, 10, 12, 14, 16)
SWEEP_DHASH = (24, 32, 40, 48, hashing.DHASH_BITS)


def seed_merges():
    """A function (threshold, dhash_threshold) -> how many groups of the whole seed data hold more
    than one labelled-set original (different pictures merged), and the number of originals."""
    records = hashcache.hash_records(sorted(labelled.SEED_IMAGES.iterdir()))
    prints = {p.name: fingerprint for p, (fingerprint, _) in records.items()}
    exact = neighbours.same_bytes_pairs({p.name: sha for p, (_, sha) in records.items()})
    originals = {p.name for p in labelled.originals()}

    def merged(threshold: int, dhash_threshold: int) -> int:
        found = neighbours.groups(sorted(prints), neighbours.similar_pairs(prints, threshold, dhash_threshold) + exact)
        return sum(len(originals.intersection(g)) > 1 for g in found)
    return merged, len(originals)


def sweep(tune_set) -> list[dict]:
    """maskset over both thresholds on the tune set (pairs, and pairs after union-find, which is
    what dedupe acts on), with the different seed pictures each setting merges."""
    folder, truth, truth_pairs = tune_set
    prints = {p.name: h for p, h in hashcache.hash_files(sorted(folder.iterdir())).items()}
    merged, originals = seed_merges()
    rows = []
    print(f"\nsweep on the tune set ({len(truth)} images); 'merged' = groups of the whole seed data "
          f"that join different pictures ({originals} pictures):")
    print(f"{'pHash':>6}{'dHash':>6}{'precision':>11}{'recall':>9}{'group P':>9}{'group R':>9}{'merged':>8}")
    for threshold in SWEEP_PHASH:
        for dhash_threshold in SWEEP_DHASH:
            pairs = neighbours.similar_pairs(prints, threshold, dhash_threshold)
            pr, rc = labelled.precision_recall({(a, b) for a, b, _ in pairs}, truth_pairs)
            group_pairs = {tuple(sorted(x)) for g in neighbours.groups(sorted(prints), pairs)
                           for x in itertools.combinations(g, 2)}
            gp, gr = labelled.precision_recall(group_pairs, truth_pairs)
            row = {"threshold": threshold, "dhash_threshold": dhash_threshold, "precision": pr,
                   "recall": rc, "group_precision": gp, "group_recall": gr,
                   "seed_merges": merged(threshold, dhash_threshold)}
            rows.append(row)
            mark = "  <- default" if (threshold, dhash_threshold) == (neighbours.DEFAULT_THRESHOLD,
                                                                       neighbours.DEFAULT_DHASH_THRESHOLD) else ""
            print(f"{threshold:6d}{dhash_threshold:6d}{pr:11.4f}{rc:9.4f}{gp:9.4f}{gr:9.4f}"
                  f"{row['seed_merges']:8d}{mark}")
    return rows


# -- the report ---------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--originals", type=int, default=200)
    p.add_argument("--variants", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--scale", type=int, nargs="*", default=[10000, 20000, 40000])
    p.add_argument("--memory", type=int, default=100000, help="the size whose peak memory must fit 2 GB")
    p.add_argument("--compare-at", type=int, default=10000, help="also time imagededup at this size (0: no)")
    p.add_argument("--quick", action="store_true", help="a small run (smoke test of the bench itself)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "dedupe.json")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--child-imagededup", nargs=2, help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)  # make bench passes BENCH_ARGS to every bench
    if args.child:
        print(json.dumps(child_run(Path(args.child[0]), int(args.child[1]))))
        return 0
    if args.child_imagededup:
        folder, count = Path(args.child_imagededup[0]), int(args.child_imagededup[1])
        subset = Path(tempfile.mkdtemp(prefix="idd-subset-"))
        for path in sorted(folder.iterdir())[:count]:
            (subset / path.name).symlink_to(path)
        started = time.perf_counter()
        pairs = imagededup_pairs(subset)
        print(json.dumps({"images": count, "total_s": time.perf_counter() - started, "pairs": len(pairs),
                          "peak_mb": peak_mb()}))
        return 0
    if args.quick:
        args.originals, args.variants, args.rounds = 40, 3, 1
        args.scale, args.memory, args.compare_at = [2000, 4000], 8000, 2000

    results: dict = {"threshold": neighbours.DEFAULT_THRESHOLD,
                     "dhash_threshold": neighbours.DEFAULT_DHASH_THRESHOLD}
    default = (neighbours.DEFAULT_THRESHOLD, neighbours.DEFAULT_DHASH_THRESHOLD)
    with tempfile.TemporaryDirectory(prefix="bench-dedupe-") as tmp:
        tmp = Path(tmp)
        sets = {}
        for part in labelled.PARTS:
            print(f"building the {part} set ({args.originals} originals x {args.variants} copies) ...", flush=True)
            folder = tmp / part
            truth = labelled.build(folder, args.originals, args.variants, part=part)
            (folder / "truth.json").rename(tmp / f"{part}-truth.json")  # imagededup reads every file
            sets[part] = (folder, truth, labelled.true_pairs(truth))
        folder, truth, truth_pairs = sets["test"]

        _import_imagededup()
        mine_times, theirs_times = [], []
        for round_ in range(args.rounds):  # alternate, so both see the same machine load
            started = time.perf_counter()
            mine = maskset_pairs(folder)
            mine_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = imagededup_pairs(folder)
            theirs_times.append(time.perf_counter() - started)
            print(f"round {round_ + 1}: maskset {mine_times[-1]:.2f}s, imagededup {theirs_times[-1]:.2f}s",
                  flush=True)
        mine_s, theirs_s = statistics.median(mine_times), statistics.median(theirs_times)
        ratio = theirs_s / mine_s
        p_mine, r_mine = labelled.precision_recall(mine, truth_pairs)
        p_theirs, r_theirs = labelled.precision_recall(theirs, truth_pairs)
        results["labelled_set"] = {"part": "test", "images": len(truth), "true_pairs": len(truth_pairs),
                                   "maskset": {"seconds": mine_s, "precision": p_mine, "recall": r_mine},
                                   "imagededup": {"seconds": theirs_s, "precision": p_theirs,
                                                  "recall": r_theirs},
                                   "speed_ratio": ratio}
        print(f"\ntest set: {len(truth)} images, {len(truth_pairs)} true duplicate pairs")
        print(f"{'tool':<34}{'seconds':>9}{'img/s':>9}{'precision':>11}{'recall':>9}")
        for label, s, pr, rc in ((f"maskset (pHash {default[0]}, dHash {default[1]})", mine_s, p_mine, r_mine),
                                 ("imagededup PHash (10)", theirs_s, p_theirs, r_theirs)):
            print(f"{label:<34}{s:9.2f}{len(truth) / s:9.0f}{pr:11.4f}{rc:9.4f}")
        print(f"speed ratio (imagededup / maskset): {ratio:.1f}x (target >= {SPEED_TARGET:.0f}x)")

        results["sweep"] = sweep(sets["tune"])
        # Recall per kind of copy (copy vs its original) at the defaults, on the test set.
        hashes = {p.name: h for p, h in hashcache.hash_files(sorted(folder.iterdir())).items()}
        how = json.loads((tmp / "test-truth.json").read_text())["transform"]
        per_kind: dict[str, list[bool]] = {}
        for name, kind in how.items():
            if kind != "original":
                original = name.split("_")[0] + ".jpg"
                per_kind.setdefault(kind, []).append(bool(neighbours.similar_pairs(
                    {name: hashes[name], original: hashes[original]})))
        results["recall_by_transform"] = {k: sum(v) / len(v) for k, v in sorted(per_kind.items())}
        print("recall of copy vs original by transform (test set): " +
              ", ".join(f"{k} {v:.2f}" for k, v in results["recall_by_transform"].items()))

        # Scaling and memory, each size in a fresh process.
        biggest = max([*args.scale, args.memory])
        scale_folder = tmp / "scale"
        print(f"\nwriting {biggest} small JPEGs for the scaling runs ...", flush=True)
        started = time.perf_counter()
        make_scale_folder(scale_folder, biggest)
        print(f"  ({time.perf_counter() - started:.0f}s)")
        print(f"{'images':>8}{'hash s':>9}{'group s':>9}{'total s':>9}{'img/s':>8}{'peak MB':>9}{'pairs':>8}"
              f"   (peak: main process + each worker at its own peak, an upper bound)")
        scaling = []
        for count in sorted(set([*args.scale, args.memory])):
            row = run_child(scale_folder, count)
            scaling.append(row)
            print(f"{row['images']:8d}{row['hash_s']:9.1f}{row['group_s']:9.2f}{row['total_s']:9.1f}"
                  f"{row['images'] / row['total_s']:8.0f}{row['peak_mb']:9.0f}{row['pairs']:8d}", flush=True)
        results["scaling"] = scaling
        if args.compare_at:
            theirs_row = imagededup_child(scale_folder, args.compare_at)
            mine_row = next((r for r in scaling if r["images"] == args.compare_at), None) or \
                run_child(scale_folder, args.compare_at)
            results["scaling_compare"] = {"images": args.compare_at, "imagededup": theirs_row,
                                          "maskset": mine_row,
                                          "ratio": theirs_row["total_s"] / mine_row["total_s"]}
            print(f"at {args.compare_at} images: imagededup {theirs_row['total_s']:.1f}s "
                  f"({theirs_row['peak_mb']:.0f} MB peak in its main process), maskset "
                  f"{mine_row['total_s']:.1f}s: ratio {results['scaling_compare']['ratio']:.1f}x")
        memory_row = next(r for r in scaling if r["images"] == args.memory)

    ok_speed = ratio >= SPEED_TARGET
    ok_quality = p_mine >= p_theirs and r_mine >= r_theirs
    ok_memory = memory_row["peak_mb"] <= MEMORY_LIMIT_MB
    results["verdict"] = {"speed": ok_speed, "quality": ok_quality, "memory": ok_memory}
    print(f"\nverdict: speed {ratio:.1f}x {'OK' if ok_speed else 'BELOW TARGET'}; precision/recall "
          f"{'no worse: OK' if ok_quality else 'WORSE'}; {args.memory} images peak "
          f"{memory_row['peak_mb']:.0f} MB {'OK' if ok_memory else 'OVER 2 GB'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")
    return 0 if (ok_speed and ok_quality and ok_memory) else 1


if __name__ == "__main__":
    raise SystemExit(main())
