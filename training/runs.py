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
            raise MasksetError(f"{runs_dir.resolve()}: no training runs yet. Run `make train` first "
                               f"(or pass RUN=runs/<id> / RUNS=<folder>).")
    if need and not (path / need).exists():
        raise MasksetError(f"{path}: has no {need}; the run did not finish an epoch. "
                           f"Continue it with `make train RESUME={path}` or pick another RUN=.")
    return path.resolve()


def read_state(run_dir: Path) -> dict:
    path = Path(run_dir) / SNAPSHOTS / STATE
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def read_log(run_dir: Path) -> list[dict]:
    """log.csv as a list of dicts with numbers as floats (epoch as int)."""
    path = Path(run_dir) / LOG
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({k: (int(v) if k == "epoch" else float(v) if v not in ("", None) else None)
                         for k, v in row.items()})
    return rows


def read_classes(run_dir: Path) -> dict[int, str]:
    """label -> class name, from the run's copy of classes.csv."""
    path = Path(run_dir) / CLASSES
    names = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if row:
                names[int(row[1])] = row[0]
    return names
