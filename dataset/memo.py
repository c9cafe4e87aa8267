"""What a stage wrote last time and from what, so that a run with nothing changed does nothing.

A stage records, under .cache/memo/<stage>.json, the inputs its output was made from (a JSON
value: validate's signature of every file it saw, the options, classes.txt ...), the files it
wrote with their size and mtime, and its result. Next time, if the inputs are the same and every
file it wrote is still as it left it, `previous()` gives that result back and the stage need not
write again (as make skips a target that is up to date). Derived data: anything unreadable or
different means "do the work".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import atomic


def _path(dataset, stage: str) -> Path:
    return dataset.cache / "memo" / f"{stage}.json"


def _stat(path: Path) -> list | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def previous(dataset, stage: str, inputs) -> dict | None:
    """The result `stage` recorded for these inputs, if every file it wrote is unchanged since."""
    try:
        memo = json.loads(_path(dataset, stage).read_text(encoding="utf-8"))
        if memo.get("inputs") != json.loads(json.dumps(inputs)):
            return None
        if any(_stat(dataset.root / name) != stat for name, stat in memo["outputs"].items()):
            return None
        return memo["result"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record(dataset, stage: str, inputs, outputs: list[Path], result: dict) -> None:
    """Remember that `stage` made `outputs` (files inside the dataset) from `inputs`."""
    if not dataset.writable():
        return
    atomic.write_json(_path(dataset, stage), {
        "inputs": inputs, "result": result,
        "outputs": {str(Path(p).relative_to(dataset.root)): _stat(Path(p)) for p in outputs}}, indent=None)
