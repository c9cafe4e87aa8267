"""Saving accepted images: named by content hash, one manifest record each, safe to kill.

Order of writes per image: (1) the full manifest record to a pending journal, (2) the image
(atomic temp + rename), both in the download threads (stage), then (3) the manifest record on
the one main thread (commit). A kill -9 between (2) and (3) leaves an image that the next run
finds in the journal and records (recover), so manifest and images agree.
Rejections and duplicates go to export/scrape-log.jsonl with their URL; a URL that failed for a
lasting reason (404, not an image, duplicate ...) is not fetched again on the next run.
"""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from dataset import atomic, jsonl, manifest
from dataset.layout import Dataset

NAME = re.compile(r"^[0-9a-f]{16}\.(jpg|png|bmp)$")
TRANSIENT = {"timeout", "connection", "request-error"}  # worth trying again next run


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object a line (the rejection log, the pending journal); [] if there is no file.
    A torn or damaged line is skipped with a warning: harmless here."""
    return jsonl.read(path, strict=False).records


def is_transient(reason: str) -> bool:
    return reason in TRANSIENT or reason == "http-429" or reason.startswith("http-5")


class Store:
    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.log_path = dataset.export / "scrape-log.jsonl"
        self.pending_path = dataset.cache / "scrape" / "pending.jsonl"
        self.pending_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._staged: set[str] = set()
        records = manifest.read_records(dataset)
        self.sha256 = manifest.known_sha256(dataset, records)
        self.sha256 |= {r["source_sha256"] for r in records
                        if r.get("event") == manifest.ADDED and r.get("source_sha256")}
        self.murls = {r["murl"] for r in records if r.get("event") == manifest.ADDED and r.get("murl")}
        self.files = {r["file"] for r in records}
        self.records = records
        self.skip_murls = {entry["url"]: entry["reason"] for entry in read_jsonl(self.log_path)
                           if not is_transient(entry.get("reason", ""))}

    # -- what is known -------------------------------------------------------------------------
    def count_for_query(self, query: str) -> int:
        """Images this dataset holds from `query` (scraped, any engine, any run)."""
        current = manifest.state(self.dataset, self.records)
        return sum(1 for r in current.values()
                   if r.get("origin") == "scrape" and r.get("query") == query
                   and r.get("event") != manifest.QUARANTINED)

    # -- after a crash -------------------------------------------------------------------------
    def recover(self) -> int:
        """Record images a killed run wrote but did not record; drop our own temp files."""
        recovered = 0
        if self.pending_path.exists():
            for record in read_jsonl(self.pending_path):
                path = self.dataset.images / record["file"]
                if (record["file"] not in self.files and path.exists()
                        and manifest.sha256_file(path) == record["sha256"]):
                    self._record(record)
                    recovered += 1
            atomic.write_text(self.pending_path, "")
        if self.dataset.images.is_dir():
            for temp in self.dataset.images.iterdir():
                if NAME.match(atomic.temp_target(temp.name) or ""):
                    temp.unlink()  # a half-written image of ours: never a user's file
        return recovered

    # -- saving --------------------------------------------------------------------------------
    def stage(self, data: bytes, suffix: str, record: dict) -> dict | None:
        """Steps (1) and (2), safe from many download threads at once: journal the record and
        write images/<sha256[:16]><suffix>. Returns the full record for commit(), or None when
        these bytes are already in the dataset (or being staged by another thread)."""
        sha = hashlib.sha256(data).hexdigest()
        source = record.get("source_sha256")
        with self._lock:
            if sha in self.sha256 or sha in self._staged or source in self.sha256:
                return None
            self._staged.add(sha)
        name = sha[:16] + suffix
        target = self.dataset.images / name
        if target.exists() and manifest.sha256_file(target) != sha:
            target = atomic.unique_path(target)  # a stranger's file by that name: keep it
            name = target.name
        record = {**record, "file": name, "event": manifest.ADDED, "sha256": sha, "origin": "scrape",
                  "time": manifest.now()}
        jsonl.append(self.pending_path, record)
        if not target.exists():
            atomic.write_bytes(target, data)
        # what check_image learned when it decoded the image (width, height, format) belongs to
        # this file while its size and mtime stay as recorded: validate then need not decode it
        return {**record, "mtime_ns": target.stat().st_mtime_ns}

    def commit(self, record: dict) -> None:
        """Step (3), from one thread only: the manifest record."""
        self._record(record)
        with self._lock:
            self._staged.discard(record["sha256"])

    def save(self, data: bytes, suffix: str, record: dict) -> str | None:
        """stage + commit: the file name stored, or None for bytes already in the dataset."""
        staged = self.stage(data, suffix, record)
        if staged is None:
            return None
        self.commit(staged)
        return staged["file"]

    def _record(self, record: dict) -> None:
        manifest.append(self.dataset, record)
        self.files.add(record["file"])
        self.sha256.add(record["sha256"])
        if record.get("source_sha256"):
            self.sha256.add(record["source_sha256"])
        if record.get("murl"):
            self.murls.add(record["murl"])

    def log(self, url: str, reason: str, detail: str = "", **extra) -> None:
        self.dataset.export.mkdir(parents=True, exist_ok=True)
        entry = {"time": manifest.now(), "url": url, "reason": reason, "detail": detail[:300], **extra}
        jsonl.append(self.log_path, entry)
        if not is_transient(reason):
            self.skip_murls[url] = reason



def inconsistencies(dataset: Dataset) -> list[str]:
    """What is wrong between images/ and the manifest's scrape records ([] when they agree):
    every scraped record has its file with that sha256, every hash-named image has a record,
    no bytes stored twice, no temp file left behind."""
    problems = []
    records = [r for r in manifest.read_records(dataset)
               if r.get("event") == manifest.ADDED and r.get("origin") == "scrape"]
    by_file: dict[str, dict] = {}
    for record in records:
        if record["file"] in by_file:
            problems.append(f"{record['file']}: recorded twice")
        by_file[record["file"]] = record
    seen_sha: dict[str, str] = {}
    for name, record in by_file.items():
        path = dataset.images / name
        if not path.exists():
            problems.append(f"{name}: in the manifest but not in images/")
            continue
        sha = manifest.sha256_file(path)
        if sha != record["sha256"]:
            problems.append(f"{name}: sha256 differs from its record (half-written?)")
        if sha in seen_sha:
            problems.append(f"{name}: same bytes as {seen_sha[sha]}")
        seen_sha[sha] = name
    all_files = {r["file"] for r in manifest.read_records(dataset)}
    for path in sorted(dataset.images.iterdir()) if dataset.images.is_dir() else []:
        if atomic.temp_target(path.name) is not None:
            problems.append(f"{path.name}: temp file left behind")
        elif NAME.match(path.name) and path.name not in all_files:
            problems.append(f"{path.name}: in images/ but not in the manifest")
    return problems
