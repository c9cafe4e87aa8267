"""JSON Lines files: the manifest, logs and journals. One reader and one appender for all.

A line is appended with a single write() on an O_APPEND descriptor and fsynced, so a crash
leaves at most a torn last line. Reading skips a torn last line with a warning; appending first
moves a torn tail aside (to `<file>.torn`), so the next record never lands on the end of
half a line.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MasksetError, UnsafePath
from .faults import point

log = logging.getLogger(__name__)
_APPENDING = threading.Lock()  # download threads append to one journal: one at a time


@dataclass
class Lines:
    """What read() found: the objects, and the lines it had to pass over."""
    records: list[dict] = field(default_factory=list)
    torn_tail: bool = False                                   # an interrupted write's last line
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, why), lenient only


def _why_not_a_record(value, required: tuple[str, ...]) -> str | None:
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    missing = [key for key in required if not isinstance(value.get(key), str) or not value.get(key)]
    if missing:
        return f"an object without {' and '.join(repr(k) for k in missing)}"
    return None


def read(path: Path | str, required: tuple[str, ...] = (), strict: bool = True) -> Lines:
    """Every object in a JSONL file ([] if there is none).

    A last line that is not JSON is a torn write: skipped with a warning. Any other bad line
    (not JSON, not an object, without a `required` string field) is a MasksetError naming the
    line when strict (the manifest), or skipped with a warning when not (logs).
    """
    path = Path(path)
    result = Lines()
    try:
        data = _read_bytes_no_follow(path)
    except FileNotFoundError:
        return result
    lines = data.split(b"\n")
    last = len(lines)
    if lines and lines[-1] == b"":
        last -= 1  # the newline that ends the last record
    for number, raw in enumerate(lines[:last], 1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            if number == last and not data.endswith(b"\n"):
                result.torn_tail = True
                log.warning("%s:%d: incomplete last line skipped (left by an interrupted write)", path, number)
                continue
            why = "not JSON"
        else:
            why = _why_not_a_record(value, required)
            if why is None:
                result.records.append(value)
                continue
        if strict:
            raise MasksetError(
                f"{path}:{number}: not a record ({why}). The file is append-only: restore this line "
                f"from a backup, or move it out to a file of its own, then run again.")
        result.skipped.append((number, why))
        log.warning("%s:%d: line skipped (%s)", path, number, why)
    return result


def _read_bytes_no_follow(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == 40:  # ELOOP: a symbolic link
            raise UnsafePath(f"{path}: is a symbolic link; maskset reads and writes its own files "
                             f"only. Replace the link with the real file.") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def dumps(record: dict) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False)


def append(path: Path | str, records: list[dict] | dict) -> None:
    """Append records (one, or a batch in one durable write), each one line.

    Never through a symbolic link; a torn tail left by a crash is moved to `<file>.torn` first.
    """
    if isinstance(records, dict):
        records = [records]
    if not records:
        return
    data = "".join(dumps(r) + "\n" for r in records).encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno == 40:
            raise UnsafePath(f"{path}: is a symbolic link; maskset never writes through a link in a "
                             f"dataset. Replace it with the real file.") from None
        raise
    try:
        with _APPENDING:
            _set_aside_torn_tail(fd, path)
            point(f"appending to {path.name}")
            os.write(fd, data)
        os.fsync(fd)
        point(f"appended to {path.name}")
    finally:
        os.close(fd)


def _set_aside_torn_tail(fd: int, path: Path) -> None:
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    # find the start of the torn line: after the last newline
    start, chunk = size, 1 << 16
    while start > 0:
        begin = max(0, start - chunk)
        block = os.pread(fd, start - begin, begin)
        cut = block.rfind(b"\n")
        if cut >= 0:
            start = begin + cut + 1
            break
        start = begin
    tail = os.pread(fd, size - start, start)
    try:
        whole = isinstance(json.loads(tail.decode("utf-8")), dict)
    except (ValueError, UnicodeDecodeError):
        whole = False
    if whole:  # a complete record someone wrote without its newline: keep it, end its line
        os.write(fd, b"\n")
        return
    keep = os.open(f"{path}.torn", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(keep, tail + b"\n")
        os.fsync(keep)
    finally:
        os.close(keep)
    os.ftruncate(fd, start)
    log.warning("%s: an interrupted write's incomplete last line was moved to %s.torn", path, path.name)
