"""`maskset train | train-classifier | evaluate | detect | export-model | weights` (the make targets): thin over the cores.

TensorFlow is imported only when one of them runs.
"""
from __future__ import annotations

import json
from pathlib import Path

from dataset.cli import Command, Var, yes_no
from dataset.errors import MasksetError

from .config import DEFAULT_EPOCHS, DEFAULT_LR

SETTINGS = ("epochs", "steps", "batch", "backbone", "weights", "lr", "image_min_side", "image_max_side",
            "freeze_backbone", "random_transform", "val_from")


def train(dataset, args):
    from . import runs
    from .config import TrainConfig
    from .train import TrainResult, config_from_dataset, train as run_train
    settings = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if args.train_seed is not None:
        settings["seed"] = args.train_seed
    if args.resume:
        run_dir = Path(args.resume)
        if not runs.is_run(run_dir) and runs.is_run(Path(args.runs) / args.resume):
            run_dir = Path(args.runs) / args.resume
        config = TrainConfig.from_json(runs.resolve_run(args.runs, str(run_dir)) / runs.CONFIG)
        others = set(settings) - {"epochs"}
        if others:
            raise MasksetError(f"RESUME={args.resume} continues the run with its own config.json; only "
                               f"EPOCHS= may change. Drop {', '.join(sorted(o.upper() for o in others))}.")
        config.epochs = settings.get("epochs", config.epochs)
        if args.devices:  # the machine may have changed; the run's results do not depend on it
            config.devices = args.devices
        run_dir = run_train(config, args.runs, resume=run_dir)
    else:
        if args.config:
            base = TrainConfig.from_json(Path(args.config)).to_json()
            for key in ("weights_file", "device", "device_names", "replicas", "per_replica_batch"):
                base.pop(key, None)
            base.update(settings)
            config = TrainConfig(**base)
        else:
            config = config_from_dataset(dataset.root, **settings)
        if args.devices:
            config.devices = args.devices
        run_dir = run_train(config, args.runs)
    return TrainResult(run_dir, runs.read_state(run_dir))


def two_stage(args) -> bool:
    """MODEL=two-stage: the face detector + classifier of `make train-classifier` (training/twostage.py).
    Any other MODEL= names an exported model (make export-model), which make detect runs."""
    from .twostage import wanted
    return wanted(getattr(args, "model", None))


def train_classifier(dataset, args):
    from .classifier import result_for, train_classifier as run
    settings = {key: getattr(args, key) for key in ("backbone", "weights", "epochs", "batch", "lr", "size", "margin",
                                                     "min_box", "augment") if getattr(args, key) is not None}
    if args.train_seed is not None:
        settings["seed"] = args.train_seed
    return result_for(run(dataset, args.runs, **settings))


def evaluate(dataset, args):
    from . import runs
    if two_stage(args):
        from .twostage import evaluate_command
        return evaluate_command(dataset, args)
    if (args.model or "").strip():
        raise MasksetError(f"MODEL={args.model}: make evaluate scores MODEL=two-stage or a RetinaNet run (RUN=, "
                           f"default the latest). An exported model is checked against its run's Keras model "
                           f"by make export-model, which lists every disagreement.")
    from .evaluate import EvaluationResult, evaluate_run
    run_dir = runs.resolve_run(args.runs, args.run, need=runs.INFERENCE)
    numbers = evaluate_run(run_dir, dataset.root if dataset else None, score=args.score, iou=args.iou,
                           part=args.part, at=args.at)
    return EvaluationResult(numbers, run_dir)


