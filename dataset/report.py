"""`make report`: the state of a dataset at a glance (the numbers; report_page.py draws them).

Reads only what the stages leave behind (images/, annotations/, manifest.jsonl, export/*.json,
runs/<id>/ of this dataset) and returns a DatasetReport: its numbers go to export/report.json,
report_page.py renders them as export/report.html, and summary() is the terminal's few lines.
Every part is optional: a dataset that was never split simply has no split section.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from training import runs as training_runs
from training.geometry import (ANCHOR_SIZES, IMAGE_MAX_SIDE, IMAGE_MIN_SIDE, POSITIVE_IOU,
                               best_anchor_iou, resize_scale)

from . import manifest, voc
from . import progress as progress_bars
from .dedupe import EXACT, NEAR
from .errors import MasksetError
from .images import NotAnImage, open_image
from .layout import Dataset
from .results import Result

MAX_RUNS = 5
DUPLICATE_REASONS = (EXACT, NEAR)


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
class DatasetReport(Result):
    numbers: dict                                    # everything in report.json
    class_names: list[str] = field(default_factory=list)
    boxes: Boxes = field(default_factory=Boxes)
    image_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (width, height)
    boxes_per_image: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    runs: list[dict] = field(default_factory=list)  # with their log rows, for plotting
    page: Path | None = None                        # export/report.html, once written

    def summary(self) -> str:
        return summary_text(self) + (f"\nreport: {self.page}" if self.page else "")

    def to_json(self) -> dict:
        return self.numbers


# -- anchors ----------------------------------------------------------------------------------
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
    if value is None or (isinstance(value, float) and value != value) or value in ("", [], {}):
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

    for number, image in enumerate(progress_bars.bar(images, desc="report", enabled=progress)):
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
                with open_image(image) as opened:  # header only: no decode
                    width, height = opened.size
            except (NotAnImage, OSError):
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


def _quarantine(dataset: Dataset, table: pd.DataFrame) -> dict:
    """Quarantined files by reason, from the manifest (where each stage records its moves), and
    how many files each quarantine/ folder keeps (duplicates, originals of fixes, history)."""
    if len(table) and "event" in table:
        held = table[table["event"] == manifest.QUARANTINED]
        reasons = held.get("reason", pd.Series(index=held.index, dtype=object))
        by_reason = Counter(reasons.fillna("unspecified").replace("", "unspecified").astype(str))
    else:
        by_reason = Counter()
    folders: Counter = Counter()
    if dataset.quarantine.is_dir():
        for path in dataset.quarantine.rglob("*"):
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".jsonl":
                parts = path.relative_to(dataset.quarantine).parts
                folders[parts[0] if len(parts) > 1 else "."] += 1
    return {"total": sum(by_reason.values()), "by_reason": _sorted_counts(by_reason),
            "folders": _sorted_counts(folders)}


def _sources(table: pd.DataFrame, present: set[str]) -> dict:
    """Where the images now in images/ came from: the manifest table's rows for them, counted
    per origin, query, engine, site, search filter and import folder."""
    frame = table.reindex(sorted(present))
    column = lambda name: frame[name] if name in frame else pd.Series(None, frame.index, object)  # noqa: E731
    listed = frame.index.isin(table.index)
    has_query = column("query").notna()
    origin = column("origin").where(column("origin").fillna("") != "",
                                    has_query.map({True: "scrape", False: "unknown"}))
    origin[~listed] = "not in manifest"
    scraped = listed & ((origin == "scrape") | has_query)

    def tally(values) -> dict:
        return _sorted_counts(Counter(values))

    def named(series) -> pd.Series:
        return series.fillna("unknown").replace("", "unknown").astype(str)

    return {"origin": tally(origin),
            "query": tally(named(column("query")[scraped])),
            "engine": tally(named(column("engine")[scraped])),
            "site": tally(_site(r) for r in frame[scraped].to_dict("records")),
            "filters": tally(_filters(v) for v in column("filters")[scraped]),
            "import_sources": tally(str(Path(v).parent) if isinstance(v, str) and v else "unknown"
                                    for v in column("source_path")[origin == "import"])}


def _source_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Each manifest file's source: the folder (or file) it was imported from, with the import's
    format, or "scrape", or its origin; one row per file."""
    column = lambda name: table[name] if name in table else pd.Series(None, table.index, object)  # noqa: E731
    folder = column("source_path").map(lambda v: str(Path(v).parent) if isinstance(v, str) and v else None)
    imported = column("import_source").where(column("import_source").notna(), folder)
    scraped = (column("origin") == "scrape") | column("query").notna()
    label = imported.where(column("origin") == "import",
                           pd.Series("scrape", table.index).where(scraped, column("origin").fillna("unknown")))
    return pd.DataFrame({"source": label.fillna("unknown").astype(str),
                         "format": column("import_format").where(column("origin") == "import", None)})


