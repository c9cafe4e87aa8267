"""The dataset folder: where each stage reads and writes (DESIGN.md, "One dataset = one folder")."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .errors import MasksetError

DEFAULT_CLASSES = ("mask", "no_mask")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DatasetLocked(MasksetError):
    pass


@dataclass(frozen=True)
class Dataset:
    root: Path

    @classmethod
    def at(cls, root: Path | str) -> "Dataset":
        return cls(Path(root).resolve())

    # -- the layout ---------------------------------------------------------------------------
    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def classes_file(self) -> Path:
        return self.root / "classes.txt"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def cache(self) -> Path:
        """Derived data a stage may rebuild (hashes ...): never the user's work."""
        return self.root / ".cache"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def ensure(self) -> "Dataset":
        for folder in (self.images, self.annotations, self.quarantine, self.export):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def require(self) -> "Dataset":
        if not self.root.is_dir():
            raise MasksetError(
                f"{self.root}: no dataset here. Create one with `make scrape`, `make import SRC=...` "
                f"or `make sample`, or point DATA= at an existing dataset folder."
            )
        return self

    # -- contents -----------------------------------------------------------------------------
    def image_files(self) -> list[Path]:
        """The images in images/, sorted by name (hidden and temp files skipped)."""
        if not self.images.is_dir():
            return []
        return sorted(
            p for p in self.images.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )

    def annotation_files(self) -> list[Path]:
        if not self.annotations.is_dir():
            return []
        return sorted(p for p in self.annotations.glob("*.xml") if not p.name.startswith("."))

    def annotation_for(self, image: Path | str) -> Path:
        """labelImg's rule: annotations/<image stem>.xml."""
        return self.annotations / (Path(image).stem + ".xml")

    def classes(self) -> list[str]:
        """Class names from classes.txt (labelImg's predefined-classes file), defaults if absent."""
        if not self.classes_file.exists():
            return list(DEFAULT_CLASSES)
        names = []
        for number, line in enumerate(self.classes_file.read_text(encoding="utf-8").splitlines(), 1):
            name = line.strip()
            if not name:
                continue
            if "," in name:
                raise MasksetError(
                    f"{self.classes_file}:{number}: class name {name!r} contains a comma, which "
                    f"keras-retinanet's CSV cannot hold. Rename the class."
                )
            if name in names:
                raise MasksetError(f"{self.classes_file}:{number}: class {name!r} is listed twice.")
            names.append(name)
        if not names:
            raise MasksetError(f"{self.classes_file}: no class names. Put one class name per line.")
        return names

    def write_classes(self, names) -> None:
        atomic.write_text(self.classes_file, "".join(f"{n}\n" for n in names))

    # -- one writer at a time -----------------------------------------------------------------
    @contextmanager
    def lock(self, stage: str):
        """Hold the dataset's write lock for `stage`; fail at once, naming the holder, if taken.

        flock() is released by the kernel when the holder dies (even kill -9), so a lock is
        never left stale; the JSON in the file only says who holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(self.lock_file)
                raise DatasetLocked(
                    f"{self.root}: another stage is writing this dataset: {holder}. "
                    f"Wait for it to finish (or stop it), then run again."
                ) from None
            info = {
                "stage": stage, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            try:
                yield self
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "unknown holder"
    return (f"`{info.get('stage')}` (pid {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('since')}, command: {info.get('command')})")