def detect(dataset, args):
    from . import runs
    if two_stage(args):
        from .twostage import detect_command
        return detect_command(args)
    from .detect import DetectResult, detect as run_detect, load_exported_model, load_inference_model
    if args.model and args.run:
        raise MasksetError("pass RUN= (a run's Keras model) or MODEL= (an exported model), not both.")
    if args.model and not Path(args.model).exists():
        raise MasksetError(f"MODEL={args.model}: neither two-stage nor an exported model (no such file or folder). "
                           f"Use MODEL=two-stage (MTCNN faces + the classifier of `make train-classifier`), or "
                           f"export a run with `make export-model FORMAT=savedmodel|tflite|onnx|ncnn`.")
    if sum(x is not None for x in (args.image, args.dir, args.video, args.source)) != 1:
        raise MasksetError("pass exactly one of IMAGE=<file>, DIR=<folder>, VIDEO=<file> or "
                           "SOURCE=<camera index|/dev/videoN|stream URL|video file>.")
    source = None
    if args.source is not None:  # open it first: a camera that is not there fails before a model loads
        from .live import FrameSource
        source = FrameSource(args.source)
    try:
        if args.model:
            model = load_exported_model(args.model, args.threads)
        else:
            model = load_inference_model(runs.resolve_run(args.runs, args.run, need=runs.INFERENCE))
        if source is not None:
            from .live import run_live
            return run_live(model, source, Path(args.out) if args.out else None, args.show, score=args.score,
                            max_frames=args.max_frames)
    except BaseException:
        if source is not None:
            source.close()
        raise
    out = run_detect(model.run_dir, args.image, args.dir, args.video, args.score,
                     Path(args.out) if args.out else None, model=model)
    inputs = json.loads((out / "detections.json").read_text())["inputs"]
    return DetectResult(out, inputs, args.score)


def export_model(dataset, args):
    from . import runs
    from .export_model import export_run
    run_dir = runs.resolve_run(args.runs, args.run, need=runs.INFERENCE)
    return export_run(run_dir, args.format, args.graph, Path(args.out) if args.out else None,
                      dataset.root if dataset is not None and dataset.root.is_dir() else None,
                      args.images, args.threads)


def weights(_dataset, args):
    from dataset.manifest import sha256_file
    from dataset.results import Message
    from .weights import URL, fetch
    path = fetch(args.weights_url or URL, Path(args.weights_cache) if args.weights_cache else None, args.sha256)
    return Message(f"{path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(path)}): "
                   f"`make train` uses it by default (WEIGHTS=auto or coco).")


RUNS = Var("RUNS", "the runs folder (default runs)", default="runs")


def _need_format(args) -> None:
    if not args.format:
        raise MasksetError("FORMAT= is needed: savedmodel, tflite, onnx or ncnn (see docs/deploy.md).")

def _classifier():
    from . import classifier
    return classifier

MODEL = Var("MODEL", "two-stage: MTCNN faces + the classifier of `make train-classifier` (RUN= then names a "
                     "classifier run; default the latest); unset: the RetinaNet run")

