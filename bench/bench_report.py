"""Benchmark: `make report` on 20,000 annotated images must finish in under a minute.

Builds a synthetic dataset (small JPEGs, VOC files with 1-4 boxes, a manifest of scraped and
imported records, validate/split/dedupe JSON and two training runs), then times the whole report
(collect + plots + HTML) and, as a baseline measured in the same run, the bare floor of that work:
parsing every VOC file once with dataset.voc.parse. It prints both and their ratio.

    .venv/bin/python bench/bench_report.py [--images 20000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path


from PIL import Image  # noqa: E402

from dataset import voc  # noqa: E402
from dataset.layout import Dataset  # noqa: E402
from dataset.report_page import write_report  # noqa: E402
from dataset.fixtures.scenes import jpeg_bytes  # noqa: E402

BUDGET_S = 60.0
SIZES = [(640, 480), (1280, 720), (1920, 1080), (800, 800), (1083, 1600), (320, 240)]


def build(root: Path, count: int, seed: int = 0) -> Dataset:
    """A dataset of `count` annotated images (and 2% pending), written fast: the bench measures
    the report, not the set-up, so plain writes are used here."""
    rng = random.Random(seed)
    dataset = Dataset.at(root).ensure()
    dataset.write_classes(["mask", "no_mask"])
    tiles = [jpeg_bytes(Image.new("RGB", (32, 24), tuple(rng.randrange(256) for _ in range(3))), 80)
             for _ in range(64)]
    lines, findings = [], []
    for index in range(count):
        name = f"img_{index:06d}.jpg"
        (dataset.images / name).write_bytes(tiles[index % len(tiles)])
        width, height = rng.choice(SIZES)
        scraped = index % 3 != 0
        record = {"file": name, "event": "added", "sha256": f"{index:064x}", "width": width,
                  "height": height, "origin": "scrape" if scraped else "import", "time": "2026-11-22T00:00:00Z"}
        if scraped:
            record.update(query=rng.choice(["face mask", "people wearing masks", "crowd street", "portrait"]),
                          engine=rng.choice(["requests", "selenium"]), rank=index,
                          murl=f"https://img{index % 40}.example.com/{name}",
                          purl=f"https://www.site{index % 57}.example.org/page/{index}",
                          title=f"photo {index}", filters=rng.choice(["", "license-Type-Any", "license-L2_L3"]))
        else:
            record["source_path"] = f"/data/import{index % 4}/{name}"
        lines.append(json.dumps(record))
        if index % 50 == 49:
            continue  # pending: not annotated yet
        objects = []
        for _ in range(rng.randint(1, 4)):
            w = rng.randint(max(4, width // 60), width // 2)
            h = int(w * rng.uniform(0.8, 1.6))
            x = rng.randint(1, max(1, width - w - 1))
            y = rng.randint(1, max(1, height - min(h, height - 2) - 1))
            objects.append(voc.VocObject(rng.choice(["mask", "no_mask"]), x, y, x + w, min(height, y + h)))
        annotation = voc.VocAnnotation(name, width, height, 3, objects, "images", str(dataset.images / name))
        dataset.annotation_for(name).write_bytes(voc.to_xml(annotation))
        if index % 40 == 0:
            findings.append({"file": f"annotations/{Path(name).stem}.xml", "field": "<size>",
                             "kind": "size-mismatch", "message": "differs from the image", "severity": "error"})
    dataset.manifest.write_text("\n".join(lines) + "\n")
    export = dataset.export
    (export / "validate.json").write_text(json.dumps({"summary": {"errors": len(findings)}, "findings": findings}))
    (export / "dedupe.json").write_text(json.dumps({"threshold": 6, "groups": 120, "quarantined": 130,
                                                    "exact": 80, "near": 50, "conflicts": [], "time": 1.0}))
    (export / "split.json").write_text(json.dumps({
        "val": 0.2, "seed": 0, "threshold": 6, "groups": 120, "images": {},
        "counts": {"train": {"images": int(count * 0.8), "boxes": {"mask": 20000, "no_mask": 20000}},
                   "val": {"images": int(count * 0.2), "boxes": {"mask": 5000, "no_mask": 5000}}},
        "leakage": {"near_duplicate_pairs": 40, "random_split_cross_pairs": 9}}))
    return dataset


def make_runs(runs: Path) -> None:
    for number in range(2):
        folder = runs / f"run-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["epoch,loss,regression_loss,classification_loss,val_mAP,AP_mask,AP_no_mask,lr"]
        rows += [f"{e},{2 - e * 0.1},{1 - e * 0.05},{1 - e * 0.05},{0.1 * e},{0.1 * e},{0.09 * e},1e-5"
                 for e in range(1, 9)]
        (folder / "log.csv").write_text("\n".join(rows) + "\n")
        (folder / "config.json").write_text(json.dumps({"backbone": "resnet50", "epochs": 8}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--keep", help="build the dataset here and keep it (default: a temp folder)")
    args, _ = p.parse_known_args(argv)  # make bench passes one BENCH_ARGS to every bench
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        started = time.monotonic()
        dataset = build(root / "data", args.images)
        make_runs(root / "runs")
        print(f"set-up: {args.images} images in {time.monotonic() - started:.1f}s")

        started = time.monotonic()
        boxes = sum(len(voc.parse(xml).objects) for xml in dataset.annotation_files())
        baseline = time.monotonic() - started

        started = time.monotonic()
        page, report = write_report(dataset, root / "runs", progress=False)
        elapsed = time.monotonic() - started
        numbers = report.numbers
        assert numbers["classes"]["total_boxes"] == boxes, "the report counted other boxes than the baseline"
        print(f"report: {numbers['images']['total']} images, {boxes} boxes, page {page.stat().st_size // 1024} KiB")
        print(f"baseline (parse every VOC file once): {baseline:.2f}s")
        print(f"report (collect + plots + HTML):      {elapsed:.2f}s  = {elapsed / baseline:.2f}x the baseline")
        verdict = "PASS" if elapsed < BUDGET_S else "FAIL"
        print(f"{verdict}: {elapsed:.1f}s for {args.images} images (budget {BUDGET_S:.0f}s)")
        return 0 if elapsed < BUDGET_S else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
