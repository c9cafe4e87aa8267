"""`make card`: export/DATASET.md, a datasheet of the dataset, and export/ATTRIBUTION.csv.

The card follows "Datasheets for Datasets" (motivation, composition, collection, preprocessing
and cleaning, labelling, uses, limits, distribution). Every number on it is computed from the
dataset: the manifest (provenance.table, via pandas), validate's report, the export and split
CSVs, the quarantine records (duplicates, takedowns), the fix records, the scrape and annotate
logs. Nothing on it depends on when it is written, so the same dataset gives the same bytes
(`make package` puts it in the archive).

ATTRIBUTION.csv has one row per image in images/: file, sha256 (of the bytes published), origin,
source page, image URL, title, licence filter, import source.

The export and split CSVs must agree with the dataset (current_exports): a CSV that still lists
a taken-down image, or misses a new annotation, is an error naming it and the fix.
"""
from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, jsonl, manifest, provenance
from .errors import MasksetError
from .layout import Dataset
from .results import Result

CARD = "DATASET.md"
ATTRIBUTION = "ATTRIBUTION.csv"
ATTRIBUTION_COLUMNS = ("file", "sha256", "origin", "source_page", "image_url", "title",
                       "licence_filter", "import_source")
PARTS = ("train", "val")
TOP_SITES = 10
# What the quarantine reasons mean on the card.
REASONS = {"exact-duplicate": "exact duplicate (same bytes as a kept image)",
           "near-duplicate": "near duplicate (looks like a kept image)",
           "takedown": "taken down on request (make takedown)"}


# -- the export files, checked against the dataset ------------------------------------------------
@dataclass
class Exports:
    """The export and split files, known to agree with the dataset."""
    rows: list[list[str]] | None = None                  # annotations.csv; None: not exported
    parts: dict[str, list[list[str]]] = field(default_factory=dict)  # train/val rows; {}: not split
    files: list[Path] = field(default_factory=list)      # every export file that is current
    resized: bool = False                                # RESIZE= copies: paths in export/resized/


def _read_rows(path: Path) -> list[list[str]]:
    from .split import read_annotations
    return read_annotations(path)


def _by_image(rows) -> dict[str, list[list[str]]]:
    grouped: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        grouped[Path(row[0]).name].append(row)
    return grouped


def _classes_of(rows) -> Counter:
    return Counter(r[5] for r in rows if r[5])


def _first(names: list[str]) -> str:
    return names[0] + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def _difference(dataset: Dataset, on_disk, fresh, compare) -> str:
    disk, now = _by_image(on_disk), _by_image(fresh)
    gone, new = sorted(set(disk) - set(now)), sorted(set(now) - set(disk))
    if gone:
        return (f"it lists images/{_first(gone)}, which is not an annotated image of the dataset now "
                f"(taken down, quarantined or unannotated since, or a draft exported with INCLUDE_DRAFTS=1)")
    if new:
        return f"it does not list images/{_first(new)}, annotated since"
    changed = sorted(n for n in now if compare(disk[n]) != compare(now[n]))
    if changed:
        xml = dataset.annotation_for(changed[0]).relative_to(dataset.root)
        return f"its rows for {_first(changed)} differ from {xml} (changed since)"
    return "its rows differ from the annotations"


