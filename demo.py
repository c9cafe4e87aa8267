"""`make demo`: maskset's main job on an embedded default.

With no network and no data of the user's, it renders a small sample dataset and runs every
stage on it through the same commands (and locks) a user's `make` targets run, then prints what
each stage did. STEPS below is the whole demo, in pipeline order.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from dataset import atomic, voc
from dataset.cli import Command, Var, call
from dataset.errors import MasksetError
from dataset.layout import Dataset
from dataset.results import Result

MARKER = ".maskset-demo"  # the demo only ever deletes a folder holding this file
QUERY = "people wearing face masks"
# Training from scratch (the demo downloads nothing), unfrozen: a random backbone is worth
# training. At the sample's own size (240x320) faces are 30-80 px, which RetinaNet's anchors
# match well. At LR 1e-3 a from-scratch ResNet50's classification head collapsed (mAP 0).
QUICK_TRAINING = dict(epochs=2, steps=6, batch=2, image_min_side=128, image_max_side=160, lr=1e-4)
FULL_TRAINING = dict(epochs=8, steps=15, batch=2, image_min_side=240, image_max_side=320, lr=3e-4, val_from=4)


@dataclass
class DemoContext:
    work: Path            # the demo's scratch folder (the sample source, the fake Bing's images ...)
    data: Dataset         # the demo dataset
    runs: Path            # where training runs go
    quick: bool = False   # smaller everything (used by the tests)
    notes: dict = field(default_factory=dict)  # what one step leaves for a later one


def _shown(result: Result) -> None:
    print(result.summary(), flush=True)


# -- the steps: each runs one stage and returns its one-line summary ------------------------------
def sample(ctx: DemoContext) -> str:
    """Render the labelled sample a curator would already have, with two labelling slips."""
    from dataset.fixtures.scenes import make_sample
    source = ctx.work / "sample-src"
    paths = make_sample(source, count=24 if ctx.quick else 110, size=(320, 240), seed=1, duplicates=3)
    _add_slips(source)
    ctx.notes["sample_src"] = source
    return f"{len(paths)} rendered images with VOC files in {source} (3 exact + 3 near duplicates, 2 slips)"


def _add_slips(source: Path) -> None:
    """A box dragged past the border and a <size> from another copy: what validate FIX=1 mends."""
    def box_past_border(root):
        root.find("object/bndbox/xmax").text = str(int(root.findtext("size/width")) + 9)

    def wrong_size(root):
        root.find("size/width").text = str(int(root.findtext("size/width")) * 2)

    for name, change in (("scene_0001.xml", box_past_border), ("scene_0002.xml", wrong_size)):
        atomic.write_bytes(source / name, voc.edited(source / name, change))


def scrape(ctx: DemoContext) -> str:
    """Scrape a fake Bing on 127.0.0.1 serving rendered scenes (one exact and one near copy among
    them, and one more exact copy on another 'site')."""
    from dataset.fixtures.scenes import make_sample
    from dataset.fixtures.fakebing import FakeBing
    images = make_sample(ctx.work / "fake-bing-site", count=4 if ctx.quick else 10, duplicates=1,
                         annotate=False, prefix="web")
    with FakeBing(page_size=5) as fake:
        for rank, path in enumerate(images):
            route = f"/photos/{rank}/{quote(path.name)}"
            fake.add_route(route, body=path.read_bytes())
            fake.add_result(fake.url(route) + f"?w=320&h=240&rank={rank}", title=f"{QUERY} {rank}",
                            purl=f"https://example.org/gallery?item={rank}&ref=demo")
        fake.add_result(fake.add_route("/mirror/first.jpg", body=images[0].read_bytes()),
                        title="the first photo, on another site")
        result = call("scrape", ctx.data, query=QUERY, limit=100, bing_url=fake.base, no_progress=ctx.quick)
    ctx.notes["scrape"] = {"results": result.results, "accepted": result.accepted,
                           "duplicates": result.duplicates, "files": result.files}
    _shown(result)
    return (f"{result.results} results, {result.accepted} images saved, {result.duplicates} "
            f"duplicates, {sum(result.rejected.values())} rejected (fake Bing on 127.0.0.1)")


def import_sample(ctx: DemoContext) -> str:
    result = call("import", ctx.data, src=str(ctx.notes["sample_src"]))
    return result.summary_line()


def dedupe(ctx: DemoContext) -> str:
    result = call("dedupe", ctx.data, quiet=ctx.quick)
    ctx.notes["dedupe"] = result.report
    _shown(result)
    return (f"{result.report['groups']} groups, {result.report['quarantined']} files quarantined, "
            f"{len(result.plan.conflicts)} conflicts")


def prelabel(ctx: DemoContext) -> str:
    """No run is trained yet, so this is the packaged MTCNN, calibrated on the sample's own
    annotations. The rendered faces are drawings, which MTCNN (trained on photos) finds only now
    and then; on real photos it drafts most faces (docs/prelabel.md has the numbers)."""
    result = call("prelabel", ctx.data, run="face", runs=str(ctx.runs))
    ctx.notes["prelabel"] = {"drafted": result.drafted, "boxes": result.boxes, "empty": result.empty}
    _shown(result)
    return (f"drafted {len(result.drafted)} images, {sum(result.boxes.values())} boxes "
            f"({len(result.empty)} images with no face found, {result.seconds_per_image:.2f} s/image)")


def validate(ctx: DemoContext) -> str:
    found = call("validate", ctx.data)
    _shown(found)
    fixed = call("validate", ctx.data, fix=True)
    _shown(fixed)
    return (f"{len(found.errors)} errors found, {len(found.errors) - len(fixed.errors)} fixed (originals in "
            f"quarantine/fixed/); {len(fixed.annotated)} annotated, {len(fixed.pending)} pending")


def export(ctx: DemoContext) -> str:
    return call("export", ctx.data).summary_line()


def split(ctx: DemoContext) -> str:
    result = call("split", ctx.data, val=0.25, test=0.2, seed=0)
    _shown(result)
    return (f"train {result.counts['train']['images']} / val {result.counts['val']['images']} / test "
            f"{result.counts['test']['images']} images; {result.random_cross_pairs} duplicate pairs a random "
            f"split would have leaked")


def train(ctx: DemoContext) -> str:
    """A short training run from scratch, then evaluate it and detect on one held-out (test) image."""
    settings = QUICK_TRAINING if ctx.quick else FULL_TRAINING
    trained = call("train", ctx.data, runs=str(ctx.runs), weights="none", train_seed=0,
                   freeze_backbone=False, random_transform=False, **settings)
    run = str(trained.run)
    ctx.notes["train_run"] = trained.run
    held_out = _first_image(ctx.data.export / "test.csv") or _first_image(ctx.data.export / "val.csv")
    if held_out:
        evaluation = call("evaluate", ctx.data, run=run, runs=str(ctx.runs)).numbers
        aps = ", ".join(f"{name} {c['ap']:.3f}" for name, c in evaluation["classes"].items())
        scores = (f"{evaluation['part']} mAP {evaluation['mAP']:.3f} ({aps})" if evaluation["mAP"] is not None
                  else f"no {evaluation['part']} boxes")
    else:
        scores = "no val or test part to evaluate on"
    image = held_out or _first_image(ctx.data.export / "train.csv")
    detected = call("detect", ctx.data, run=run, runs=str(ctx.runs), image=str(ctx.data.export / image),
                    score=0.3)
    ctx.notes["detections"] = detected.out
    shown = detected.out.relative_to(ctx.work) if detected.out.is_relative_to(ctx.work) else detected.out
    return f"trained {settings['epochs']} epochs, {scores}, detections in {shown}"


def _first_image(csv_path: Path) -> str | None:
    import csv
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            return next((row[0] for row in csv.reader(handle) if row), None)
    except FileNotFoundError:
        return None


def report(ctx: DemoContext) -> str:
    result = call("report", ctx.data, runs=str(ctx.runs))
    ctx.notes["report"] = result.page
    _shown(result)
    numbers = result.numbers
    images, classes = numbers["images"], numbers["classes"]
    per_class = ", ".join(f"{name} {count}" for name, count in classes["boxes"].items())
    latest = next((r for r in numbers["runs"] if isinstance(r.get("mAP"), (int, float))), None)
    m_ap = f", {latest.get('part') or 'val'} mAP {latest['mAP']:.3f}" if latest else ""
    return (f"{result.page}: {images['total']} images ({images['annotated']} annotated, {images['pending']} "
            f"pending, {images['quarantined']['total']} quarantined), {classes['total_boxes']} boxes "
            f"({per_class}), {numbers['validation']['errors']} validation errors{m_ap}")


def publish(ctx: DemoContext) -> str:
    """The dataset card, the attribution list and a reproducible package of it all."""
    card = call("card", ctx.data)
    _shown(card)
    package = call("package", ctx.data, quiet=ctx.quick)
    _shown(package)
    facts = card.facts
    return (f"{card.card.name} and {card.attribution.name} ({facts.images} images: "
            f"{sum(g['images'] for g in facts.scraped)} scraped, {sum(s['images'] for s in facts.imported)} "
            f"imported); {package.path.name}, {package.images} images, {package.annotations} annotations")


STEPS = [("sample", sample), ("scrape", scrape), ("import", import_sample), ("dedupe", dedupe),
         ("prelabel", prelabel), ("validate", validate), ("export", export), ("split", split),
         ("train", train), ("report", report), ("publish", publish)]


# -- running it ---------------------------------------------------------------------------------------
@dataclass
class DemoResult(Result):
    steps: list[tuple[str, str, float]]
    data: Path

    def summary(self) -> str:
        lines = ["", "=== demo summary ==="]
        lines += [f"{name:>9}  {summary}  ({seconds:.1f}s)" for name, summary, seconds in self.steps]
        lines.append(f"\nThe demo dataset is in {self.data}; open its export/report.html to look at it.")
        return "\n".join(lines)


def run_demo(work: Path, quick: bool = False, fresh: bool = True, steps=None) -> DemoResult:
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
    done = []
    for name, step in steps or STEPS:
        started = time.monotonic()
        print(f"\n=== demo: {name} ===", flush=True)
        done.append((name, step(ctx), time.monotonic() - started))
    return DemoResult(done, ctx.data.root)


def demo(_dataset, args) -> DemoResult:
    return run_demo(Path(args.demo_data), quick=args.quick)


COMMANDS = [
    Command("demo", "the main job on a rendered sample: every stage, no network", demo, (
        Var("DEMO_DATA", "the demo's own folder, replaced on each run (default demo-data)", default="demo-data"),
        Var("QUICK", "smaller sample and shorter training (the tests use it)", bool),
    ), data="none", lock=None),
]
