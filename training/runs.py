"""Run folders: runs/<id>/ holds one training run (config, log, snapshots, inference model, results)."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from dataset.errors import MasksetError

CONFIG = "config.json"
LOG = "log.csv"
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
SNAPSHOTS = "snapshots"
LAST = "last.h5"
BEST = "best.h5"
STATE = "state.json"          # snapshots/state.json: last epoch saved, best epoch and its mAP
INFERENCE = "inference.h5"
CLASSES = "classes.csv"
EVALUATION = "evaluation.json"
# a classifier run (make train-classifier, training/classifier.py): the face-crop classifier of the
# two-stage detector (training/twostage.py), its classes.csv and the box calibration it was learned with
CLASSIFIER = "classifier.h5"
CALIBRATION = "calibration.json"
RETINANET, TWO_STAGE = "retinanet", "two-stage"   # what detector a run folder makes


def detector(folder: Path) -> str:
    """TWO_STAGE for a classifier run (its config.json says kind "classifier"), else RETINANET."""
    return TWO_STAGE if read_json(Path(folder) / CONFIG).get("kind") == "classifier" else RETINANET


def new_run(runs_dir: Path, backbone: str) -> Path:
    """A fresh runs/<time>-<backbone>[-n]/ folder; never reuses an existing one."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{backbone}"
    for n in range(1000):
        candidate = runs_dir / (stem if n == 0 else f"{stem}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise MasksetError(f"{runs_dir}: cannot make a new run folder named {stem}.")


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def latest_run(runs_dir: Path | str, need: str | None = None) -> Path | None:
    """The most recently started run in runs_dir (by its config's time), or None.
    `need`: only runs holding that file (e.g. INFERENCE: runs that finished an epoch)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    runs = [p for p in runs_dir.iterdir() if p.is_dir() and is_run(p) and (need is None or (p / need).exists())]
    if not runs:
        return None
    return max(runs, key=lambda p: ((p / CONFIG).stat().st_mtime, p.name))


def resolve_run(runs_dir: Path | str, run: str | None, need: str | None = None) -> Path:
    """RUN= as a path, or an id inside runs_dir; unset: the latest run. `need`: a file it must hold."""
    runs_dir = Path(runs_dir)
    if run:
        path = Path(run)
        if not path.is_dir() and (runs_dir / run).is_dir():
            path = runs_dir / run
        if not is_run(path):
            raise MasksetError(f"RUN={run}: not a training run (no {CONFIG} in {path.resolve()}). "
                               f"Pass a folder under {runs_dir}/ made by `make train`.")
    else:
        path = latest_run(runs_dir, need=need)  # skip a run still in its first epoch
        if path is None:
            what = "classifier runs yet. Run `make train-classifier`" if need == CLASSIFIER else \
                "training runs yet. Run `make train`"
            raise MasksetError(f"{runs_dir.resolve()}: no {what} first (or pass RUN=runs/<id> / RUNS=<folder>).")
    if need and not (path / need).exists():
        if need == INFERENCE and detector(path) == TWO_STAGE:
            raise MasksetError(f"{path}: a classifier run of `make train-classifier`, not a RetinaNet run; "
                               f"add MODEL=two-stage to use it (face detector + this classifier).")
        if need == CLASSIFIER and detector(path) == RETINANET:
            raise MasksetError(f"{path}: a RetinaNet run of `make train`; MODEL=two-stage needs a classifier "
                               f"run of `make train-classifier` (leave RUN= unset for the latest), or drop "
                               f"MODEL=two-stage to use this run.")
        again = "Train it again with `make train-classifier`" if need == CLASSIFIER else \
            f"Continue it with `make train RESUME={path}`"
        raise MasksetError(f"{path}: has no {need}; the run did not finish an epoch. {again} or pick another RUN=.")
    return path.resolve()


def read_state(run_dir: Path) -> dict:
    path = Path(run_dir) / SNAPSHOTS / STATE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _value(key: str, text):
    if text in ("", None):
        return None
    try:
        number = float(text)
    except (TypeError, ValueError):
        return text
    return int(number) if key == "epoch" and number.is_integer() else number


def read_log(run_dir: Path) -> list[dict]:
    """log.csv as a list of dicts: numbers as floats (epoch as int), anything else as written.
    A damaged log gives the rows read before the damage."""
    path = Path(run_dir) / LOG
    if not path.exists():
        return []
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.append({k.strip(): _value(k.strip(), v) for k, v in row.items() if k is not None})
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return rows


def read_json(path: Path) -> dict:
    """A run's JSON file as a dict ({} when missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_settings(cls, path: Path, made_by: str, check=None):
    """A run's config.json as the settings dataclass `cls`: unreadable or unknown settings are an
    error naming the file; check(values) may refuse a config of another kind."""
    import dataclasses
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MasksetError(f"{path}: cannot read the run's config ({error}). "
                           f"Is this a run folder made by `{made_by}`?") from None
    if check is not None:
        check(values)
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise MasksetError(f"{path}: unknown settings {sorted(unknown)}; remove them.")
    return cls(**values)


def _started(folder: Path) -> float:
    for name in (CONFIG, LOG, EVALUATION):
        try:
            return (folder / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def trained_on(folder: Path, data: Path | str) -> bool:
    """Whether the run's config.json names this dataset folder (a run without one may be)."""
    recorded = read_json(Path(folder) / CONFIG).get("data")
    return not recorded or Path(recorded).resolve() == Path(data).resolve()


def recent(runs_dir: Path | str | None, data: Path | str | None = None, limit: int | None = None) -> list[Path]:
    """Run folders in runs_dir, newest first (by their config's time); with `data`, only those
    trained on that dataset."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    folders = [p for p in Path(runs_dir).iterdir() if p.is_dir() and not p.name.startswith(".")
               and any((p / f).exists() for f in (CONFIG, LOG, EVALUATION))]
    if data is not None:
        folders = [p for p in folders if trained_on(p, data)]
    folders.sort(key=lambda p: (_started(p), p.name), reverse=True)
    return folders[:limit]


def summary(folder: Path) -> dict:
    """What a report shows of a run: its mAP and AP per class (evaluation.json, else the log's
    last epoch), epochs, backbone, the plots it made, and its log rows."""
    log = read_log(folder)
    evaluation = read_json(folder / EVALUATION)
    config = read_json(folder / CONFIG)
    last = log[-1] if log else {}
    classes = {name: {"ap": entry.get("ap"), "instances": entry.get("instances")}
               for name, entry in (evaluation.get("classes") or {}).items() if isinstance(entry, dict)}
    if not classes:
        classes = {k[3:]: {"ap": v, "instances": None} for k, v in last.items()
                   if k.startswith("AP_") and isinstance(v, float)}
    m_ap = evaluation.get("mAP")
    if m_ap is None and isinstance(last.get("val_mAP"), float):
        m_ap = last["val_mAP"]
    maps = [r["val_mAP"] for r in log if isinstance(r.get("val_mAP"), float)]
    plot = lambda name: str(folder / name) if (folder / name).exists() else None  # noqa: E731
    return {"id": folder.name, "path": str(folder), "detector": detector(folder), "mAP": m_ap, "classes": classes,
            "epochs": len(log), "best_val_mAP": max(maps) if maps else None,
            "backbone": config.get("backbone"), "evaluated": bool(evaluation),
            "part": evaluation.get("part") or ("val" if evaluation else None),
            "coco": evaluation.get("coco"), "at": evaluation.get("at"), "best_f1": evaluation.get("best_f1"),
            "confusion": evaluation.get("confusion"), "evaluation_warnings": evaluation.get("warnings") or [],
            "scored": ((evaluation.get("data") or {}).get("digest") or {}).get("sha256"),  # the images it scored
            "errors_page": plot("evaluation-errors.html"),
            "curves_png": plot(CURVES), "pr_curve_png": plot("pr_curve.png"),
            "log": log}


def read_classes(run_dir: Path) -> dict[int, str]:
    """label -> class name, from the run's copy of classes.csv."""
    path = Path(run_dir) / CLASSES
    names = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if row:
                names[int(row[1])] = row[0]
    return names