def current_exports(dataset: Dataset, report, stage: str, package: bool = False) -> Exports:
    """The export (annotations.csv, classes.csv) and split (train.csv, val.csv, split.json) files,
    checked to hold exactly the dataset's annotations now. A file made before a takedown, an
    annotation change or a new image is an error naming the difference and the fix. A package
    needs the export (and plain paths, not RESIZE= copies it would not hold)."""
    from .export import annotation_rows, csv_text
    fix = f"Run `make export` and `make split`, then `make {stage}` again."
    export = dataset.export
    annotations = export / "annotations.csv"
    found = Exports()
    if not annotations.exists():
        if package:
            raise MasksetError(f"{annotations}: not found; a package holds the training CSVs. {fix}")
        return found
    rows = _read_rows(annotations)
    found.resized = any(not r[0].startswith(f"../{dataset.images.name}/") for r in rows)
    if found.resized and package:
        raise MasksetError(f"{annotations}: points at copies in export/resized/ (made with RESIZE=), which "
                           f"a package does not hold. Run `make export` without RESIZE= and `make split`, "
                           f"then `make {stage}` again (training can export with RESIZE= afterwards).")
    if found.resized:
        fresh = annotation_rows(dataset, report)[0]
        agree = {n: _classes_of(r) for n, r in _by_image(rows).items()} == \
                {n: _classes_of(r) for n, r in _by_image(fresh).items()}
        compare = _classes_of
    else:
        text = annotations.read_text(encoding="utf-8")
        variants = [[[str(v) for v in row] for row in annotation_rows(dataset, report, skip_difficult=skip)[0]]
                    for skip in (False, True)]
        agree = any(csv_text(v) == text for v in variants)
        fresh = variants[0]
        compare = sorted
    if not agree:
        raise MasksetError(f"{annotations}: older than the dataset: "
                           f"{_difference(dataset, rows, fresh, compare)}. {fix}")
    found.rows = rows
    found.files = [annotations] + [p for p in (export / "classes.csv",) if p.exists()]
    if package and not (export / "classes.csv").exists():
        raise MasksetError(f"{export / 'classes.csv'}: not found. {fix}")
    part_files = {part: export / f"{part}.csv" for part in PARTS}
    if (export / "test.csv").exists():  # make split TEST=: a third part
        part_files["test"] = export / "test.csv"
    present = [p for p in part_files.values() if p.exists()]
    if not present:
        return found
    if len(present) < len(PARTS):
        missing = next(p for p in part_files.values() if not p.exists())
        raise MasksetError(f"{missing}: not found beside {present[0].name}. Run `make split`, then "
                           f"`make {stage}` again.")
    parts = {part: _read_rows(path) for part, path in part_files.items()}
    if sorted(r for rows_ in parts.values() for r in rows_) != sorted(rows):
        split_rows = [r for rows_ in parts.values() for r in rows_]
        raise MasksetError(f"{part_files['train']} and {part_files['val'].name}: made from an older export: "
                           f"{_difference(dataset, split_rows, rows, sorted)}. Run `make split`, then "
                           f"`make {stage}` again.")
    found.parts = parts
    found.files += list(part_files.values()) + [p for p in (export / "split.json",) if p.exists()]
    return found


# -- the numbers -------------------------------------------------------------------------------------
@dataclass
class Facts:
    """Every number and list on the card, computed from the dataset."""
    name: str
    classes: list[str]
    images: int
    sha256: dict[str, str]                  # file -> sha256 of its bytes now
    provenance: object                      # pandas DataFrame, one row per image (provenance.table)
    annotated: int
    pending: int
    drafts: int
    boxes: dict[str, int]
    negatives: int                          # annotated images with no box
    exported: bool                          # export/annotations.csv is there (and current)
    parts: dict[str, dict]                  # train/val -> {"images", "negatives", "boxes": {class: n}}
    split: dict                             # split.json's settings (val, seed, thresholds) or {}
    sizes: dict                             # width/height: min, median, max (annotated images)
    scraped: list[dict]                     # per query/engine/market/filters: images, dates
    sites: list[tuple[str, int]]            # page host -> images, most first
    image_hosts: int
    imported: list[dict]                    # per source folder/format: images, dates
    unknown_origin: int
    licences: dict[str, int]                # licence filter ("" none) -> scraped images
    markets: list[str]
    removed: dict[str, int]                 # quarantine reason -> images in quarantine now
    thresholds: list[tuple]                 # (pHash, dHash) thresholds duplicates were found at
    takedowns: list[dict]                   # {"date", "reason", "images"}
    fixed: int                              # published images with a fix (validate FIX=1)
    fix_kinds: dict[str, int]
    not_downloaded: dict[str, int]          # scrape-log reason -> downloads not kept
    errors: int
    warnings: dict[str, int]                # validate warning kind -> n
    labelling: dict[str, int]               # how the annotated images were labelled
    edited: int                             # annotated images edited by hand afterwards
    verified: int                           # labelImg's "verified" mark
    box_counts: dict                        # boxes per annotated image: mean, max

    def to_json(self) -> dict:
        from .results import jsonable
        data = {k: v for k, v in self.__dict__.items() if k not in ("provenance", "sha256")}
        return jsonable(data)


