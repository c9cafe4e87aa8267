"""Moving files inside a dataset as one crash-safe change: quarantine, restore, takedown, relabel.

A change is a list of Moves, each some files (image first, then its VOC file) and the manifest
record that says it happened. The whole change is written to a journal first; then the files
move; then every record is appended in one durable write, and the journal goes. A run killed at
any point is finished by recover(): a move whose image arrived is completed (its VOC file moved
too) and recorded; a move that had not started is dropped. Every path is relative to the
dataset and is checked to stay inside it.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, jsonl, manifest
from .errors import MasksetError
from .faults import point
from .layout import Dataset

log = logging.getLogger(__name__)


@dataclass
class Move:
    files: list[tuple[str, str]]   # (from, to), relative to the dataset root; the image first
    record: dict                   # the manifest record, once the files have moved
    extra: dict = field(default_factory=dict)


def _journal(dataset: Dataset, kind: str) -> Path:
    return dataset.journal / f"{kind}.jsonl"


def free_destinations(dataset: Dataset, wanted: list[str]) -> list[str]:
    """Each wanted relative path, or with -1, -2 ... when that name is taken (on disk or by an
    earlier one in the list): destinations are fixed before anything moves."""
    taken: set[str] = set()
    chosen = []
    for rel in wanted:
        path = Path(rel)
        candidate, n = path, 0
        while str(candidate) in taken or (dataset.root / candidate).exists():
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        taken.add(str(candidate))
        chosen.append(str(candidate))
    return chosen


def _move_exact(dataset: Dataset, source: str, target: str) -> bool:
    """Move one file to exactly `target` (never over an existing file). False when the source is
    gone and the target is there: moved already."""
    src = dataset.inside(source, "file to move")
    dst = dataset.inside(target, "destination")
    if not src.exists() and dst.exists():
        return False
    if dst.exists() and os.path.samefile(src, dst):  # linked, then killed before the unlink
        os.unlink(src)
        return True
    if dst.exists():
        raise MasksetError(f"{dst}: exists already; maskset never moves a file over another. "
                           f"Move one of them aside by hand, then run again.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # fails if dst appeared meanwhile: never clobbers
    except OSError:
        atomic.copy_file(src, dst)
    point(f"linked {dst.name}")
    os.unlink(src)
    point(f"moved {src.name}")
    return True


def carry_out(dataset: Dataset, kind: str, moves: list[Move], log_file: Path | None = None,
              progress_bar=None) -> list[dict]:
    """Journal, move, record (see the module docstring). Returns the records written."""
    if not moves:
        return []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for number, move in enumerate(moves):
        move.record = manifest.stamped({**move.record, "op": f"{kind}-{stamp}-{os.getpid()}-{number}"})
    atomic.write_text(_journal(dataset, kind), "".join(
        jsonl.dumps({"files": m.files, "record": m.record}) + "\n" for m in moves))
    for move in (progress_bar(moves) if progress_bar else moves):
        for source, target in move.files:
            _move_exact(dataset, source, target)
    atomic.sync_tree(dataset.root)
    records = [m.record for m in moves]
    manifest.append_many(dataset, records)
    if log_file is not None:
        jsonl.append(log_file, records)
    _journal(dataset, kind).unlink()
    point(f"{kind} journal removed")
    return records


def recover(dataset: Dataset, kind: str, log_file: Path | None = None) -> int:
    """Finish a change of this kind that was killed. Returns how many moves were recorded now."""
    path = _journal(dataset, kind)
    if not path.exists():
        return 0
    entries = jsonl.read(path, strict=False).records
    recorded = {r.get("op") for r in manifest.read_records(dataset) if r.get("op")}
    finished = []
    for entry in entries:
        record, files = entry.get("record") or {}, entry.get("files") or []
        if not files or record.get("op") in recorded:
            continue
        image_from, image_to = files[0]
        if not (dataset.root / image_to).exists():
            continue  # the image never moved: nothing happened for this one
        try:
            for source, target in files:  # the rest of the move the kill interrupted
                if (dataset.root / source).exists():
                    _move_exact(dataset, source, target)
        except MasksetError as error:
            log.warning("%s: cannot finish an interrupted %s: %s", dataset.root, kind, error)
            continue
        finished.append(record)
    manifest.append_many(dataset, finished)
    if log_file is not None:
        jsonl.append(log_file, finished)
    path.unlink()
    if finished:
        log.warning("%s: finished %d moves of an interrupted %s", dataset.root, len(finished), kind)
    return len(finished)
