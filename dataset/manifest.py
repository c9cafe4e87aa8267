"""manifest.jsonl: one JSON record per line, appended atomically, never rewritten.

The first record for a file (event "added") says where it came from; later records (events
"quarantined", "restored", "fixed" ...) say what a stage decided. `state()` folds them into the
current record per file.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from . import atomic
from .layout import Dataset

ADDED = "added"
QUARANTINED = "quarantined"
RESTORED = "restored"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def append(dataset: Dataset, record: dict) -> dict:
    """Append one record (a `time` is added if missing). Requires `file` and `event`."""
    if "file" not in record or "event" not in record:
        raise ValueError("a manifest record needs 'file' and 'event'")
    record = {"time": now(), **record}
    dataset.root.mkdir(parents=True, exist_ok=True)
    atomic.append_line(dataset.manifest, json.dumps(record, sort_keys=True, ensure_ascii=False))
    return record


def read_records(dataset: Dataset) -> list[dict]:
    """All records in order. A torn last line (a crash mid-append) is skipped with a warning."""
    if not dataset.manifest.exists():
        return []
    records = []
    lines = dataset.manifest.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if number >= len(lines) - 1:
                print(f"warning: {dataset.manifest}:{number}: incomplete last line skipped "
                      f"(left by an interrupted write)", file=sys.stderr)
                continue
            from .errors import MasksetError
            raise MasksetError(
                f"{dataset.manifest}:{number}: not a JSON record. The manifest is append-only; "
                f"restore this line from a backup or remove it by hand."
            ) from None
    return records


def state(dataset: Dataset, records: list[dict] | None = None) -> dict[str, dict]:
    """file name -> its current record (the added record updated by every later one)."""
    current: dict[str, dict] = {}
    for record in read_records(dataset) if records is None else records:
        merged = current.setdefault(record["file"], {})
        merged.update(record)
    return current


def known_sha256(dataset: Dataset, records: list[dict] | None = None) -> set[str]:
    return {r["sha256"] for r in (read_records(dataset) if records is None else records)
            if r.get("event") == ADDED and r.get("sha256")}