def _date(text: str) -> str:
    return text[:10] if text else ""


def _class_order(classes: list[str], counts) -> list[str]:
    return list(classes) + sorted(set(counts) - set(classes))


def _part_counts(rows) -> dict:
    by_image = _by_image(rows)
    return {"images": len(by_image),
            "negatives": sum(1 for r in by_image.values() if not _classes_of(r)),
            "boxes": dict(sorted(_classes_of(rows).items()))}


def _labelling(dataset: Dataset, report, state: dict) -> tuple[dict, int]:
    """How each annotated image got its labels, from the annotate sessions' log and the import
    records: drawn by hand, a reviewed machine draft, imported, or no record of how."""
    how: dict[str, str] = {}
    edited: set[str] = set()
    for session in jsonl.read(dataset.export / "annotate-log.jsonl", strict=False).records:
        names = {key: [n for n in session.get(key) or [] if isinstance(n, str)]
                 if isinstance(session.get(key), list) else [] for key in ("annotated", "reviewed_drafts", "edited")}
        for key, label in (("annotated", "hand"), ("reviewed_drafts", "draft")):
            for name in names[key]:
                how[name] = label
        edited.update(names["edited"])
    counts = Counter()
    for name in report.annotations:
        label = how.get(name) or ("import" if state.get(name, {}).get("source_annotation") else "unknown")
        counts[label] += 1
    return ({k: counts[k] for k in ("hand", "draft", "import", "unknown")},
            sum(1 for name in report.annotations if name in edited))


def _spread(values) -> dict:
    values = sorted(values)
    if not values:
        return {}
    return {"min": values[0], "median": int(statistics.median_low(values)), "max": values[-1]}


