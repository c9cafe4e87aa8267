"""export/report.html from a DatasetReport: tables and matplotlib plots, embedded as base64 PNG
so the page is one self-contained file (it opens anywhere, it can be mailed). write_report()
collects, renders and writes report.json and report.html.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402

from training.geometry import ANCHOR_RATIOS, ANCHOR_SIZES, POSITIVE_IOU  # noqa: E402

from . import atomic, html  # noqa: E402
from .html import card as _card, esc as escape, grid as _grid, section as _section  # noqa: E402
from .html import table as _table  # noqa: E402
from .layout import Dataset  # noqa: E402
from .report import DatasetReport, collect, tiny_mask  # noqa: E402

log = logging.getLogger(__name__)

MAX_FINDINGS = 300   # rows in the findings table; the rest stay in validate.json
MAX_BARS = 15        # bars in a "per query/site" plot
MAX_POINTS = 6000    # points in a scatter plot (a random sample beyond that)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


# -- plotting helpers -------------------------------------------------------------------------
def _figure(width=5.2, height=3.0) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig: Figure, alt: str) -> str:
    return html.figure_png(fig, alt)


def _file_png(path: str | None, alt: str) -> str:
    return html.png_file(path, alt)


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _bars(counts: dict, title: str, xlabel: str = "images", colour="#1f77b4") -> str:
    """A horizontal bar chart of the largest counts (the rest summed as 'other')."""
    items = list(counts.items())
    if len(items) <= 3:  # a bar chart of one to three bars says no more than a small table
        return f'<h3>{escape(title)}</h3>' + _table(["", xlabel], [[str(k), v] for k, v in items])
    if len(items) > MAX_BARS:
        items = items[:MAX_BARS - 1] + [(f"{len(items) - MAX_BARS + 1} others",
                                         sum(v for _, v in items[MAX_BARS - 1:]))]
    if not items:
        return ""
    fig, ax = _figure(5.2, max(1.8, 0.6 + 0.28 * len(items)))
    labels = [str(k) if len(str(k)) <= 38 else str(k)[:35] + "..." for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    ax.barh(labels, values, color=colour)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(values) * 1.18)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig, title)


# -- links --------------------------------------------------------------------------------
def _link(export: Path, root: Path, name: str) -> str:
    """A link from export/ to a file a finding names (a path, or a name in images/annotations)."""
    candidates = [Path(name)] if Path(name).is_absolute() else [
        root / name, root / "annotations" / name, root / "images" / name,
        root / "quarantine" / "duplicates" / name]
    for candidate in candidates:
        if candidate.exists():
            return html.relative_link(candidate, export, name)
    return name


# -- sections ---------------------------------------------------------------------------------
def _images_section(report: DatasetReport) -> str:
    images = report.numbers["images"]
    quarantine = images["quarantined"]
    rows = [["images in images/", images["total"]], ["annotated (saved by a person)", images["annotated"]],
            ["  of which with no objects", images["empty"]],
            ["pending (not annotated by a person yet)", images["pending"]],
            ["  no VOC file yet", images["no_annotation"]],
            ["  machine drafts (make prelabel), not reviewed", images["drafts"]],
            ["  VOC file unreadable (see Validation)", images["unparsable"]],
            ["annotations without an image", images["annotations_without_image"]],
            ["quarantined", quarantine["total"]]]
    rows += [[f"  {reason}", n] for reason, n in quarantine["by_reason"].items()]
    rows += [[f"files in quarantine/{folder}/", n] for folder, n in quarantine.get("folders", {}).items()]
    min_side = images.get("min_side") or {}
    if min_side:
        rows.append(["image short side, median px", int(min_side["median"])])
    plot = ""
    sizes = report.image_sizes
    if len(sizes):
        fig, ax = _figure()
        unique, counts = np.unique(sizes, axis=0, return_counts=True)  # one dot per size, by count
        ax.scatter(unique[:, 0], unique[:, 1], s=10 + 120 * np.sqrt(counts / counts.max()), alpha=0.45,
                   color="#1f77b4", edgecolors="none")
        ax.set_xlim(0, sizes[:, 0].max() * 1.08)
        ax.set_ylim(0, sizes[:, 1].max() * 1.08)
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        ax.set_title(f"image sizes ({len(sizes)} images; dot area = images of that size)", fontsize=10)
        ax.grid(alpha=0.3)
        plot = _png(fig, "image sizes")
    pending = report.numbers["pending_files"]
    listing = ""
    if pending:
        shown = ", ".join(escape(p) for p in pending[:40])
        more = f" and {images['no_annotation'] - 40} more" if images["no_annotation"] > 40 else ""
        listing = f'<p class="small">No VOC file yet: {shown}{more}. <code>make annotate</code> opens them in labelImg.</p>'
    return _section("images", "Images", _grid(_table(["", "count"], rows), plot) + listing)


def _classes_section(report: DatasetReport) -> str:
    classes = report.numbers["classes"]
    names = report.class_names
    boxes = report.boxes
    tiny = classes["tiny"]
    rows = [[n, classes["boxes"][n], classes["images"][n], tiny["by_class"].get(n, 0)] for n in names]
    table = _table(["class", "boxes", "images", "tiny boxes"], rows)
    notes = []
    if classes["undeclared"]:
        notes.append(f"<b>Not in classes.txt:</b> {escape(', '.join(classes['undeclared']))}; "
                     f"add them there or fix the boxes in labelImg.")
    plots = []
    if names:
        fig, ax = _figure()
        x = np.arange(len(names))
        ax.bar(x - 0.2, [classes["boxes"][n] for n in names], 0.4, label="boxes", color="#1f77b4")
        ax.bar(x + 0.2, [classes["images"][n] for n in names], 0.4, label="images", color="#aec7e8")
        ax.set_xticks(x, names)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.set_title("boxes and images per class", fontsize=10)
        plots.append(_png(fig, "boxes and images per class"))
    per_image = classes["boxes_per_image"]
    if per_image:
        fig, ax = _figure()
        ax.bar([int(k) for k in per_image], list(per_image.values()), color="#2ca02c")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("boxes in the image")
        ax.set_ylabel("images")
        ax.set_title("boxes per annotated image", fontsize=10)
        plots.append(_png(fig, "boxes per image"))
    finite = np.isfinite(boxes.rel_w) & np.isfinite(boxes.rel_h) & (boxes.rel_h > 0) & (boxes.rel_w > 0)
    if finite.any():
        index = np.flatnonzero(finite)
        if len(index) > MAX_POINTS:
            index = np.random.default_rng(0).choice(index, MAX_POINTS, replace=False)
        fig, ax = _figure()
        for c, name in enumerate(names):
            chosen = index[boxes.cls[index] == c]
            ax.scatter(boxes.rel_w[chosen], boxes.rel_h[chosen], s=8, alpha=0.45, label=name,
                       color=_colour(c), edgecolors="none")
        ax.set_xlabel("box width / image width")
        ax.set_ylabel("box height / image height")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_title("box sizes relative to the image", fontsize=10)
        plots.append(_png(fig, "box sizes"))
    aspect_ok = np.isfinite(boxes.aspect) & (boxes.aspect > 0)
    if aspect_ok.any():
        fig, ax = _figure()
        aspect = boxes.aspect[aspect_ok]
        low, high = min(aspect.min(), 0.4), max(aspect.max(), 2.5)
        bins = np.logspace(np.log10(low), np.log10(high), 36)
        for c, name in enumerate(names):
            ax.hist(aspect[boxes.cls[aspect_ok] == c], bins=bins, alpha=0.6, label=name, color=_colour(c))
        for ratio in ANCHOR_RATIOS:
            ax.axvline(ratio, color="#444", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks([0.25, 0.5, 1, 2, 4], ["1:4", "1:2", "1:1", "2:1", "4:1"])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(low, high)
        ax.set_xlabel("box height : width (dotted: RetinaNet's anchor ratios)")
        ax.set_ylabel("boxes")
        ax.legend(fontsize=8)
        ax.set_title("box aspect ratios", fontsize=10)
        plots.append(_png(fig, "aspect ratios"))
    valid = np.isfinite(boxes.scaled_side) & (boxes.scaled_side > 0)
    if valid.any():
        side = boxes.scaled_side[valid]
        missed = tiny_mask(boxes)[valid]
        fig, ax = _figure()
        bins = np.logspace(np.log10(min(side.min(), 8)), np.log10(max(side.max(), 64)), 40)
        ax.hist(side[~missed], bins=bins, color="#7f7f7f", label="an anchor fits")
        ax.hist(side[missed], bins=bins, color="#d62728", label=f"tiny: no anchor reaches IoU {POSITIVE_IOU}")
        ax.axvline(ANCHOR_SIZES[0], color="#d62728", linestyle=":",
                   label=f"smallest anchor ({ANCHOR_SIZES[0]} px)")
        ax.set_xscale("log")
        ticks = [t for t in (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048) if bins[0] <= t <= bins[-1]]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"box side sqrt(w*h) after resizing to min side {tiny['image_min_side']} (px)")
        ax.set_ylabel("boxes")
        ax.legend(fontsize=8)
        ax.set_title(f"box size as RetinaNet sees it: {tiny['count']} tiny", fontsize=10)
        plots.append(_png(fig, "box size after resizing"))
    if tiny["files"]:
        shown = tiny["files"][:40]
        notes.append("<b>Tiny boxes in:</b> " + ", ".join(escape(f) for f in shown)
                     + (" and more (see report.json)" if len(tiny["files"]) > len(shown) else "")
                     + ". Enlarge them in labelImg, drop them, or train with a larger IMAGE_MIN_SIDE.")
    note = (f"<b>Tiny boxes</b>: after keras-retinanet resizes the image (short side "
            f"{tiny['image_min_side']}, long side at most {tiny['image_max_side']}), no anchor reaches "
            f"IoU {tiny['positive_iou']} with these boxes even when centred on them, so training never "
            f"learns them. {tiny['count']} of {classes['total_boxes']} boxes; "
            f"{classes['difficult']} boxes are marked difficult.")
    return _section("classes", "Classes and boxes", table + "".join(f"<p>{n}</p>" for n in notes)
                    + _grid(*plots), note)


def _sources_section(report: DatasetReport) -> str:
    sources = report.numbers["sources"]
    if not any(sources.values()):
        return _section("sources", "Sources", "<p>No manifest records: the manifest is missing.</p>")
    plots = [_bars(sources["origin"], "images by origin")]
    if sources["query"]:
        plots += [_bars(sources["query"], "images per query", colour="#ff7f0e"),
                  _bars(sources["site"], "images per site (page the image was found on)", colour="#9467bd"),
                  _bars(sources["engine"], "images per scrape engine", colour="#8c564b"),
                  _bars(sources["filters"], "images per licence / search filter", colour="#17becf")]
    tables = ""
    if sources["import_sources"]:
        tables = "<h3>Import sources</h3>" + _table(["folder", "images"],
                                                     [[k, v] for k, v in sources["import_sources"].items()])
    per_source = sources.get("per_source") or {}
    if per_source:
        tables += "<h3>Per source</h3>" + _table(
            ["source", "format", "images", "boxes", "duplicates quarantined", "of them, copies of another source's"],
            [[k, v["format"] or "", v["images"], v["boxes"], v["duplicates"], v["duplicates_of_other_sources"]]
             for k, v in per_source.items()])
    return _section("sources", "Sources", _grid(*plots) + tables,
                    "Counts of the images now in images/, from their manifest records.")


def _duplicates_section(report: DatasetReport, dataset: Dataset) -> str:
    dedupe = report.numbers["duplicates"]
    quarantine = report.numbers["images"]["quarantined"]
    if not dedupe:
        body = "<p>Not run yet: <code>make dedupe</code> finds exact and near duplicates.</p>"
        if quarantine["total"]:
            body += f"<p>{quarantine['total']} files are in quarantine.</p>"
        return _section("duplicates", "Duplicates", body)
    conflicts = [c for c in dedupe.get("conflicts") or [] if isinstance(c, dict)]
    rows = [["pHash distance threshold", dedupe.get("threshold", "")],
            ["dHash distance threshold", dedupe.get("dhash_threshold", "")],
            ["groups with more than one image", dedupe.get("groups", 0)],
            ["files quarantined", dedupe.get("quarantined", 0)],
            ["exact duplicates", dedupe.get("exact", 0)], ["near duplicates", dedupe.get("near", 0)],
            ["annotation conflicts", len(conflicts)]]
    body = _table(["", ""], rows)
    if (dataset.export / "dedupe.html").exists():
        body += '<p><a href="dedupe.html">Review the duplicate groups side by side (dedupe.html)</a></p>'
    if conflicts:
        body += "<h3>Annotation conflicts</h3>" + _table(
            ["keeper", "duplicate", "why"],
            [[_link(dataset.export, dataset.root, str(c.get("keeper", ""))),
              _link(dataset.export, dataset.root, str(c.get("duplicate", ""))), str(c.get("why", ""))]
             for c in conflicts[:MAX_FINDINGS]])
    return _section("duplicates", "Duplicates", body)


def _validation_section(report: DatasetReport, dataset: Dataset) -> str:
    validation = report.numbers["validation"]
    state = ""
    if not validation["ran"]:
        state = "<p><code>make validate</code> has not run yet; only the VOC files this report could " \
                "not read are listed.</p>"
    elif validation["stale"]:
        state = '<p class="warn">Images or annotations changed after the last <code>make validate</code>; ' \
                "run it again for current findings.</p>"
    by_kind = validation["by_kind"]
    plot = ""
    if by_kind:
        kinds = list(by_kind)[:MAX_BARS]
        fig, ax = _figure(5.2, max(1.8, 0.6 + 0.3 * len(kinds)))
        errors = [by_kind[k].get("error", 0) for k in kinds][::-1]
        warnings = [by_kind[k].get("warning", 0) for k in kinds][::-1]
        ax.barh(kinds[::-1], errors, color="#d62728", label="errors")
        ax.barh(kinds[::-1], warnings, left=errors, color="#ff7f0e", label="warnings")
        ax.set_xlim(0, max(e + w for e, w in zip(errors, warnings)) * 1.4)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="lower right")
        ax.set_xlabel("findings")
        ax.set_title("validation findings by kind", fontsize=10)
        plot = _png(fig, "validation findings")
    table = _table(["kind", "errors", "warnings"],
                   [[k, v.get("error", 0), v.get("warning", 0)] for k, v in by_kind.items()])
    findings = validation["findings"]
    listing = ""
    if findings:
        listing = f"<details{' open' if len(findings) <= 30 else ''}><summary>{len(findings)} findings" \
                  + (f" (the first {MAX_FINDINGS} listed)" if len(findings) > MAX_FINDINGS else "") + "</summary>" + _table(
            ["file", "field", "kind", "severity", "message"],
            [[_link(dataset.export, dataset.root, str(f.get("file", ""))), str(f.get("field", "")),
              str(f.get("kind", "")), str(f.get("severity", "")), str(f.get("message", ""))]
             for f in findings[:MAX_FINDINGS]], numeric_from=99)
        if len(findings) > MAX_FINDINGS:
            listing += f"<p>{len(findings) - MAX_FINDINGS} more in validate.json.</p>"
        listing += "</details>"
    head = f"<p>{validation['errors']} errors, {validation['warnings']} warnings.</p>" \
        if validation["ran"] or findings else ""
    return _section("validation", "Validation", state + head + _grid(table, plot) + listing)


def _split_section(report: DatasetReport) -> str:
    split = report.numbers["split"]
    if not split:
        return _section("split", "Split", "<p>Not split yet: <code>make split</code> writes train.csv, "
                                          "val.csv (and test.csv with TEST=).</p>")
    counts = split.get("counts") or {}
    parts = [p for p in ("train", "val", "test") if p != "test" or (counts.get("test") or {}).get("images")
             or split.get("test")]
    names = sorted({c for part in counts.values() if isinstance(part, dict)
                    for c in (part.get("boxes") or {})})
    totals = {n: sum(((counts.get(p) or {}).get("boxes") or {}).get(n, 0) for p in parts) for n in names}
    rows = [[part, (counts.get(part) or {}).get("images", 0)]
            + [((counts.get(part) or {}).get("boxes") or {}).get(n, 0) for n in names]
            + [f"{((counts.get(part) or {}).get('boxes') or {}).get(n, 0) / totals[n]:.1%}" if totals[n] else "-"
               for n in names]
            for part in parts]
    leakage = split.get("leakage") or {}
    facts = [["val share asked", split.get("val", "")], ["test share asked", split.get("test", 0)],
             ["seed", split.get("seed", "")], ["drawn", split.get("mode", "new")],
             ["pHash threshold", split.get("threshold", "")],
             ["dHash threshold", split.get("dhash_threshold", "")],
             ["duplicate groups", split.get("groups", "")],
             ["duplicate pairs kept in one part", leakage.get("near_duplicate_pairs", "")],
             ["pairs a random split would have put across parts", leakage.get("random_split_cross_pairs", "")],
             ["images held out (a duplicate no part can take)", split.get("held_out", 0)]]
    if isinstance(split.get("folds"), dict):
        facts.append(["cross-validation folds", split["folds"].get("k", "")])
    plot = ""
    if names:
        fig, ax = _figure()
        x = np.arange(len(names))
        width = 0.8 / len(parts)
        for i, (part, colour) in enumerate(zip(parts, ("#1f77b4", "#ff7f0e", "#2ca02c"))):
            ax.bar(x - 0.4 + width * (i + 0.5),
                   [((counts.get(part) or {}).get("boxes") or {}).get(n, 0) for n in names], width,
                   label=part, color=colour)
        ax.set_xticks(x, names)
        ax.set_ylabel("boxes")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        ax.set_title("boxes per class in each part", fontsize=10)
        plot = _png(fig, "split")
    stale = '<p class="warn">Images or annotations changed after the split; run <code>make export split' \
            '</code> again.</p>' if report.numbers.get("split_stale") else ""
    body = _grid(_table(["part", "images"] + [f"{n} boxes" for n in names] + [f"{n} share" for n in names], rows)
                 + _table(["", ""], facts), plot)
    return _section("split", "Split", stale + body + _drift_table(split.get("drift"), parts),
                    "No duplicate group is in two parts. Re-running keeps every earlier image in its part; "
                    "new images go to train and val, the test part changes only with RESPLIT=test.")


def _drift_table(drift, parts) -> str:
    """What changed since the split before: images per part, new and gone, and the shares."""
    if not isinstance(drift, dict):
        return ""
    rows = []
    for part in parts:
        before, after = (drift.get("images") or {}).get(part, [0, 0])
        rows.append([part, before, after, (drift.get("added") or {}).get(part, 0),
                     (drift.get("left") or {}).get(part, 0)])
    shares = []
    for part in parts:
        for name, pair in sorted(((drift.get("shares") or {}).get(part) or {}).items()):
            before, after = pair
            shares.append([part, name, "-" if before is None else f"{before:.1%}",
                           "-" if after is None else f"{after:.1%}"])
    moved = drift.get("moved") or 0
    return (f"<h3>Drift since the split of {escape(str(drift.get('since') or 'before'))}</h3>"
            + (f'<p class="warn">{moved} earlier images changed part (a RESPLIT).</p>' if moved else "")
            + _grid(_table(["part", "images before", "images now", "new", "left"], rows),
                    _table(["part", "class", "share of boxes before", "now"], shares, numeric_from=2)))


DETECTOR_NAMES = {"retinanet": "RetinaNet", "two-stage": "two-stage (face detector + classifier)"}


def _confusion_table(confusion: dict) -> str:
    names = confusion.get("classes") or []
    table_rows = [[name, *row, missed] for name, row, missed in
                  zip(names, confusion.get("matrix") or [], confusion.get("missed") or [])]
    table_rows.append(["background (false alarms)", *(confusion.get("false_alarms") or []), ""])
    return _table(["true \\ detected", *names, "missed"], table_rows)


def _figures(run: dict) -> list[list]:
    """[label, value] rows: the part scored and the figures of one evaluation."""
    coco, at, best = run.get("coco") or {}, run.get("at") or {}, run.get("best_f1") or {}
    number = lambda value: value if isinstance(value, (int, float)) else "n/a"  # noqa: E731
    return [["part scored", run.get("part") or "val"], ["AP at IoU 0.5, mean over classes", number(run["mAP"])],
            ["COCO mAP@[.5:.95]", number(coco.get("mAP"))], ["COCO AP50", number(coco.get("AP50"))],
            ["COCO AP75", number(coco.get("AP75"))],
            [f"precision at score {at.get('score', 0.5):g}", number(at.get("precision"))],
            [f"recall at score {at.get('score', 0.5):g}", number(at.get("recall"))],
            [f"F1 at score {at.get('score', 0.5):g}", number(at.get("f1"))],
            ["score that maximises F1", number(best.get("score"))], ["its F1", number(best.get("f1"))]]


def _errors_link(run: dict, folder: Path) -> str:
    return ("<p>" + html.relative_link(Path(run["errors_page"]), folder,
                                       f"The images with the most errors ({run['id']})") + "</p>"
            if run.get("errors_page") else "")


def _evaluation_section(report: DatasetReport, folder: Path) -> str:
    """The latest evaluation: the part it scored, its figures and its confusion matrix; when both
    detectors (RetinaNet and the two-stage one) have been evaluated, the latest of each side by side."""
    by_id = {r["id"]: r for r in report.runs}
    latest = {kind: by_id[run] for kind, run in ((report.numbers.get("detectors") or {}).get("latest") or {}).items()}
    if not latest:
        return _section("evaluation", "Latest evaluation", "<p>No run evaluated yet: <code>make evaluate"
                                                           "</code> scores the latest run on the test part.</p>")
    if len(latest) > 1:
        return _detectors_section(report, [latest[k] for k in sorted(latest, key=lambda k: k != "retinanet")], folder)
    run = next(iter(latest.values()))
    confusion = run["confusion"]
    notes = "".join(f'<p class="warn">{escape(w)}</p>' for w in run.get("evaluation_warnings") or [])
    title = f"Latest evaluation: {run['id']}" + (" (two-stage detector)" if run.get("detector") == "two-stage" else "")
    return _section("evaluation", title,
                    notes + _grid(_table(["", ""], _figures(run)), "<h3>Confusion matrix</h3>"
                                  + _confusion_table(confusion)) + _errors_link(run, folder),
                    f"Rows: the true class; columns: what the model detected, at score >= "
                    f"{confusion.get('score', 0.5):g} and IoU {confusion.get('iou', 0.5)}.")


def _detectors_section(report: DatasetReport, chosen: list[dict], folder: Path) -> str:
    """The two detectors side by side: one column of figures each, AP per class, their confusion
    matrices, and a warning when they did not score the same images."""
    rows = [[label] + [value for _, value in figures] for label, *figures in
            zip([label for label, _ in _figures(chosen[0])], *[_figures(r) for r in chosen])]
    names = [n for n in (chosen[0].get("classes") or {})]
    for name in names:
        rows.insert(2 + names.index(name), [f"AP {name}"] + [
            ((r.get("classes") or {}).get(name) or {}).get("ap", "n/a") for r in chosen])
    header = [""] + [f"{DETECTOR_NAMES.get(r.get('detector'), r.get('detector'))}: {r['id']}" for r in chosen]
    same = (report.numbers.get("detectors") or {}).get("same_images")
    notes = "" if same else ('<p class="warn">These evaluations did not score the same images (another part, or '
                             'the part changed between them): their figures are not comparable. Evaluate both '
                             'again (<code>make evaluate</code>, <code>make evaluate MODEL=two-stage</code>).</p>')
    for r in chosen:
        notes += "".join(f'<p class="warn">{escape(r["id"])}: {escape(w)}</p>' for w in r.get("evaluation_warnings") or [])
    matrices = _grid(*[f"<h3>Confusion matrix: {escape(DETECTOR_NAMES.get(r.get('detector'), ''))}</h3>"
                       + _confusion_table(r["confusion"]) for r in chosen])
    confusion = chosen[0]["confusion"]
    return _section("evaluation", "Latest evaluation: the two detectors side by side",
                    notes + _table(header, rows, numeric_from=1) + matrices
                    + "".join(_errors_link(r, folder) for r in chosen),
                    f"The latest evaluation of each detector, on the part it scored. Confusion rows: the true "
                    f"class; columns: what the detector found, at score >= {confusion.get('score', 0.5):g} and IoU "
                    f"{confusion.get('iou', 0.5)}.")


def _runs_section(report: DatasetReport) -> str:
    runs = report.runs
    if not runs:
        return _section("runs", "Training runs", "<p>No training runs yet: <code>make train</code>.</p>")
    names = sorted({n for r in runs for n in r["classes"]})
    rows = [[r["id"], str(r["backbone"] or ""), r["epochs"], r["mAP"] if isinstance(r["mAP"], (int, float)) else "n/a"]
            + [r["classes"].get(n, {}).get("ap", "") if isinstance(r["classes"].get(n, {}).get("ap"), (int, float))
               else "" for n in names] for r in runs]
    rows = [row[:1] + [r.get("detector") or "retinanet"] + row[1:3] + [r.get("part") or "val"] + row[3:]
            for row, r in zip(rows, runs)]
    table = _table(["run", "detector", "backbone", "epochs", "scored on", "mAP"] + [f"AP {n}" for n in names], rows,
                   numeric_from=3)
    plot = ""
    if any(r["log"] for r in runs):
        fig, ax = _figure()
        for i, r in enumerate(runs):
            points = [(row.get("epoch"), row.get("val_mAP")) for row in r["log"]
                      if isinstance(row.get("val_mAP"), float)]
            if points:
                xs = [p[0] if isinstance(p[0], (int, float)) else k + 1 for k, p in enumerate(points)]
                ax.plot(xs, [p[1] for p in points], marker="o", label=r["id"], color=_colour(i))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("val mAP")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
            ax.set_title("val mAP per epoch, latest runs", fontsize=10)
            plot = _png(fig, "val mAP per epoch")
    curves = _grid(*[f"<h3>{escape(r['id'])}: {escape(kind)}</h3>" + _file_png(r[key], f"{r['id']} {kind}")
                     for r in runs[:2] for key, kind in (("curves_png", "curves"), ("pr_curve_png", "precision-recall"))
                     if r[key]])
    return _section("runs", "Training runs", _grid(table, plot) + curves,
                    "The latest runs first; mAP at IoU 0.5 on the part `make evaluate` scored (the log's "
                    "val mAP before it ran). A two-stage run is a classifier of `make train-classifier`: its "
                    "figures are the face detector's and the classifier's together (`make evaluate MODEL=two-stage`).")


def render(report: DatasetReport, dataset: Dataset, folder: Path | None = None) -> str:
    """The page; `folder`: where it will be written (links are relative to it; default export/)."""
    n = report.numbers
    images, classes, validation = n["images"], n["classes"], n["validation"]
    latest = next((r for r in n["runs"] if isinstance(r.get("mAP"), (int, float))), None)
    cards = html.cards(
        _card("images", images["total"]),
        _card("annotated", images["annotated"], "good" if images["annotated"] else ""),
        _card("pending", images["pending"], "warn" if images["pending"] else ""),
        _card("quarantined", images["quarantined"]["total"]),
        _card("boxes", classes["total_boxes"]),
        *[_card(f"{name} boxes", count) for name, count in classes["boxes"].items()],
        _card("tiny boxes", classes["tiny"]["count"], "warn" if classes["tiny"]["count"] else ""),
        _card("validation errors", validation["errors"] if validation["ran"] or validation["errors"] else "-",
              "bad" if validation["errors"] else ""),
        _card("warnings", validation["warnings"] if validation["ran"] else "-",
              "warn" if validation["warnings"] else ""),
    )
    if latest:
        cards = html.cards(cards, _card(f"{latest.get('part') or 'val'} mAP ({latest['id']})", f"{latest['mAP']:.3f}"))
    problems = "".join(f'<p class="warn">{escape(p)}</p>' for p in n["problems"])
    sections = [_images_section(report), _classes_section(report), _sources_section(report),
                _duplicates_section(report, dataset), _validation_section(report, dataset),
                _split_section(report), _evaluation_section(report, Path(folder or dataset.export)),
                _runs_section(report)]
    nav = [("images", "Images"), ("classes", "Classes"), ("sources", "Sources"), ("duplicates", "Duplicates"),
           ("validation", "Validation"), ("split", "Split"), ("evaluation", "Evaluation"),
           ("runs", "Training runs")]
    return html.page(f"maskset report: {Path(n['dataset']).name}", cards + problems + "".join(sections),
                     subtitle=f"{n['dataset']} · {n['generated']}", nav=nav, heading="maskset dataset report")


def write_report(dataset: Dataset, runs_dir: Path | str | None = None, progress: bool = True,
                 out: Path | None = None, **options) -> tuple[Path | None, DatasetReport]:
    """Collect, then write report.json and report.html (atomically) into export/ (or `out`).
    On a read-only dataset with no `out`, nothing is written and page is None."""
    report = collect(dataset, runs_dir, progress=progress, **options)
    folder = Path(out) if out else dataset.export
    if out is None and not os.access(dataset.root, os.W_OK):
        log.warning("%s: read-only; the report is not written (pass OUT=<folder> to write it elsewhere)",
                    dataset.root)
        return None, report
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / "report.json", report.numbers)
    report.page = atomic.write_text(folder / "report.html", render(report, dataset, folder))
    return report.page, report