COMMANDS = [
    Command("train", "train keras-retinanet RetinaNet on export/train.csv (val.csv for val mAP)", train, (
        Var("EPOCHS", f"epochs (default {DEFAULT_EPOCHS})", int),
        Var("STEPS", "steps per epoch (default: one pass over train.csv)", int),
        Var("BATCH", "batch size (default 8 on a GPU, 1 on a CPU)", int),
        Var("BACKBONE", "resnet50 (default), resnet101, resnet152, ..."),
        Var("WEIGHTS", "auto (default: COCO if `make weights` ran, else ImageNet), coco, imagenet, none, "
                       "or a .h5 file"),
        Var("LR", f"learning rate (default {DEFAULT_LR:g})", float),
        Var("IMAGE_MIN_SIDE", "resize so the short side is this (default 800)", int),
        Var("IMAGE_MAX_SIDE", "... and the long side at most this (default 1333)", int),
        Var("FREEZE_BACKBONE", "1 (default) or 0", yes_no),
        Var("RANDOM_TRANSFORM", "1 (default) or 0: augment (flip, rotate, shear, colour)", yes_no),
        Var("TRAIN_SEED", "random seed (default: a random one, saved in config.json)", int),
        Var("VAL_FROM", "the first epoch scored on val (default 1; the last epoch always is; the best "
                        "snapshot is chosen among the scored ones)", int),
        Var("RESUME", "runs/<id>: continue that run from its last snapshot"),
        Var("CONFIG", "a run's config.json: train again with the same settings"),
        Var("DEVICES", "1 (default), N or all: data-parallel over N devices (MirroredStrategy; GPUs, or "
                       "N logical CPU devices where there is none); BATCH is split over them"),
        RUNS,
    ), data="optional", lock=None),
    Command("train-classifier", "the two-stage detector's mask/no-mask classifier on face crops cut from the "
                                "split's parts (train; val for the best epoch)", train_classifier, (
        Var("BACKBONE", "small (default: a small CNN), mobilenetv2, resnet50, xception, efficientnetb0, ... "
                        "(keras.applications, weights=None)"),
        Var("WEIGHTS", "none (default: from scratch), a .h5 weights file (the backbone's no-top file, or a "
                       "classifier's) or a classifier run; nothing is downloaded"),
        Var("EPOCHS", lambda: f"epochs (default {_classifier().DEFAULT_EPOCHS})", int),
        Var("BATCH", lambda: f"batch size (default {_classifier().DEFAULT_BATCH})", int),
        Var("LR", lambda: f"learning rate (default {_classifier().DEFAULT_LR:g})", float),
        Var("SIZE", lambda: f"crops are resized to SIZE x SIZE pixels (default {_classifier().DEFAULT_SIZE})", int),
        Var("MARGIN", lambda: f"each box grown by this share of its width and height per side (default "
                              f"{_classifier().DEFAULT_MARGIN:g})", float),
        Var("MIN_BOX", lambda: f"boxes with a shorter side under this many pixels are too small to classify: "
                               f"counted, left out (default {_classifier().MIN_BOX})", int),
        Var("AUGMENT", "1 (default) or 0: flips, shifts, zooms, brightness and contrast", yes_no),
        Var("TRAIN_SEED", lambda: f"random seed (default {_classifier().DEFAULT_SEED})", int),
        RUNS,
    ), data="existing", lock=None),
    Command("evaluate", "a run's figures on the test part (val if there is none, with a warning): AP per "
                        "class, COCO mAP, P/R/F1, confusion matrix, error page", evaluate, (
        Var("RUN", "runs/<id> (default: the latest run)"),
        RUNS,
        MODEL,
        Var("PART", "test, val or train (default: test if the split has one, else val)",
            choices=("test", "val", "train")),
        Var("AT", "score threshold for precision, recall, F1 and the confusion matrix (default 0.5)", float, 0.5),
        Var("SCORE", "drop detections scoring below this (default 0.05)", float, 0.05),
        Var("IOU", "IoU for a true positive (default 0.5)", float, 0.5),
    ), data="optional", lock=None),
    Command("detect", "run a trained model on images, a video, or live input (a camera, a stream): boxes "
                      "drawn, detections as JSON", detect, (
        Var("RUN", "runs/<id> (default: the latest run)"),
        RUNS,
        Var("MODEL", "two-stage (MTCNN faces + the classifier of `make train-classifier`; RUN= then names a "
                     "classifier run), or an exported model (make export-model: .onnx, .tflite, savedmodel/ or "
                     ".ncnn.param, run by its own runtime); unset: the run's Keras RetinaNet"),
        Var("IMAGE", "one image"),
        Var("DIR", "a folder of images"),
        Var("VIDEO", "a video file (every frame, an annotated copy)"),
        Var("SOURCE", "live input: a camera index (0), /dev/videoN, rtsp:// or http(s):// stream, or a video "
                      "file; one JSON line per frame, stale frames dropped"),
        Var("SHOW", "1: with SOURCE=, a live window (q quits); headless when there is no display", yes_no, False),
        Var("MAX_FRAMES", "with SOURCE=, stop after this many frames", int),
        Var("SCORE", "score threshold (default 0.5)", float, 0.5),
        Var("OUT", "output folder (default: <run>/detect/<time>); with SOURCE=, the video to record (.mp4)"),
        Var("THREADS", "threads for an exported model's runtime (default: the runtime's own)", int),
    ), data="optional", lock=None),
    Command("export-model", "a run's inference model as a TF SavedModel, TFLite, ONNX or ncnn file, checked "
                            "against the Keras model on the run's val images", export_model, (
        Var("RUN", "runs/<id> (default: the latest run)"),
        RUNS,
        Var("FORMAT", "savedmodel, tflite, onnx or ncnn (the fastest on a CPU)",
            choices=("savedmodel", "tflite", "onnx", "ncnn")),
        Var("GRAPH", "full, raw or heads: how much of the graph the file holds (default: what converts "
                     "correctly; tflite raw, ncnn heads)", choices=("full", "raw", "heads")),
        Var("OUT", "output folder (default: <run>/export)"),
        Var("IMAGES", "check on the first N val images (default: all)", int),
        Var("THREADS", "runtime threads during the check (default: the runtime's own)", int),
    ), data="optional", lock=None, precheck=_need_format),
    Command("weights", "download and check the COCO ResNet50 RetinaNet weights", weights, (
        Var("WEIGHTS_URL", "where to download from"),
        Var("WEIGHTS_CACHE", "cache folder"),
        Var("SHA256", "the sha256 the file must have"),
    ), data="none", lock=None),
]