def facts(dataset: Dataset, report, exports: Exports) -> Facts:
    records = manifest.read_records(dataset)
    state = manifest.state(dataset, records)
    files = [p.name for p in dataset.image_files()]
    table = provenance.table(dataset, files, records)
    classes = dataset.classes()

    scraped = table[table.origin == "scrape"]
    groups = []
    for (query, engine, market, filters), part in scraped.groupby(["query", "engine", "market", "filters"]):
        groups.append({"query": query, "engine": engine, "market": market, "filters": filters,
                       "images": len(part), "first": _date(part.added.min()), "last": _date(part.added.max())})
    sites = scraped[scraped.page_host != ""].page_host.value_counts()
    imported = table[table.origin == "import"]
    sources = []
    folders = imported.source_path.map(provenance.source_folder) if len(imported) else imported.source_path
    for (folder, fmt), part in imported.assign(folder=folders).groupby(["folder", "import_format"]):
        sources.append({"folder": folder, "format": fmt, "images": len(part),
                        "first": _date(part.added.min()), "last": _date(part.added.max())})

    quarantined = {f: r for f, r in state.items() if r.get("event") == manifest.QUARANTINED}
    removed = Counter(r.get("reason") or "unknown" for r in quarantined.values())
    thresholds = sorted({(r.get("threshold"), r.get("dhash_threshold")) for r in quarantined.values()
                         if r.get("reason") in ("exact-duplicate", "near-duplicate")
                         and r.get("threshold") is not None}, key=str)
    takedowns = Counter()
    for r in quarantined.values():
        if r.get("reason") == "takedown":
            info = r.get("takedown") if isinstance(r.get("takedown"), dict) else {}
            takedowns[(_date(r.get("time", "")), str(info.get("reason", "")))] += 1
    live = set(files)
    fixes = [r for r in records if r.get("event") == "fixed" and r["file"] in live]
    scrape_log = jsonl.read(dataset.export / "scrape-log.jsonl", strict=False).records

    annotations = report.annotations
    sizes = {"width": _spread(a.width for a in annotations.values() if a.width),
             "height": _spread(a.height for a in annotations.values() if a.height)}
    per_image = [len(a.objects) for a in annotations.values()]
    labelling, edited = _labelling(dataset, report, state)
    return Facts(
        name=dataset.root.name, classes=classes, images=len(files),
        sha256={name: manifest.sha256_file(dataset.images / name) for name in files},
        provenance=table, annotated=len(report.annotated), pending=len(report.pending),
        drafts=len(report.drafts),
        boxes={c: report.boxes.get(c, 0) for c in _class_order(classes, report.boxes)},
        negatives=sum(1 for n in per_image if n == 0),
        exported=exports.rows is not None,
        parts={part: _part_counts(rows) for part, rows in exports.parts.items()},
        split=_split_settings(dataset) if exports.parts else {},
        sizes=sizes, scraped=groups, sites=[(h, int(n)) for h, n in sorted(sites.items(), key=lambda kv: (-kv[1], kv[0]))],
        image_hosts=int(scraped[scraped.image_host != ""].image_host.nunique()),
        imported=sources, unknown_origin=int((table.origin == provenance.UNKNOWN).sum()),
        licences={k: int(v) for k, v in sorted(Counter(scraped.licence).items())},
        markets=sorted({m for m in scraped.market if m}),
        removed=dict(sorted(removed.items())), thresholds=thresholds,
        takedowns=[{"date": d, "reason": why, "images": n} for (d, why), n in sorted(takedowns.items())],
        fixed=len({r["file"] for r in fixes}),
        fix_kinds=dict(sorted(Counter(k for r in fixes for k in (r.get("what") or [])).items())),
        not_downloaded=dict(sorted(Counter(str(e.get("reason")) for e in scrape_log).items())),
        errors=len(report.errors),
        warnings=dict(sorted(Counter(f.kind for f in report.warnings).items())),
        labelling=labelling, edited=edited,
        verified=sum(1 for a in annotations.values() if a.verified),
        box_counts={"mean": round(sum(per_image) / len(per_image), 2) if per_image else 0,
                    "max": max(per_image, default=0)},
    )


def _split_settings(dataset: Dataset) -> dict:
    import json
    path = dataset.export / "split.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: data.get(k) for k in ("val", "test", "seed", "threshold", "dhash_threshold") if k in data}


# -- the card (Markdown) -----------------------------------------------------------------------------
def cell(value) -> str:
    """A value made safe for one Markdown table cell (text from the web included)."""
    text = " ".join(str(value).split())
    for char in "\\|[]<>":
        text = text.replace(char, "\\" + char)
    return text or " "


def table_md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _n(count: int, word: str) -> str:
    plural = word + ("es" if word.endswith(("s", "x")) else "s")
    return f"{count} {word if count == 1 else plural}"


