"""manifest.jsonl: one JSON record per line, appended atomically, never rewritten.

The first record for a file (event "added") says where it came from; later records (events
"quarantined", "restored", "fixed" ...) say what a stage decided. `state()` folds them into the
current record per file; `frame()` gives the same as a pandas table.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from . import jsonl
from .layout import Dataset

ADDED = "added"
QUARANTINED = "quarantined"
RESTORED = "restored"
REQUIRED = ("file", "event")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stamped(record: dict) -> dict:
    if not isinstance(record.get("file"), str) or not isinstance(record.get("event"), str):
        raise ValueError("a manifest record needs 'file' and 'event'")
    return {"time": now(), **record}


def append(dataset: Dataset, record: dict) -> dict:
    """Append one record (a `time` is added if missing). Requires `file` and `event`."""
    return append_many(dataset, [record])[0]


def append_many(dataset: Dataset, records: list[dict]) -> list[dict]:
    """Append a run's records in one durable write (one fsync, however many)."""
    records = [stamped(r) for r in records]
    jsonl.append(dataset.manifest, records)
    return records


def read_records(dataset: Dataset) -> list[dict]:
    """All records in order. A torn last line (a crash mid-append) is skipped with a warning; any
    other line that is not a record with "file" and "event" is an error naming the line."""
    return jsonl.read(dataset.manifest, required=REQUIRED).records


def state(dataset: Dataset, records: list[dict] | None = None) -> dict[str, dict]:
    """file name -> its current record (the added record updated by every later one)."""
    current: dict[str, dict] = {}
    for record in read_records(dataset) if records is None else records:
        current.setdefault(record["file"], {}).update(record)
    return current


def frame(dataset: Dataset, records: list[dict] | None = None):
    """state() as a pandas DataFrame, one row per file (index: file name)."""
    import pandas as pd
    current = state(dataset, records)
    table = pd.DataFrame.from_dict(current, orient="index")
    table.index.name = "file"
    return table


def known_sha256(dataset: Dataset, records: list[dict] | None = None) -> set[str]:
    return {r["sha256"] for r in (read_records(dataset) if records is None else records)
            if r.get("event") == ADDED and r.get("sha256")}
