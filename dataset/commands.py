"""The dataset stages as `maskset` commands (and make targets): thin over the cores.

Each command reads its options (make variables), and calls one core, which returns a Result;
dataset/cli.py checks the dataset, holds the lock, prints the summary and sets the exit code.
Cores are imported when a command runs, so `maskset --help` stays quick.
"""
from __future__ import annotations

from pathlib import Path

from .cli import Command, Var
from .errors import MasksetError


def _defaults() -> tuple[int, int]:
    """The duplicate finder's thresholds (dataset.neighbours: imported only when needed)."""
    from .neighbours import DEFAULT_DHASH_THRESHOLD, DEFAULT_THRESHOLD
    return DEFAULT_THRESHOLD, DEFAULT_DHASH_THRESHOLD


THRESHOLDS = (
    Var("THRESHOLD", lambda: f"pHash Hamming distance (of 64 bits) at or below which two images are near "
                             f"duplicates (default {_defaults()[0]}; 0 = identical-looking only)", int),
    Var("DHASH_THRESHOLD", lambda: f"... and their dHashes within this many bits (of 128): the second opinion "
                                   f"(default {_defaults()[1]}; 128 = pHash alone)", int),
)
# split keeps the thresholds its record was drawn with unless they are given
SPLIT_THRESHOLDS = tuple(Var(v.name, lambda v=v: v.help().replace("(default", "(default: the split's own, or"),
                             int) for v in THRESHOLDS)


def sample(_dataset, args):
    from .fixtures.scenes import make_sample
    from .results import Message
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise MasksetError(f"SIZE={args.size}: give WIDTHxHEIGHT, e.g. SIZE=320x240") from None
    paths = make_sample(args.out, args.count, (width, height), args.seed, args.duplicates,
                        annotate=not args.no_annotations)
    return Message(f"sample: {len(paths)} images written to {args.out}")


def import_(dataset, args):
    from .formats import read_source
    from .importer import ClassMap, check_source, import_source
    if not (args.src or args.images):
        raise MasksetError("nothing to import: pass SRC=<folder> (e.g. make import SRC=../shared/data/seed-voc)")
    class_map = ClassMap.parse(args.classes, args.drop)
    src = check_source(args.src or args.images, dataset.root)
    source = read_source(src, args.format, args.images, args.annotations)
    return import_source(dataset, source, class_map, link=args.link)


def check_import(args):
    from .importer import check_source
    if args.src or args.images:
        check_source(args.src or args.images, args.data)


def dedupe(dataset, args):
    from .dedupe import dedupe as run_dedupe
    threshold, dhash_threshold = _defaults()
    return run_dedupe(dataset, threshold if args.threshold is None else args.threshold, args.dry_run,
                      progress=not args.quiet,
                      dhash_threshold=dhash_threshold if args.dhash_threshold is None else args.dhash_threshold)


def restore(dataset, args):
    from .restore import restore as run_restore
    return run_restore(dataset, args.files or None, progress=not args.quiet, takedown=args.takedown)


def takedown(dataset, args):
    from .takedown import Request, takedown as run_takedown
    request = Request.make(args.url, args.host, args.file, args.query, args.reason)
    return run_takedown(dataset, request, progress=not args.quiet)


def check_takedown(args):
    from .takedown import Request
    Request.make(args.url, args.host, args.file, args.query, args.reason)


def card(dataset, args):
    from .card import write_card
    return write_card(dataset, out=args.out)


def package(dataset, args):
    from .package import package as run_package
    return run_package(dataset, out=args.out, version=args.version, progress=not args.quiet)


def validate(dataset, args):
    from .validate import fix, validate as run_validate
    report = run_validate(dataset, include_drafts=args.include_drafts, recheck=args.recheck)
    if args.fix:
        report = fix(dataset, report, args.include_drafts)
    return report


def export(dataset, args):
    from .export import export as run_export, parse_resize
    if args.format and args.format != "csv":
        from .formats import export_format
        if args.resize:
            raise MasksetError(f"RESIZE= is for the keras-retinanet CSV; FORMAT={args.format} exports the images "
                               f"as they are. Leave RESIZE= out.")
        return export_format(dataset, args.format, args.skip_difficult, args.include_drafts)
    return run_export(dataset, args.skip_difficult, args.include_drafts, resize=parse_resize(args.resize))


