"""`maskset annotate` and `maskset prelabel` (make annotate, make prelabel): thin over the cores."""
from __future__ import annotations

from dataset.cli import Command, Var


def annotate(dataset, args):
    from .annotate import annotate as run_annotate
    return run_annotate(dataset, all_images=args.all, prelabel=args.prelabel)


def prelabel(dataset, args):
    from .prelabel import prelabel as run_prelabel
    return run_prelabel(dataset, run=args.run, score=args.score, runs_dir=args.runs,
                        class_name=args.class_, calibrate=not args.no_calibration,
                        recalibrate=args.recalibrate, replace_drafts=args.replace_drafts, limit=args.limit)


COMMANDS = [
    Command("annotate", "labelImg on the images still to annotate, Pascal VOC into annotations/", annotate, (
        Var("ALL", "open every image, not only those still to do", bool),
        Var("PRELABEL", "first draft boxes with prelabel (a run folder/id, or 1 for the latest run / "
                        "the face detector); review the drafts in labelImg", metavar="RUN"),
    )),
    Command("prelabel", "draft VOC boxes for images nobody has annotated yet", prelabel, (
        Var("RUN", "a run folder or id (default: the latest run in RUNS; face for the packaged face detector)"),
        Var("RUNS", "where training runs are (default runs)", default="runs"),
        Var("SCORE", "minimum detection score (default 0.9 for the face detector, 0.5 for a run)", float),
        Var("CLASS", "class for face-detector boxes (default: the class people used most, else the first)"),
        Var("NO_CALIBRATION", "face-detector boxes as they are", bool),
        Var("RECALIBRATE", "learn the box calibration again", bool),
        Var("REPLACE_DRAFTS", "redraft images whose file is still an unreviewed draft", bool),
        Var("LIMIT", "draft at most this many images", int),
    )),
]
