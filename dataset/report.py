"""`make report`: the state of a dataset at a glance.

Reads only what the stages leave behind (images/, annotations/, manifest.jsonl, export/*.json,
runs/<id>/) and writes export/report.json (the numbers) and export/report.html (the same numbers
with plots, self-contained), then prints a short text summary. Every part is optional: a dataset
that was never split simply has no split section.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import atomic, manifest, voc
from .cli import dataset_from, parser, run
from .errors import MasksetError
from .layout import Dataset, DatasetLocked

# keras-retinanet's defaults: images are resized so the short side is 800 (long side at most
# 1333), and anchors come in these sizes, scales and ratios (AnchorParameters.default).
IMAGE_MIN_SIDE = 800
IMAGE_MAX_SIDE = 1333
ANCHOR_SIZES = (32, 64, 128, 256, 512)
ANCHOR_SCALES = (2 ** 0, 2 ** (1 / 3), 2 ** (2 / 3))
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
POSITIVE_IOU = 0.5  # keras-retinanet's positive_overlap: a box with no anchor above it is never learned
MAX_RUNS = 5


@dataclass
class Boxes:
    """One row per box, as numpy columns (fast for 100k+ boxes)."""
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, int))   # index into DatasetReport.class_names
    rel_w: np.ndarray = field(default_factory=lambda: np.zeros(0))      # box width / image width
    rel_h: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scaled_side: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sqrt(area) after resizing, px
    best_iou: np.ndarray = field(default_factory=lambda: np.zeros(0))     # best anchor IoU, anchor centred
    aspect: np.ndarray = field(default_factory=lambda: np.zeros(0))       # height / width in pixels
    image: np.ndarray = field(default_factory=lambda: np.zeros(0, int))   # index into the image list


@dataclass
class DatasetReport:
    numbers: dict                                    # everything in report.json
    class_names: list[str] = field(default_factory=list)
    boxes: Boxes = field(default_factory=Boxes)
    image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (width, height)
    boxes_per_image: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    runs: list[dict] = field(default_factory=list)  # with their log rows, for plotting


# -- anchors ----------------------------------------------------------------------------------
def anchor_shapes() -> np.ndarray:
    """(width, height) of every anchor shape, as keras-retinanet's generate_anchors makes them."""
    shapes = []
    for size in ANCHOR_SIZES:
        for scale in ANCHOR_SCALES:
            area = (size * scale) ** 2
            for ratio in ANCHOR_RATIOS:
                width = np.sqrt(area / ratio)
                shapes.append((width, width * ratio))
    return np.array(shapes)


def resize_scale(width, height, min_side=IMAGE_MIN_SIDE, max_side=IMAGE_MAX_SIDE) -> np.ndarray:
    """keras-retinanet's compute_resize_scale, vectorised."""
    width, height = np.asarray(width, float), np.asarray(height, float)
    scale = min_side / np.minimum(width, height)
    return np.where(np.maximum(width, height) * scale > max_side, max_side / np.maximum(width, height), scale)


def best_anchor_iou(box_w: np.ndarray, box_h: np.ndarray) -> np.ndarray:
    """The best IoU any anchor shape reaches with each box when centred on it (the best case:
    on the real stride grid it is lower). Below POSITIVE_IOU the box gets no positive anchor."""
    anchors = anchor_shapes()
    w, h = box_w[:, None], box_h[:, None]
    inter = np.minimum(w, anchors[:, 0]) * np.minimum(h, anchors[:, 1])
    union = w * h + anchors[:, 0] * anchors[:, 1] - inter
    if len(box_w) == 0:
        return np.zeros(0)
    return (inter / np.maximum(union, 1e-9)).max(axis=1)


def tiny_mask(boxes: Boxes) -> np.ndarray:
    """Boxes smaller than the smallest anchor that no anchor shape covers at the positive IoU."""
    # degenerate boxes (zero width or height) are validate's business, not tiny ones
    return (boxes.best_iou < POSITIVE_IOU) & (boxes.scaled_side < ANCHOR_SIZES[0]) & (boxes.scaled_side > 0)