def relabel(dataset, args):
    from .relabel import parse_map, relabel as run_relabel
    return run_relabel(dataset, parse_map(args.map))


def split(dataset, args):
    from .split import make_split
    return make_split(dataset, args.val, args.seed, args.threshold, progress=not args.quiet,
                      dhash_threshold=args.dhash_threshold, test=args.test, resplit=args.resplit,
                      folds=args.folds)


def leakcheck(dataset, args):
    from .leakcheck import run
    if not args.other:
        raise MasksetError("nothing to check against: pass OTHER=<folder | CSV | COCO json>, e.g. "
                           "make leakcheck OTHER=../coco/annotations/instances_val2017.json")
    return run(dataset, args.other, args.part, args.threshold, args.dhash_threshold, args.other_images,
               Path(args.out) if args.out else None, progress=not args.quiet)


def report(dataset, args):
    from .report_page import write_report
    page, result = write_report(dataset, args.runs, out=Path(args.out) if args.out else None,
                                min_side=args.image_min_side, max_side=args.image_max_side,
                                max_runs=args.max_runs)
    return result


COMMANDS = [
    Command("sample", "render a small labelled sample dataset (a labelImg folder)", sample, (
        Var("OUT", "the folder to write (default sample)", default="sample"),
        Var("COUNT", "how many scenes (default 40)", int, 40),
        Var("SIZE", "WIDTHxHEIGHT (default 320x240)", default="320x240"),
        Var("SEED", "random seed (default 0)", int, 0),
        Var("DUPLICATES", "exact and near copies to add (default 4)", int, 4),
        Var("NO_ANNOTATIONS", "images only", bool),
    ), data="none", lock=None),
    Command("import", "bring another dataset in (labelImg/VOC, COCO, YOLO or keras-retinanet CSV), all or "
                      "nothing", import_, (
        Var("SRC", "the dataset to import: a labelImg folder (flat, or images/ + annotations/), a COCO "
                   "instances*.json (or its folder), a YOLO folder (images/ + labels/ + data.yaml) or a "
                   "keras-retinanet CSV (or its folder)"),
        Var("FORMAT", "voc, coco, yolo or csv (default: told from SRC; asked for when SRC could be several)",
            str.lower, choices=("voc", "coco", "yolo", "csv")),
        Var("IMAGES", "the image folder, when it is not inside SRC (VOC, COCO)"),
        Var("ANNOTATIONS", "the annotation folder, when it is not inside SRC"),
        Var("CLASSES", 'rename classes on the way in: "with_mask=mask,without_mask=no_mask"'),
        Var("DROP", "leave these classes out: face,other"),
        Var("LINK", "hard-link images instead of copying them (same file system; no bytes copied): fast, but "
                    "a later in-place write to either file changes both", bool),
    ), data="create", precheck=check_import),
    Command("dedupe", "exact and near duplicates: keep the best copy, quarantine the rest", dedupe, (
        *THRESHOLDS,
        Var("DRY_RUN", "write the review page and report, move nothing", bool),
        Var("QUIET", "no progress bars", bool),
    )),
    Command("restore", "put quarantined duplicates back (all, or FILES=); TAKEDOWN=1: taken-down images",
            restore, (
        Var("FILES", "only these files (duplicates named here are then kept by later dedupe runs)", many=True),
        Var("TAKEDOWN", "bring back taken-down images (make takedown) instead of duplicates", bool),
        Var("QUIET", "no progress bars", bool),
    )),
    Command("takedown", "quarantine every image a removal request names, with its annotation", takedown, (
        Var("URL", "the image's URL or its page's URL, exactly as ATTRIBUTION.csv lists it"),
        Var("HOST", "every image whose image or page URL is on this host (or its subdomains)"),
        Var("FILE", "these files of images/ (space-separated)", many=True),
        Var("QUERY", "every image a scrape with this query found"),
        Var("REASON", "why (recorded with the request), e.g. \"the site owner's email of 2024-05-01\""),
        Var("QUIET", "no progress bars", bool),
    ), precheck=check_takedown),
    Command("validate", "check every VOC file against its real image", validate, (
        Var("FIX", "apply the safe fixes, keeping originals in quarantine/fixed/", bool),
        Var("INCLUDE_DRAFTS", "validate unreviewed drafts as annotations", bool),
        Var("RECHECK", "check every file again, decoding every image (unchanged files are otherwise "
                       "remembered)", bool),
    ), lock=lambda args: "write" if args.fix else "read"),
    Command("export", "training files: keras-retinanet's CSV (export/annotations.csv, classes.csv), or "
                      "FORMAT=coco|yolo|voc under export/<format>/", export, (
        Var("FORMAT", "csv (default), coco (instances_<part>.json), yolo (ultralytics, data.yaml) or voc "
                      "(a plain Pascal VOC folder); one part per part of the split", str.lower,
            choices=("csv", "coco", "yolo", "voc")),
        Var("SKIP_DIFFICULT", "leave out objects marked difficult", bool),
        Var("INCLUDE_DRAFTS", "export unreviewed prelabel drafts too", bool),
        Var("RESIZE", "MINxMAX: point the CSV at copies pre-resized as training resizes them (800x1333)"),
    )),
    Command("relabel", "rename classes across the dataset (MAP=\"noMask=no_mask\"), or merge several into one",
            relabel, (
        Var("MAP", 'old=new pairs: "noMask=no_mask"; "a=x,b=x" merges a and b into x'),
    )),
    Command("split", "train/val/test without duplicate leakage, kept stable as the dataset grows", split, (
        Var("VAL", "share of boxes (per class) and images for validation (default 0.2; a kept split: "
                   "its own)", float),
        Var("TEST", "share for the test part (default 0: no test part; a kept split: its own)", float),
        Var("SEED", "random seed (default 0)", int),
        Var("RESPLIT", "1: draw train and val again (test stays); test: all three. The old split.json "
                       "is kept beside. Unset: keep every earlier image where it is, place new ones"),
        Var("FOLDS", "also write k grouped, stratified cross-validation folds of train+val "
                     "(export/folds/; later runs keep them, FOLDS=0 drops them)", int),
        *SPLIT_THRESHOLDS,
        Var("QUIET", "no progress bars", bool),
    )),
    Command("leakcheck", "near duplicates between this dataset (or one part) and another image set; "
                         "exit 1 on any", leakcheck, (
        Var("OTHER", "the other image set: a folder, a CSV (path,...) or a COCO annotation file (.json)"),
        Var("PART", "train, val, test or all (default: all of images/)", default="all",
            choices=("all", "train", "val", "test")),
        Var("OTHER_IMAGES", "the folder holding a COCO file's images (default: found beside it)"),
        *THRESHOLDS,
        Var("OUT", "write leakcheck.html and .json here instead of export/ (for a read-only dataset)"),
        Var("QUIET", "no progress bars", bool),
    ), lock="read"),
    Command("card", "export/DATASET.md (the dataset's datasheet) and export/ATTRIBUTION.csv", card, (
        Var("OUT", "write them into this folder instead of export/ (for a read-only dataset)"),
    ), lock="read"),
    Command("package", "a reproducible archive: images, annotations, exports, card, attribution, changelog",
            package, (
        Var("OUT", "the packages folder (default DATA/packages)"),
        Var("VERSION", "the version in its name (default: the date the newest image was added)"),
        Var("QUIET", "no progress bars", bool),
    )),
    Command("report", "export/report.html and report.json: the dataset at a glance", report, (
        Var("RUNS", "the training runs folder (default runs)", default="runs"),
        Var("OUT", "write the report here instead of export/ (for a read-only dataset)"),
        Var("IMAGE_MIN_SIDE", "training's image-min-side, for the tiny-box count (default 800)", int, 800),
        Var("IMAGE_MAX_SIDE", "training's image-max-side (default 1333)", int, 1333),
        Var("MAX_RUNS", "how many of the latest runs to show (default 5)", int, 5),
    ), lock="snapshot"),
]