def render(f: Facts) -> str:
    """The card's Markdown: a function of the facts only."""
    classes = list(f.boxes)
    total_boxes = sum(f.boxes.values())
    scraped = sum(g["images"] for g in f.scraped)
    imported = sum(s["images"] for s in f.imported)
    out = [f"# Dataset card: {cell(f.name)}", "",
           f"A face-mask detection dataset: {_n(f.images, 'image')}, {f.annotated} of them annotated with "
           f"{_n(total_boxes, 'box')} in {_n(len(f.classes), 'class')} "
           f"({', '.join(f'`{c}`' for c in f.classes)}). Written by `make card` (maskset): every number "
           f"on this card is computed from the dataset.", ""]

    out += ["## Motivation", "",
            "Made to train and evaluate detectors that find faces and tell whether each wears a mask "
            "(keras-retinanet RetinaNet, trained by `make train`). Public face-mask projects each "
            "scraped a few hundred images and published them without saying where each came from; "
            "this dataset records, for every image, its source and what was done to it.", ""]

    out += ["## Composition", ""]
    header = ["part", "images", *[f"{c} boxes" for c in classes], "images with no box"]
    rows = []
    for part, counts in f.parts.items():
        rows.append([part, counts["images"], *[counts["boxes"].get(c, 0) for c in classes], counts["negatives"]])
    rows.append(["all annotated", f.annotated, *[f.boxes[c] for c in classes], f.negatives])
    out += [table_md(header, rows), ""]
    if f.parts:
        settings = ", ".join(f"{k} {v}" for k, v in f.split.items())
        out.append(f"The split (`make split`{': ' + settings if settings else ''}) keeps exact and "
                   f"near-duplicate images in one part, so {' and '.join(p for p in f.parts if p != 'train')} "
                   f"hold no copies of training images.")
    else:
        out.append("Not split into train and val yet (`make split`).")
    out += ["", f"Not annotated yet, so not in the CSV files: {_n(f.pending, 'image')}"
            + (f" ({f.drafts} with an unreviewed machine draft, not published)" if f.drafts else "") + "."]
    if f.annotated:
        out.append(f"Boxes per annotated image: {f.box_counts['mean']} on average, at most {f.box_counts['max']}.")
    if f.sizes.get("width"):
        w, h = f.sizes["width"], f.sizes["height"]
        out.append(f"Image sizes (annotated images), width x height in pixels: median {w['median']} x "
                   f"{h['median']}, widths {w['min']} to {w['max']}, heights {h['min']} to {h['max']}.")
    split_files = ", ".join([*f.parts, "split.json"])
    csvs = (f"`export/` (keras-retinanet CSV: annotations, classes{', ' + split_files if f.parts else ''})"
            if f.exported else "no CSV files yet (`make export`)")
    out += ["", f"Files: `images/` ({f.images}), `annotations/` (Pascal VOC, one per annotated image, "
                f"labelImg's format), {csvs}, `ATTRIBUTION.csv` (one row per image).", ""]

    out += ["## Collection", "",
            f"Origins: {_n(scraped, 'image')} scraped from Bing Images, {imported} imported from other "
            f"datasets, {f.unknown_origin} of unknown origin (no manifest record: put into `images/` by hand).", ""]
    if f.scraped:
        out += ["### Scraped (`make scrape`)", "",
                table_md(["query", "engine", "market", "filters", "images", "first added", "last added"],
                         [[g["query"], g["engine"], g["market"] or "not recorded", g["filters"] or "none",
                           g["images"], g["first"], g["last"]] for g in f.scraped]), "",
                f"The images were found on pages of {_n(len(f.sites), 'site')} and served from "
                f"{_n(f.image_hosts, 'host')}. The sites with the most images:", "",
                table_md(["site", "images"], [[h, n] for h, n in f.sites[:TOP_SITES]]), ""]
        if len(f.sites) > TOP_SITES:
            out += [f"... and {len(f.sites) - TOP_SITES} more sites; `ATTRIBUTION.csv` names the page and "
                    f"image URL of every image.", ""]
    if f.imported:
        out += ["### Imported (`make import`)", "",
                table_md(["source folder", "format", "images", "first added", "last added"],
                         [[s["folder"], s["format"], s["images"], s["first"], s["last"]] for s in f.imported]),
                ""]

    out += ["## Preprocessing and cleaning", "",
            "Every image was decoded and checked on the way in. Images removed from the dataset stay in "
            "its `quarantine/` (never deleted, never published):", ""]
    if f.removed:
        out += [table_md(["reason", "images"], [[REASONS.get(r, r), n] for r, n in f.removed.items()]), ""]
    else:
        out += ["None removed.", ""]
    if f.thresholds:
        used = "; ".join(f"pHash within {p} bits and dHash within {d} bits" for p, d in f.thresholds)
        out += [f"Duplicates (`make dedupe`): same bytes, or {used}; the best copy of each group was kept "
                f"(annotated first, then the larger).", ""]
    if f.takedowns:
        out += ["Takedowns (`make takedown`), by date and the reason given:", "",
                table_md(["date", "reason", "images"], [[t["date"], t["reason"] or "not given", t["images"]]
                                                        for t in f.takedowns]), ""]
    if f.fixed:
        kinds = ", ".join(f"{k} {n}" for k, n in f.fix_kinds.items())
        out += [f"Validation fixes (`make validate FIX=1`; originals kept in `quarantine/fixed/`): "
                f"{_n(f.fixed, 'image')} ({kinds}).", ""]
    if f.not_downloaded:
        out += ["Results not kept while scraping (`export/scrape-log.jsonl`), by reason:", "",
                table_md(["reason", "results"], [[r, n] for r, n in f.not_downloaded.items()]), ""]
    warnings = ", ".join(f"{k} {n}" for k, n in f.warnings.items()) or "none"
    out += [f"Validation now (`make validate`): {_n(f.errors, 'error')}; warnings: {warnings}.", ""]

    how = {"hand": "drawn by hand in labelImg (`make annotate`)",
           "draft": "machine draft (`make prelabel`), corrected and saved by a person in labelImg",
           "import": "imported with its source's annotation",
           "unknown": "no record of how (a VOC file put into `annotations/` by hand)"}
    out += ["## Labelling", "",
            table_md(["how the annotation was made", "annotated images"],
                     [[how[k], n] for k, n in f.labelling.items()]), "",
            f"Edited by hand afterwards: {f.edited}. Marked verified in labelImg: {f.verified}. Boxes are "
            f"Pascal VOC pixel corners (1-based, as labelImg writes them); the CSV files are 0-based. "
            f"Unreviewed machine drafts are never published as annotations.", ""]

    out += ["## Uses", "",
            "Intended: training and evaluating face-mask detectors (is a face masked or not). "
            "Not intended: recognising or tracking people, or any use about an individual; the images "
            "show real people who did not consent to being in a dataset.", ""]

    limits = []
    licensed = {k: n for k, n in f.licences.items() if k}
    if scraped:
        limits.append(f"Licences are not verified. {sum(licensed.values())} of the {scraped} scraped images "
                      f"were found with a Bing licence filter"
                      + (f" ({', '.join(f'license={k}: {n}' for k, n in licensed.items())})" if licensed else "")
                      + ": that filter is Bing's claim about the page, not a verified licence. "
                      + (f"The other {scraped - sum(licensed.values())} have no licence information at all. "
                         if scraped > sum(licensed.values()) else "")
                      + "Check the terms of each source page (`ATTRIBUTION.csv`) before any use beyond research.")
    if imported:
        limits.append(f"The {imported} imported images carry the terms of the datasets they came from, "
                      f"which maskset does not record.")
    if f.unknown_origin:
        limits.append(f"{_n(f.unknown_origin, 'image')} have no recorded source.")
    counted = {c: n for c, n in f.boxes.items() if n}
    if len(counted) > 1:
        big, small = max(counted.items(), key=lambda kv: kv[1]), min(counted.items(), key=lambda kv: kv[1])
        limits.append(f"Classes are unbalanced: {big[1]} `{big[0]}` boxes against {small[1]} `{small[0]}` "
                      f"({big[1] / small[1]:.1f} to 1).")
    if f.markets:
        limits.append(f"Scraped in Bing market(s) {', '.join(f.markets)} only: the people shown are "
                      f"not a sample of the world's.")
    if f.thresholds:
        limits.append("Duplicate detection finds exact copies and most near copies; heavily cropped or "
                      "edited copies can remain, and could sit on both sides of the split.")
    limits.append("No attribute of the people shown (age, gender, skin tone) is annotated, so how well "
                  "a detector trained here works for each group cannot be measured from this dataset.")
    if f.pending:
        limits.append(f"{_n(f.pending, 'image')} are not annotated: they are in `images/` but in no CSV file.")
    out += ["## Known limits", ""] + [f"- {line}" for line in limits] + [""]

    out += ["## Distribution", "",
            "Published with `make package`: one archive of `images/`, `annotations/`, `export/`, this card "
            "and `ATTRIBUTION.csv`. Its name carries the first 12 hex digits of the sha256 of its "
            "`SHA256SUMS` file, which lists the sha256 of every other file in it (check with "
            "`sha256sum -c SHA256SUMS`); the same content always gives the same archive, byte for byte. "
            "`CHANGELOG.md` lists the images added, removed and relabelled since the previous package.", "",
            "To have an image removed, send its file name, image URL, page or host to the publisher: "
            "`make takedown` removes every matching image from the next package and records the request.", ""]
    return "\n".join(out)


