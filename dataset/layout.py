"""The dataset folder: where each stage reads and writes (docs/design.md, "The dataset folder").

The one owner of the folder's layout, its classes.txt, its lock, and the rule that a path
named by the manifest or a VOC file stays inside the folder.
"""
from __future__ import annotations

import codecs
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .errors import DatasetLocked, DatasetMissing, MasksetError, UnsafePath

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("mask", "no_mask")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# A file in images/ whose name is longer cannot get its VOC file and temp files beside it.
MAX_NAME_BYTES = 200

__all__ = ["Dataset", "DatasetLocked", "DEFAULT_CLASSES", "IMAGE_SUFFIXES", "decode_text"]


def decode_text(data: bytes, path: Path | str) -> str:
    """Text as editors save it: UTF-8 (with or without a BOM) or UTF-16 with its BOM."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise MasksetError(f"{path}: byte {error.start} is not {encoding.upper().replace('-SIG', '')} text "
                           f"(line {line}). Save the file as UTF-8 and run again.") from None


@dataclass(frozen=True)
class Dataset:
    root: Path

    @classmethod
    def at(cls, root: Path | str) -> "Dataset":
        return cls(Path(root).resolve())

    # -- the layout: every path a stage reads or writes -----------------------------------------
    images = property(lambda self: self.root / "images", doc="the images, unique and checked")
    annotations = property(lambda self: self.root / "annotations", doc="Pascal VOC, one per image")
    classes_file = property(lambda self: self.root / "classes.txt", doc="labelImg's predefined classes")
    manifest = property(lambda self: self.root / "manifest.jsonl", doc="one record per line, appended")
    quarantine = property(lambda self: self.root / "quarantine", doc="moved here, never deleted")
    export = property(lambda self: self.root / "export", doc="CSVs, split, reports and pages")
    packages = property(lambda self: self.root / "packages", doc="published archives (make package)")
    cache = property(lambda self: self.root / ".cache", doc="derived data a stage may rebuild (hashes ...)")
    journal = property(lambda self: self.root / ".journal",
                       doc="multi-step changes in flight (import, moves): replayed after a crash")
    lock_file = property(lambda self: self.root / ".lock", doc="who writes now")

    def folders(self) -> tuple[Path, ...]:
        return (self.images, self.annotations, self.quarantine, self.export, self.cache, self.journal)

    def ensure(self) -> "Dataset":
        """Create the folders (a stage that makes a dataset: import, scrape)."""
        for folder in self.folders():
            self._refuse_link(folder)
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def _refuse_link(self, path: Path) -> None:
        if path.is_symlink():
            raise UnsafePath(f"{path}: is a symbolic link; maskset never writes through a link in a "
                             f"dataset. Replace it with a real folder (move the files into it).")

    def exists(self) -> bool:
        return self.root.is_dir() and any(
            p.exists() for p in (self.images, self.annotations, self.manifest, self.classes_file))

    def require(self) -> "Dataset":
        """The dataset must exist: a stage that reads one, on a typo in DATA=, stops here."""
        if not self.root.is_dir():
            raise DatasetMissing(
                f"{self.root}: no dataset here (no such folder). Check DATA= for a typo; create a "
                f"dataset with `make import SRC=...` or `make scrape QUERY=...`.")
        if not self.exists():
            raise DatasetMissing(
                f"{self.root}: no dataset here (no images/, annotations/, manifest.jsonl or "
                f"classes.txt in it). Check DATA= for a typo; create a dataset with `make import "
                f"SRC=...` or `make scrape QUERY=...`.")
        for folder in self.folders():
            self._refuse_link(folder)
        return self

    def remove_temp_files(self) -> int:
        """Remove the temp files a killed writer left (atomic.writing's names only: never a file
        of the user's). Called whenever a stage takes the write lock. Returns how many."""
        removed = 0
        shallow = (self.root, self.images, self.annotations)
        deep = (self.export, self.quarantine, self.cache, self.journal, self.packages)
        for folder, walk in [(f, False) for f in shallow] + [(f, True) for f in deep]:
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in (folder.rglob(".*") if walk else folder.glob(".*")):
                if atomic.temp_target(path.name) is not None and path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed += 1
        return removed

    def writable(self) -> bool:
        return os.access(self.root, os.W_OK)

    def inside(self, relative: str | Path, what: str = "path") -> Path:
        """root / relative, resolved, which must stay inside the dataset (a path read from the
        manifest or a VOC file is never trusted)."""
        if relative is None or str(relative) == "":
            raise UnsafePath(f"{self.root}: an empty {what}.")
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise UnsafePath(f"{self.root}: the {what} {str(relative)!r} leads outside the dataset "
                             f"({path}); maskset only moves files inside it.")
        return path

    # -- contents -----------------------------------------------------------------------------
    def image_files(self) -> list[Path]:
        """The images in images/, sorted by name (hidden and temp files skipped)."""
        if not self.images.is_dir():
            return []
        return sorted(
            p for p in self.images.iterdir()
            if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def annotation_files(self) -> list[Path]:
        if not self.annotations.is_dir():
            return []
        return sorted(p for p in self.annotations.glob("*.xml") if not p.name.startswith("."))

    def annotation_for(self, image: Path | str) -> Path:
        """labelImg's rule: annotations/<image stem>.xml."""
        return self.annotations / (Path(image).stem + ".xml")

    def classes(self) -> list[str]:
        """Class names from classes.txt (labelImg's predefined-classes file), defaults if absent.

        UTF-8 with or without a BOM and UTF-16 with its BOM are read; the BOM never becomes part
        of the first class name."""
        if not self.classes_file.exists():
            return list(DEFAULT_CLASSES)
        names = []
        text = decode_text(self.classes_file.read_bytes(), self.classes_file)
        for number, line in enumerate(text.splitlines(), 1):
            name = line.strip()
            if not name:
                continue
            if "," in name:
                raise MasksetError(
                    f"{self.classes_file}:{number}: class name {name!r} contains a comma, which "
                    f"keras-retinanet's CSV cannot hold. Rename the class.")
            if name in names:
                raise MasksetError(f"{self.classes_file}:{number}: class {name!r} is listed twice.")
            names.append(name)
        if not names:
            raise MasksetError(f"{self.classes_file}: no class names. Put one class name per line.")
        return names

    def write_classes(self, names) -> None:
        atomic.write_text(self.classes_file, "".join(f"{n}\n" for n in names))

    # -- one writer at a time -----------------------------------------------------------------
    def _open_lock(self, create: bool) -> int | None:
        flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        try:
            return os.open(self.lock_file, flags, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePath(f"{self.lock_file}: is a symbolic link; maskset never writes through a "
                                 f"link in a dataset. Remove it (rm {self.lock_file}) and run again.") from None
            if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT) and not create:
                return None
            raise

    @contextmanager
    def lock(self, stage: str):
        """Hold the dataset's write lock for `stage`; fail at once, naming the holder, if taken.

        flock() is released by the kernel when the holder dies (even kill -9), so a lock is
        never left stale; the JSON in the file only says who holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.writable():
            raise MasksetError(f"{self.root}: read-only (no write permission, or a read-only disk); "
                               f"`make {stage}` changes the dataset. Make it writable, or copy it.")
        fd = self._open_lock(create=True)
        try:
            _flock_or_refuse(fd, fcntl.LOCK_EX, self.root)
            info = {
                "stage": stage, "pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            self.remove_temp_files()  # what a killed writer left: safe now that we hold the lock
            try:
                yield self
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def reading(self, stage: str):
        """A shared lock for a stage that only reads (validate, report ...): many readers at once,
        no writer meanwhile. On a read-only dataset there is no lock to take, and none is needed
        for a reader."""
        fd = self._open_lock(create=self.writable())
        if fd is None:
            log.debug("%s: read-only; reading without a lock", self.root)
            yield self
            return
        try:
            _flock_or_refuse(fd, fcntl.LOCK_SH, self.root)
            try:
                yield self
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _flock_or_refuse(fd: int, kind: int, root: Path) -> None:
    """Take the lock at once, or raise DatasetLocked naming the holder (never wait)."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DatasetLocked(f"{root}: another stage is writing this dataset: {_read_holder(fd)}. "
                            f"Wait for it to finish (or stop it), then run again.") from None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info:
        return "a stage that only reads it (validate, report ...)"
    return (f"`{info.get('stage')}` (pid {info.get('pid')} on {info.get('host')}, "
            f"since {info.get('since')}, command: {info.get('command')})")