def _per_source(table: pd.DataFrame, present: set[str], boxes_per_file: Counter) -> dict:
    """Images now in images/, their boxes, and the duplicates dedupe quarantined, per source: how
    much each source brought, and how much of it another source already had."""
    if not len(table):
        return {}
    column = lambda name: table[name] if name in table else pd.Series(None, table.index, object)  # noqa: E731
    frame = _source_labels(table)
    here = frame.index.isin(list(present))
    frame["images"] = here.astype(int)
    frame["boxes"] = frame.index.map(lambda f: boxes_per_file.get(f, 0)).where(here, 0)
    frame["duplicates"] = (~here & (column("event") == manifest.QUARANTINED)
                           & column("reason").isin(DUPLICATE_REASONS)).astype(int)
    other = column("duplicate_of").map(frame["source"])
    frame["duplicates_of_other_sources"] = (frame["duplicates"].astype(bool) & other.notna()
                                            & (other != frame["source"])).astype(int)
    counts = frame.groupby("source")[["images", "boxes", "duplicates", "duplicates_of_other_sources"]].sum()
    formats = frame.dropna(subset=["format"]).groupby("source")["format"].first()
    per = {source: {"format": formats.get(source), **{k: int(v) for k, v in row.items()}}
           for source, row in counts.iterrows()}
    return dict(sorted(per.items(), key=lambda kv: (-kv[1]["images"], kv[0])))


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


def _split_summary(split: dict | None, dataset: Dataset) -> dict | None:
    """split.json without its per-image lists (which part each image is in, its sha256, the
    duplicate groups): the parts' counts, the settings, the leakage prevented, how many images are
    held out; and from the split's log, when and how it last ran and the drift since the run before."""
    if not split:
        return split
    from .split import last_run
    per_image = ("parts", "images", "sha256", "departed", "near_duplicate_groups", "held_out")
    summary = {k: v for k, v in split.items() if k not in per_image}
    summary["held_out"] = len(split.get("held_out") or {})
    if isinstance(split.get("folds"), dict):
        summary["folds"] = {k: v for k, v in split["folds"].items() if k != "images"}
    last = last_run(dataset) or {}
    summary.update({k: last.get(k) for k in ("time", "mode", "drift") if k not in summary})
    return summary


def _detectors(runs: list[dict]) -> dict:
    """The latest evaluation of each detector (RetinaNet, two-stage) among the runs, and whether
    they scored the same images (the same part, the same digest)."""
    latest = {}
    for r in runs:  # newest first
        if r.get("confusion") and r.get("detector") not in latest:
            latest[r.get("detector")] = r
    scored = {(r.get("part"), r.get("scored")) for r in latest.values()}
    return {"latest": {kind: r["id"] for kind, r in latest.items()},
            "same_images": len(latest) > 1 and len(scored) == 1 and None not in next(iter(scored))}


