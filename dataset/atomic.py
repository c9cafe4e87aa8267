"""Atomic file writes: write a temp file in the same folder, fsync, rename over the target.

A reader (or a crash, or kill -9) only ever sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UnsafePath
from . import faults
from .faults import point


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# writing()'s temp files: ".<stem>.<8 random chars>.tmp<suffix>" beside the target. The real
# extension stays last because OpenCV, Pillow and Keras choose the format by it.
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[^.]+)?)$")
NAME_MAX = 255            # bytes in one file name (ext4, xfs, btrfs ...)
_TEMP_EXTRA = len(".") + len(".12345678.tmp")


def _fit(stem: str, room: int) -> str:
    """stem cut to at most `room` bytes of UTF-8, never inside a character."""
    return stem.encode("utf-8")[:max(1, room)].decode("utf-8", "ignore") or "x"


_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_RANDOM = random.Random(os.urandom(16))


def _open_temp(path: str) -> tuple[int, str]:
    """A new temp file beside path, open for writing: (fd, its path). Made with open()'s mode
    (0666 less the umask) in one system call, with plain strings: a stage writing thousands of
    files (import) pays for no more than it needs."""
    folder, name = os.path.split(path)
    stem, suffix = os.path.splitext(name)
    if suffix == "." or len(suffix.encode()) >= 32:  # as pathlib: "x." has no suffix
        stem, suffix = name if suffix == "." else stem, ""
    stem = _fit(stem, NAME_MAX - _TEMP_EXTRA - len(suffix.encode()))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(1000):
        tmp = os.path.join(folder, f".{stem}.{''.join(_RANDOM.choices(_LETTERS, k=8))}.tmp{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            os.makedirs(folder or ".", exist_ok=True)
    raise FileExistsError(f"{folder}: no free temp file name")


def new_temp(path: Path | str) -> Path:
    """An empty temp file beside path, named so that temp_target() recognises it.

    A long name is cut in the temp name only (the final name is the caller's business), so a
    file whose name is near the 255-byte limit can still be written."""
    fd, tmp = _open_temp(os.fspath(path))
    os.close(fd)
    return Path(tmp)


def temp_target(name: str) -> str | None:
    """The file name a leftover temp file (a writer killed mid-write) was meant to become, or
    None if `name` is not one of ours."""
    match = _TEMP_NAME.match(name)
    return match["stem"] + match["suffix"] if match else None


@contextmanager
def writing(path: Path | str, exclusive: bool = False, durable: bool = True):
    """Yield a temp path beside `path` to write to (by any library); on success it becomes `path`.

    exclusive=True never replaces an existing file, not even one another program creates a
    moment before (the temp file is linked in, not renamed). On error the temp file is removed.
    durable=False leaves the fsync to the caller's one sync_tree() after many files (import).
    """
    path = Path(path)
    tmp = new_temp(path)
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
        _commit(tmp, path, exclusive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _renamed(path, durable)


def _commit(tmp, path, exclusive: bool) -> None:
    """The written temp file becomes path (exclusive: never over an existing file)."""
    if faults.ACTIVE:
        point(f"written {os.path.basename(tmp)}")
    if exclusive:
        os.link(tmp, path)  # FileExistsError if path exists: never clobbers
        os.unlink(tmp)
    else:
        os.replace(tmp, path)


def _renamed(path, durable: bool) -> None:
    if faults.ACTIVE:
        point(f"renamed {os.path.basename(path)}")
    if durable:
        _fsync_dir(os.path.dirname(path))


def _written(path: Path | str, fill, exclusive: bool, durable: bool) -> Path:
    """path written atomically by fill(fd) into a temp file beside it (see writing())."""
    fd, tmp = _open_temp(os.fspath(path))
    try:
        try:
            fill(fd)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path, exclusive)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _renamed(path, durable)
    return Path(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_into(fd: int, src: Path | str) -> None:
    """src's bytes into fd, in the kernel where it can (sendfile), else through a buffer."""
    with open(src, "rb") as source:
        offset = 0
        try:
            while True:
                sent = os.sendfile(fd, source.fileno(), offset, 1 << 30)
                if sent == 0:
                    return
                offset += sent
        except OSError:
            if offset:
                raise
        shutil.copyfileobj(source, os.fdopen(os.dup(fd), "wb", closefd=True), 1 << 20)


def sync_tree(folder: Path | str) -> None:
    """Flush every write to the file system holding `folder` (syncfs: one call for many files)."""
    import ctypes
    fd = os.open(folder, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if getattr(libc, "syncfs", None) is None or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path | str, data: bytes, exclusive: bool = False, durable: bool = True) -> Path:
    """Write data to path atomically (see writing())."""
    return _written(path, lambda fd: _write_all(fd, data), exclusive, durable)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def copy_file(src: Path | str, dst: Path | str, durable: bool = True, keep_times: bool = True) -> Path:
    """Copy src to dst atomically (temp + rename), keeping src untouched; keep_times: with src's
    times and mode too (as cp -p), which import leaves out (as cp does)."""
    dst = _written(dst, lambda fd: _copy_into(fd, src), False, durable)
    if keep_times:
        shutil.copystat(src, dst)
    return dst


def link_or_copy(src: Path | str, dst: Path | str, durable: bool = True) -> bool:
    """dst as a hard link to src: the same bytes under a second name, made in one step, never
    over an existing file, with no byte copied. Where a link cannot be made (another file system,
    a file the user may not link) an atomic copy instead. True when linked.

    Safe for maskset's own files because no stage ever writes an image in place: every change
    replaces the file (a new inode), which leaves the other name as it was."""
    try:
        os.link(src, dst)
    except FileNotFoundError:
        if not os.path.exists(src):
            raise
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        return link_or_copy(src, dst, durable)
    except FileExistsError:
        raise
    except OSError:  # EXDEV, EPERM (protected_hardlinks), EMLINK ...
        copy_file(src, dst, durable=durable, keep_times=False)
        return False
    if faults.ACTIVE:
        point(f"linked {os.path.basename(dst)}")
    return True


_FOLDER_TEMP = ".tmpdir"


@contextmanager
def replacing_folder(path: Path | str):
    """Yield an empty temp folder beside `path` to fill; on success it is synced and takes the
    place of `path` (a derived folder, such as an export: the old one is removed). A reader sees
    the old folder or the new one, never half of one. On error the temp folder goes; one a killed
    run left is removed by the next."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePath(f"{path}: is a symbolic link; maskset never writes through a link in a "
                         f"dataset. Remove it, then run again.")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*{_FOLDER_TEMP}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=_FOLDER_TEMP))
    try:
        yield tmp
        point(f"filled {path.name}")
        sync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old.", suffix=_FOLDER_TEMP))
            os.rename(path, old / path.name)
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_file(src: Path | str, dst: Path | str) -> Path:
    """Move src to dst without ever overwriting an existing dst (a suffix is added instead)."""
    dst = unique_path(Path(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # fails if dst exists: never clobbers
        os.unlink(src)
    except OSError:
        copy_file(src, dst)
        os.unlink(src)
    return dst


def unique_path(path: Path) -> Path:
    """path itself if free, else path with -1, -2 ... before the suffix."""
    if not path.exists():
        return path
    for n in range(1, 100000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)
