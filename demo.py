"""`make demo`: maskset's main job on an embedded default.

With no network and no data of the user's, it renders a small sample dataset and runs every
stage on it, then prints what each stage did. Each stage contributes one step, a module
`<package>/demo_step.py` with `run(ctx) -> str` (a one-line summary), run in pipeline order.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dataset import atomic
from dataset.errors import MasksetError
from dataset.layout import Dataset

MARKER = ".maskset-demo"  # the demo only ever deletes a folder holding this file

# Pipeline order. Each entry is "module" (its run(ctx)) or "module:function", returning a summary.
STEPS = [
    ("sample", "dataset.demo_steps:sample"),
    ("scrape", "scraping.demo_step"),
    ("import", "dataset.demo_steps:import_sample"),
    ("dedupe", "dataset.demo_step_dedupe"),
    ("prelabel", "annotation.demo_step"),
    ("validate", "dataset.demo_steps:validate_and_fix"),
    ("export", "dataset.demo_steps:export_csv"),
    ("split", "dataset.demo_steps:split_sets"),
    ("train", "training.demo_step"),
    ("report", "dataset.demo_step_report"),
]


@dataclass
class DemoContext:
    work: Path            # the demo's scratch folder (the sample source, the fake Bing's images ...)
    data: Dataset         # the demo dataset
    runs: Path            # where training runs go
    quick: bool = False   # smaller everything (used by the tests)
    notes: dict = field(default_factory=dict)  # what one step leaves for a later one


def run_demo(work: Path, quick: bool = False, fresh: bool = True, steps=None) -> list[tuple[str, str, float]]:
    work = Path(work).resolve()
    if fresh and work.exists() and any(work.iterdir()):
        if not (work / MARKER).exists():
            raise MasksetError(
                f"{work}: exists and was not made by `make demo` (no {MARKER} in it); the demo replaces "
                f"its folder on every run, so it will not touch this one. Pass DEMO_DATA=<a new folder>.")
        shutil.rmtree(work)  # only ever a folder the demo made (it holds the marker)
    work.mkdir(parents=True, exist_ok=True)
    atomic.write_text(work / MARKER, "made by `make demo`; replaced on every run\n")
    ctx = DemoContext(work=work, data=Dataset.at(work / "data"), runs=work / "runs", quick=quick)
    results = []
    for name, module_name in steps or STEPS:
        started = time.monotonic()
        print(f"\n=== demo: {name} ===", flush=True)
        module, _, function = module_name.partition(":")
        summary = getattr(importlib.import_module(module), function or "run")(ctx)
        results.append((name, summary, time.monotonic() - started))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data", help="the demo's own folder (replaced on each run)")
    parser.add_argument("--quick", action="store_true", help="smaller sample and shorter training")
    args = parser.parse_args(argv)
    try:
        results = run_demo(Path(args.data), quick=args.quick)
    except MasksetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n=== demo summary ===")
    for name, summary, seconds in results:
        print(f"{name:>9}  {summary}  ({seconds:.1f}s)")
    print(f"\nThe demo dataset is in {Path(args.data).resolve() / 'data'}; open its "
          f"export/report.html to look at it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