def _safe_for_spreadsheets(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (titles come from the web)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def attribution_csv(f: Facts) -> str:
    """One row per image in images/, sorted by file name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ATTRIBUTION_COLUMNS)
    for name, r in f.provenance.sort_index().iterrows():
        import_source = r.source_path + (f" ({r.import_format})" if r.source_path and r.import_format else "")
        writer.writerow([_safe_for_spreadsheets(v) for v in (
            name, f.sha256[name], r.origin, r.purl, r.murl, r.title, r.licence, import_source)])
    return buffer.getvalue()


# -- the stage ---------------------------------------------------------------------------------------
@dataclass
class CardResult(Result):
    facts: Facts
    card: Path
    attribution: Path

    def summary(self) -> str:
        f = self.facts
        per_class = ", ".join(f"{c} {n}" for c, n in f.boxes.items())
        parts = "; ".join(f"{p} {c['images']} images" for p, c in f.parts.items()) or "not split yet"
        scraped = sum(g["images"] for g in f.scraped)
        imported = sum(s["images"] for s in f.imported)
        taken = f.removed.get("takedown", 0)
        return (f"card: {f.images} images ({scraped} scraped, {imported} imported, {f.unknown_origin} of "
                f"unknown origin), {f.annotated} annotated ({per_class}); {parts}"
                + (f"; {taken} taken down" if taken else "")
                + f"\nwrote {self.card} and {self.attribution}")

    def to_json(self) -> dict:
        return {"card": str(self.card), "attribution": str(self.attribution), **self.facts.to_json()}


def build(dataset: Dataset, report=None, stage: str = "card", package: bool = False):
    """(Facts, card text, attribution text, Exports) for the dataset as it is now."""
    from .validate import validate
    if report is None:
        report = validate(dataset, progress=False, write_report=False)
    exports = current_exports(dataset, report, stage, package=package)
    found = facts(dataset, report, exports)
    return found, render(found), attribution_csv(found), exports


def write_card(dataset: Dataset, out: Path | str | None = None, report=None) -> CardResult:
    """Write DATASET.md and ATTRIBUTION.csv into out (default export/)."""
    folder = Path(out) if out else dataset.export
    if not out and not dataset.writable():
        raise MasksetError(f"{dataset.root}: read-only; pass OUT=<folder> to write the card elsewhere.")
    found, card_text, attribution, _ = build(dataset, report)
    card = atomic.write_text(folder / CARD, card_text)
    credits = atomic.write_text(folder / ATTRIBUTION, attribution)
    return CardResult(found, card, credits)