# -- the report -------------------------------------------------------------------------------
def collect(dataset: Dataset, runs_dir: Path | str | None = None, min_side: int = IMAGE_MIN_SIDE,
            max_side: int = IMAGE_MAX_SIDE, max_runs: int = MAX_RUNS, progress: bool = True) -> DatasetReport:
    """Read the dataset and what the stages wrote about it; nothing is written."""
    started = time.monotonic()
    problems: list[str] = []
    try:
        records = manifest.read_records(dataset)
    except MasksetError as error:
        problems.append(str(error))
        records = []
    state = manifest.state(dataset, records)
    table = manifest.frame(dataset, records)
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
    split = _split_summary(_read_json(dataset.export / "split.json", problems), dataset)
    validate = _read_json(dataset.export / "validate.json", problems)
    runs = [training_runs.summary(folder)
            for folder in training_runs.recent(runs_dir, data=dataset.root, limit=max_runs)]

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
            "quarantined": _quarantine(dataset, table),
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
        "sources": {**_sources(table, present),
                    "per_source": _per_source(table, present, Counter(
                        {walk["images"][i].name: int(n) for i, n in zip(*np.unique(boxes.image, return_counts=True))}))},
        "duplicates": dedupe,
        "validation": _validation(dataset, validate, walk["parse_errors"], newest_change),
        "split": split,
        "split_stale": bool(split) and _mtime(dataset.export / "split.json") < newest_change,
        "runs": [{k: v for k, v in r.items() if k != "log"} for r in runs],
        "detectors": _detectors(runs),
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
    per_source = n["sources"].get("per_source") or {}
    if len(per_source) > 1:
        for name, s in per_source.items():
            lines.append(f"source {name}" + (f" ({s['format']})" if s["format"] else "")
                         + f": {s['images']} images, {s['boxes']} boxes, {s['duplicates']} duplicates quarantined"
                         + (f" ({s['duplicates_of_other_sources']} of another source's image)"
                            if s["duplicates_of_other_sources"] else ""))
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
        parts = [p for p in ("train", "val", "test") if p != "test" or (counts.get("test") or {}).get("images")]
        lines.append("split: " + ", ".join(f"{part} {(counts.get(part) or {}).get('images', 0)} images"
                                            for part in parts)
                     + f", {(n['split'].get('leakage') or {}).get('near_duplicate_pairs', 0)} duplicate "
                       f"pairs kept in one part"
                     + (f", {n['split']['held_out']} held out" if n["split"].get("held_out") else ""))
        drift = n["split"].get("drift")
        if isinstance(drift, dict):
            added = sum((drift.get("added") or {}).values())
            left = sum((drift.get("left") or {}).values())
            lines.append(f"since the split before ({drift.get('since') or '?'}): {added} new images placed, "
                         f"{left} left")
    for r in n["runs"][:3]:
        m_ap = f"{r['mAP']:.3f}" if isinstance(r["mAP"], (int, float)) else "n/a"
        kind = " (two-stage)" if r.get("detector") == training_runs.TWO_STAGE else ""
        lines.append(f"run {r['id']}{kind}: {r.get('part') or 'val'} mAP {m_ap} after {r['epochs']} epochs")
    detectors = n.get("detectors") or {}
    if len(detectors.get("latest") or {}) > 1:
        by_id = {r["id"]: r for r in n["runs"]}
        shown = [f"{name} {detectors['latest'][kind]} mAP {by_id[detectors['latest'][kind]]['mAP']:.3f}"
                 for kind, name in ((training_runs.RETINANET, "RetinaNet"), (training_runs.TWO_STAGE, "two-stage"))
                 if isinstance(by_id.get(detectors["latest"].get(kind), {}).get("mAP"), (int, float))]
        lines.append("detectors side by side: " + ", ".join(shown)
                     + ("" if detectors.get("same_images") else " (warning: not scored on the same images)"))
    for problem in n["problems"]:
        lines.append(f"warning: {problem}")
    return "\n".join(lines)