# -- reading what the stages wrote ------------------------------------------------------------
def _read_json(path: Path, problems: list[str]):
    """A stage's JSON file, or None if absent; an unreadable one is noted, never fatal."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        problems.append(f"{path}: cannot read ({error}); re-run the stage that writes it.")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object; re-run the stage that writes it.")
        return None
    return data


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _newest_mtime(folder: Path) -> float:
    """The last change in a folder: a file written, or one added or removed (the folder's own time)."""
    newest = _mtime(folder)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.startswith("."):
                    newest = max(newest, entry.stat().st_mtime)
    except OSError:
        pass
    return newest


def _int(value, default=0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _site(record: dict) -> str:
    for key in ("purl", "murl"):
        host = urlsplit(str(record.get(key) or "")).hostname
        if host:
            return host[4:] if host.startswith("www.") else host
    return "unknown"


def _filters(value) -> str:
    if value in (None, "", [], {}):
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return {"min": float(q[0]), "p5": float(q[1]), "median": float(q[2]), "p95": float(q[3]),
            "max": float(q[4]), "mean": float(np.mean(values))}


def _sorted_counts(counter: Counter) -> dict:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


# -- sections ---------------------------------------------------------------------------------
def _declared_classes(dataset: Dataset, problems: list[str]) -> list[str]:
    if not dataset.classes_file.exists():
        return []
    try:
        return dataset.classes()
    except MasksetError as error:
        problems.append(str(error))
        return []


def _images_and_boxes(dataset: Dataset, state: dict, declared: list[str], min_side: int, max_side: int,
                      progress: bool):
    """Walk images/ and their VOC files once: counts, sizes and the box table."""
    images = dataset.image_files()
    class_index: dict[str, int] = {name: i for i, name in enumerate(declared)}
    box_cls, box_w, box_h, box_iw, box_ih, box_image = [], [], [], [], [], []
    sizes, per_image = [], []
    annotated = drafts = empty = difficult = 0
    pending: list[str] = []
    parse_errors: list[dict] = []
    images_per_class: Counter = Counter()
    seen_xml = set()

    for number, image in enumerate(tqdm(images, desc="report", unit="img", disable=not progress)):
        xml = dataset.annotation_for(image)
        record = state.get(image.name, {})
        width, height = _int(record.get("width")), _int(record.get("height"))
        parsed = None
        if xml.exists():
            seen_xml.add(xml.name)
            try:
                parsed = voc.parse(xml)
            except voc.VocError as error:
                parse_errors.append({"file": f"annotations/{xml.name}", "field": error.field,
                                     "kind": "unparsable", "message": error.detail, "severity": "error"})
        if parsed is not None and parsed.width and parsed.height:
            width, height = parsed.width, parsed.height
        if not (width and height):
            try:
                with Image.open(image) as opened:  # header only: no decode
                    width, height = opened.size
            except OSError:
                width = height = 0
        if width and height:
            sizes.append((width, height))
        if parsed is None:
            if not xml.exists():
                pending.append(image.name)
            continue
        if parsed.draft:
            drafts += 1  # a machine draft is not annotated until a person saves it
            continue
        annotated += 1
        per_image.append(len(parsed.objects))
        if not parsed.objects:
            empty += 1
        names = set()
        for obj in parsed.objects:
            index = class_index.setdefault(obj.name, len(class_index))
            names.add(obj.name)
            difficult += obj.difficult
            box_cls.append(index)
            box_w.append(obj.xmax - obj.xmin)  # keras-retinanet: both corners minus 1
            box_h.append(obj.ymax - obj.ymin)
            box_iw.append(width or np.nan)
            box_ih.append(height or np.nan)
            box_image.append(number)
        images_per_class.update(names)

    orphans = sorted(p.name for p in dataset.annotation_files() if p.name not in seen_xml)
    class_names = list(class_index)
    w, h = np.array(box_w, float), np.array(box_h, float)
    iw, ih = np.array(box_iw, float), np.array(box_ih, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = resize_scale(iw, ih, min_side, max_side) if len(w) else np.zeros(0)
        boxes = Boxes(cls=np.array(box_cls, int), rel_w=w / iw, rel_h=h / ih,
                      scaled_side=np.sqrt(np.clip(w * h, 0, None)) * scale,
                      best_iou=best_anchor_iou(w * scale, h * scale), aspect=h / w,
                      image=np.array(box_image, int))
    return {
        "images": images, "class_names": class_names, "declared": declared, "boxes": boxes,
        "sizes": np.array(sizes, float).reshape(-1, 2), "per_image": np.array(per_image, int),
        "annotated": annotated, "drafts": drafts, "empty": empty, "difficult": difficult,
        "pending": pending, "parse_errors": parse_errors, "orphans": orphans,
        "images_per_class": images_per_class,
    }


def _quarantine(dataset: Dataset, state: dict) -> dict:
    """Quarantined files by reason, from the manifest (where each stage records its moves), and
    how many files each quarantine/ folder keeps (duplicates, originals of fixes, history)."""
    by_reason: Counter = Counter()
    for record in state.values():
        if record.get("event") == manifest.QUARANTINED:
            by_reason[record.get("reason") or "unspecified"] += 1
    folders: Counter = Counter()
    if dataset.quarantine.is_dir():
        for path in dataset.quarantine.rglob("*"):
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".jsonl":
                folders[path.relative_to(dataset.quarantine).parts[0] if len(
                    path.relative_to(dataset.quarantine).parts) > 1 else "."] += 1
    return {"total": sum(by_reason.values()), "by_reason": _sorted_counts(by_reason),
            "folders": _sorted_counts(folders)}


def _sources(state: dict, present: set[str]) -> dict:
    """Where the images now in images/ came from (manifest 'added' records)."""
    origin, query, engine, site, filters, imports = (Counter() for _ in range(6))
    for name in present:
        record = state.get(name)
        if not record:
            origin["not in manifest"] += 1
            continue
        kind = record.get("origin") or ("scrape" if record.get("query") else "unknown")
        origin[kind] += 1
        if kind == "scrape" or record.get("query"):
            query[record.get("query") or "unknown"] += 1
            engine[record.get("engine") or "unknown"] += 1
            site[_site(record)] += 1
            filters[_filters(record.get("filters"))] += 1
        if kind == "import":
            source = record.get("source_path")
            imports[str(Path(source).parent) if source else "unknown"] += 1
    return {"origin": _sorted_counts(origin), "query": _sorted_counts(query),
            "engine": _sorted_counts(engine), "site": _sorted_counts(site),
            "filters": _sorted_counts(filters), "import_sources": _sorted_counts(imports)}


def _validation(dataset: Dataset, data: dict | None, parse_errors: list[dict], newest_change: float) -> dict:
    """validate.json's findings plus the VOC files this report could not parse."""
    findings = []
    if data:
        findings = [f for f in data.get("findings") or [] if isinstance(f, dict)]
    known = {str(f.get("file")) for f in findings}
    # validate already names unparsable files; add ours only where it does not (or never ran)
    extra = [p for p in parse_errors if p["file"] not in known]
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for finding in findings + extra:
        by_kind[str(finding.get("kind") or "other")][str(finding.get("severity") or "error")] += 1
    summary = (data or {}).get("summary") or {}
    return {
        "ran": data is not None,
        "stale": bool(data) and _mtime(dataset.export / "validate.json") < newest_change,
        "summary": summary if isinstance(summary, dict) else {},
        "errors": sum(c.get("error", 0) for c in by_kind.values()),
        "warnings": sum(c.get("warning", 0) for c in by_kind.values()),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items(), key=lambda kv: -sum(kv[1].values()))},
        "findings": findings + extra,
        "unparsable_here": len(parse_errors),
    }


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                clean = {}
                for key, value in row.items():
                    if key is None:
                        continue
                    try:
                        clean[key.strip()] = float(value)
                    except (TypeError, ValueError):
                        clean[key.strip()] = value
                rows.append(clean)
    except (OSError, csv.Error):
        return []
    return rows


def _runs(runs_dir: Path | None, problems: list[str], limit: int) -> list[dict]:
    """The latest training runs (newest first): val mAP and AP per class, and their logs."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    candidates = [p for p in Path(runs_dir).iterdir() if p.is_dir() and not p.name.startswith(".")
                  and any((p / f).exists() for f in ("config.json", "log.csv", "evaluation.json"))]
    # newest first by the config's time, as training.runs.latest_run orders them (the log's for
    # an older run without a config)
    candidates.sort(key=lambda p: (_mtime(p / "config.json") or _mtime(p / "log.csv")
                                   or _mtime(p / "evaluation.json"), p.name), reverse=True)
    runs = []
    for folder in candidates[:limit]:
        log = _read_log(folder / "log.csv")
        evaluation = _read_json(folder / "evaluation.json", problems) or {}
        config = _read_json(folder / "config.json", problems) or {}
        last = log[-1] if log else {}
        classes = {}
        for name, entry in (evaluation.get("classes") or {}).items():
            if isinstance(entry, dict):
                classes[name] = {"ap": entry.get("ap"), "instances": entry.get("instances")}
        if not classes:
            classes = {k[3:]: {"ap": v, "instances": None} for k, v in last.items()
                       if k.startswith("AP_") and isinstance(v, float)}
        m_ap = evaluation.get("mAP")
        if m_ap is None and isinstance(last.get("val_mAP"), float):
            m_ap = last["val_mAP"]
        maps = [r["val_mAP"] for r in log if isinstance(r.get("val_mAP"), float)]
        runs.append({
            "id": folder.name, "path": str(folder), "mAP": m_ap, "classes": classes,
            "epochs": len(log), "best_val_mAP": max(maps) if maps else None,
            "backbone": config.get("backbone"), "evaluated": bool(evaluation),
            "curves_png": str(folder / "curves.png") if (folder / "curves.png").exists() else None,
            "pr_curve_png": str(folder / "pr_curve.png") if (folder / "pr_curve.png").exists() else None,
            "log": log,
        })
    return runs


# -- the report -------------------------------------------------------------------------------
def collect(dataset: Dataset, runs_dir: Path | str | None = None, min_side: int = IMAGE_MIN_SIDE,
            max_side: int = IMAGE_MAX_SIDE, max_runs: int = MAX_RUNS, progress: bool = True) -> DatasetReport:
    """Read the dataset and what the stages wrote about it; nothing is written."""
    dataset.require()
    started = time.monotonic()
    problems: list[str] = []
    try:
        records = [r for r in manifest.read_records(dataset) if isinstance(r, dict) and "file" in r]
    except MasksetError as error:
        problems.append(str(error))
        records = []
    state = manifest.state(dataset, records)
    walk = _images_and_boxes(dataset, state, _declared_classes(dataset, problems), min_side, max_side, progress)
    boxes: Boxes = walk["boxes"]
    names = walk["class_names"]
    present = {p.name for p in walk["images"]}
    newest_change = max(_newest_mtime(dataset.images), _newest_mtime(dataset.annotations))

    box_counts = Counter({names[i]: int(n) for i, n in zip(*np.unique(boxes.cls, return_counts=True))})
    tiny = tiny_mask(boxes)
    tiny_counts = Counter({names[i]: int(n) for i, n in zip(*np.unique(boxes.cls[tiny], return_counts=True))})
    sizes = walk["sizes"]
    per_image = walk["per_image"]

    dedupe = _read_json(dataset.export / "dedupe.json", problems)
    split = _read_json(dataset.export / "split.json", problems)
    validate = _read_json(dataset.export / "validate.json", problems)
    runs = _runs(Path(runs_dir) if runs_dir else None, problems, max_runs)

    numbers = {
        "dataset": str(dataset.root),
        "generated": manifest.now(),
        "images": {
            "total": len(walk["images"]),
            "annotated": walk["annotated"],
            # as validate counts: no readable annotation by a person yet
            "pending": len(walk["pending"]) + walk["drafts"] + len(walk["parse_errors"]),
            "no_annotation": len(walk["pending"]),
            "drafts": walk["drafts"],
            "unparsable": len(walk["parse_errors"]),
            "empty": walk["empty"],
            "annotations_without_image": len(walk["orphans"]),
            "quarantined": _quarantine(dataset, state),
            "width": _stats(sizes[:, 0]), "height": _stats(sizes[:, 1]),
            "min_side": _stats(sizes.min(axis=1)) if len(sizes) else {},
        },
        "classes": {
            "declared": walk["declared"],
            "undeclared": [n for n in names if walk["declared"] and n not in walk["declared"]],
            "boxes": {n: box_counts.get(n, 0) for n in names},
            "images": {n: walk["images_per_class"].get(n, 0) for n in names},
            "total_boxes": int(len(boxes.cls)),
            "difficult": walk["difficult"],
            "boxes_per_image": {str(k): int(v) for k, v in zip(*np.unique(per_image, return_counts=True))},
            "relative_width": _stats(boxes.rel_w[np.isfinite(boxes.rel_w)]),
            "relative_height": _stats(boxes.rel_h[np.isfinite(boxes.rel_h)]),
            "aspect_ratio_h_over_w": _stats(boxes.aspect[np.isfinite(boxes.aspect)]),
            "tiny": {"count": int(tiny.sum()), "by_class": {n: tiny_counts.get(n, 0) for n in names},
                     "files": [walk["images"][i].name for i in np.unique(boxes.image[tiny])[:100]],
                     "image_min_side": min_side, "image_max_side": max_side,
                     "smallest_anchor": ANCHOR_SIZES[0], "positive_iou": POSITIVE_IOU},
        },
        "sources": _sources(state, present),
        "duplicates": dedupe,
        "validation": _validation(dataset, validate, walk["parse_errors"], newest_change),
        "split": split,
        "split_stale": bool(split) and _mtime(dataset.export / "split.json") < newest_change,
        "runs": [{k: v for k, v in r.items() if k != "log"} for r in runs],
        "pending_files": walk["pending"][:200],
        "orphan_annotations": walk["orphans"][:200],
        "problems": problems,
    }
    numbers["seconds"] = round(time.monotonic() - started, 3)
    return DatasetReport(numbers=numbers, class_names=names, boxes=boxes, image_sizes=sizes,
                         boxes_per_image=per_image, runs=runs)


def summary_text(report: DatasetReport) -> str:
    """A few lines for the terminal."""
    n = report.numbers
    images, classes = n["images"], n["classes"]
    quarantine = images["quarantined"]
    pending_parts = [f"{count} {label}" for count, label in (
        (images["no_annotation"], "without a VOC file"), (images["drafts"], "machine drafts"),
        (images["unparsable"], "with an unreadable VOC file")) if count]
    lines = [
        f"images: {images['total']} ({images['annotated']} annotated, {images['pending']} pending"
        + (f": {', '.join(pending_parts)}" if pending_parts else "") + "), "
        f"{quarantine['total']} quarantined"
        + (f" ({', '.join(f'{k} {v}' for k, v in quarantine['by_reason'].items())})" if quarantine["total"] else ""),
        f"boxes: {classes['total_boxes']}"
        + (" (" + ", ".join(f"{k} {v} in {classes['images'][k]} images" for k, v in classes["boxes"].items())
           + ")" if classes["boxes"] else "")
        + f"; {classes['tiny']['count']} too small for RetinaNet's smallest anchor",
    ]
    if not images["total"]:
        lines.append("no images yet: `make scrape QUERY=..` or `make import SRC=..` brings some in")
    if classes["undeclared"]:
        lines.append(f"classes not in classes.txt: {', '.join(classes['undeclared'])}")
    origin = n["sources"]["origin"]
    if origin:
        lines.append("sources: " + ", ".join(f"{k} {v}" for k, v in origin.items()))
    if n["duplicates"]:
        d = n["duplicates"]
        lines.append(f"duplicates: {d.get('groups', 0)} groups, {d.get('quarantined', 0)} quarantined, "
                     f"{len(d.get('conflicts') or [])} annotation conflicts")
    v = n["validation"]
    lines.append(f"validation: {v['errors']} errors, {v['warnings']} warnings"
                 + ("" if v["ran"] else " (make validate not run yet)")
                 + (" (stale: files changed since; run make validate)" if v["stale"] else ""))
    if n["split"]:
        counts = n["split"].get("counts") or {}
        lines.append("split: " + ", ".join(f"{part} {(counts.get(part) or {}).get('images', 0)} images"
                                            for part in ("train", "val"))
                     + f", {(n['split'].get('leakage') or {}).get('near_duplicate_pairs', 0)} near-duplicate "
                       f"pairs kept on one side")
    for r in n["runs"][:3]:
        m_ap = f"{r['mAP']:.3f}" if isinstance(r["mAP"], (int, float)) else "n/a"
        lines.append(f"run {r['id']}: val mAP {m_ap} after {r['epochs']} epochs")
    for problem in n["problems"]:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)


def write_report(dataset: Dataset, runs_dir: Path | str | None = None, progress: bool = True,
                 **options) -> tuple[Path, DatasetReport]:
    """Collect, then write export/report.json and export/report.html (atomically)."""
    from .report_html import render  # matplotlib is only needed here

    report = collect(dataset, runs_dir, progress=progress, **options)
    dataset.export.mkdir(parents=True, exist_ok=True)
    atomic.write_json(dataset.export / "report.json", report.numbers)
    page = atomic.write_text(dataset.export / "report.html", render(report, dataset))
    return page, report


def main(argv=None) -> int:
    p = parser("Write export/report.html and report.json: the dataset at a glance.")
    p.add_argument("--runs", default="runs", help="the training runs folder (make's RUNS=, default: runs)")
    p.add_argument("--image-min-side", type=int, default=IMAGE_MIN_SIDE,
                   help="training's image-min-side, for the tiny-box count (default 800)")
    p.add_argument("--image-max-side", type=int, default=IMAGE_MAX_SIDE)
    p.add_argument("--max-runs", type=int, default=MAX_RUNS, help="how many of the latest runs to show")
    args = p.parse_args(argv)
    dataset = dataset_from(args)
    dataset.require()
    options = dict(min_side=args.image_min_side, max_side=args.image_max_side, max_runs=args.max_runs)
    try:
        # holding the lock keeps a writer from changing the dataset halfway through the report
        with dataset.lock("report"):
            page, report = write_report(dataset, args.runs, **options)
    except DatasetLocked as busy:
        print(f"warning: {busy} The report is a snapshot taken while it writes.", file=sys.stderr)
        page, report = write_report(dataset, args.runs, **options)
    print(summary_text(report))
    print(f"report: {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
