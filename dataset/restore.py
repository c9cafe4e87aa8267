"""`make restore [FILES=..] [TAKEDOWN=1]`: put quarantined images back, byte for byte.

The one owner of bringing a file out of quarantine: quarantined duplicates (`make dedupe`) by
default, taken-down images (`make takedown`) with TAKEDOWN=1. Each file moves back under its own
name with its VOC file, as one crash-safe change (dataset/moves.py), and gets a `restored`
manifest record. Every path a record names is checked before anything moves: it must stay inside
the dataset, in quarantine/. A file whose name has been taken meanwhile is skipped and named.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import manifest, moves
from . import progress as progress_bars
from .errors import MasksetError, UnsafePath
from .layout import Dataset
from .results import Result

DUPLICATES = "duplicates"
TAKEDOWNS = "takedowns"


@dataclass(frozen=True)
class Kind:
    """One kind of quarantined file: which reasons, where its log is, its journals."""
    name: str
    reasons: tuple[str, ...]
    log: Callable[[Dataset], Path]  # its log.jsonl
    quarantine_kind: str  # the journal of the change that quarantined them
    restore_kind: str     # the journal of restoring them
    what: str           # "a quarantined duplicate"
    how: str            # the command that restores this kind


def kinds() -> dict[str, Kind]:
    from . import dedupe, takedown
    return {
        DUPLICATES: Kind(DUPLICATES, (dedupe.EXACT, dedupe.NEAR), dedupe.log_file, "dedupe", "restore",
                         "a quarantined duplicate", "make restore"),
        TAKEDOWNS: Kind(TAKEDOWNS, (takedown.TAKEDOWN,), takedown.log_file, "takedown", "restore-takedown",
                        "a taken-down image", "make restore TAKEDOWN=1"),
    }


@dataclass
class RestoreResult(Result):
    restored: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    images: Path | None = None
    kind: str = DUPLICATES

    @property
    def exit_code(self) -> int:
        return 1 if self.skipped else 0

    def summary(self) -> str:
        lines = [f"not restored: {name}: {why}" for name, why in self.skipped]
        what = "taken-down " if self.kind == TAKEDOWNS else ""
        lines.append(f"restore: {len(self.restored)} {what}files back in {self.images}"
                     + (f", {len(self.skipped)} skipped" if self.skipped else ""))
        if self.kind == TAKEDOWNS and self.restored:
            lines.append("they are published again from the next `make export split card package`")
        return "\n".join(lines)


def quarantined(dataset: Dataset, reasons, state: dict | None = None) -> dict[str, dict]:
    """file -> its quarantine record, for files still quarantined for one of `reasons`."""
    state = manifest.state(dataset) if state is None else state
    return {f: r for f, r in state.items()
            if r.get("event") == manifest.QUARANTINED and r.get("reason") in tuple(reasons)}


def recover_all(dataset: Dataset) -> None:
    """Finish every quarantine or restore a kill interrupted, each into its own log."""
    for kind in kinds().values():
        for journal in (kind.quarantine_kind, kind.restore_kind):
            moves.recover(dataset, journal, kind.log(dataset))


def _relative(dataset: Dataset, path: Path) -> str:
    return str(path.relative_to(dataset.root))


def restore_move(dataset: Dataset, name: str, record: dict) -> tuple[moves.Move | None, str]:
    """The move that puts one quarantined file back, or (None, why not). Every path the record
    names is checked: it must stay inside the dataset, in quarantine/ or images/annotations/."""
    try:
        if Path(name).name != name or name in ("", ".", ".."):
            raise UnsafePath(f"the file name {name!r} is not a plain name")
        source = dataset.inside(record.get("moved_to"), "moved_to")
        if not source.is_relative_to(dataset.quarantine):
            raise UnsafePath(f"moved_to {record.get('moved_to')!r} is not in quarantine/")
        target = dataset.images / name
        xml_source = xml_target = None
        if record.get("annotation_moved_to"):
            xml_source = dataset.inside(record["annotation_moved_to"], "annotation_moved_to")
            xml_target = dataset.annotation_for(name)
            if not xml_source.is_relative_to(dataset.quarantine):
                raise UnsafePath(f"annotation_moved_to {record['annotation_moved_to']!r} is not in quarantine/")
    except UnsafePath as error:
        return None, f"the manifest record is not trusted ({error.args[0]}); restore it by hand"
    if not source.exists():
        return None, f"{source} is gone (moved by hand?)"
    if target.exists():
        return None, f"{target} exists already; move one of them aside by hand"
    if xml_target is not None and xml_target.exists():
        return None, f"{xml_target} exists already (a new annotation); restore {source} by hand"
    files = [(_relative(dataset, source), _relative(dataset, target))]
    entry = {"file": name, "event": manifest.RESTORED, "restored_from": _relative(dataset, source)}
    if xml_source is not None and xml_source.exists():
        files.append((_relative(dataset, xml_source), _relative(dataset, xml_target)))
        entry["annotation_restored_from"] = _relative(dataset, xml_source)
    return moves.Move(files, entry), ""


def _unknown_names(dataset: Dataset, unknown: list[str], kind: Kind, state: dict) -> str:
    hints = []
    for other in kinds().values():
        if other is kind:
            continue
        theirs = [f for f in unknown if f in quarantined(dataset, other.reasons, state)]
        if theirs:
            hints.append(f"{', '.join(theirs)} {'is' if len(theirs) == 1 else 'are'} {other.what}: "
                         f"{other.how} FILES=\"{' '.join(theirs)}\"")
    return (f"{', '.join(unknown)}: not {kind.what} of {dataset.root}. {kind.log(dataset)} lists "
            f"them." + (" " + "; ".join(hints) + "." if hints else ""))


def restore(dataset: Dataset, files=None, progress: bool = True, takedown: bool = False) -> RestoreResult:
    """Move quarantined files of one kind back (all, or the named ones) under their original names.

    Duplicates by default. Naming duplicates means a curator decided they are not duplicates:
    dedupe keeps them from now on. takedown=True brings back taken-down images instead."""
    kind = kinds()[TAKEDOWNS if takedown else DUPLICATES]
    recover_all(dataset)
    state = manifest.state(dataset)
    waiting = quarantined(dataset, kind.reasons, state)
    if files:
        unknown = [f for f in files if f not in waiting]
        if unknown:
            raise MasksetError(_unknown_names(dataset, unknown, kind, state))
        waiting = {f: waiting[f] for f in files}
    result = RestoreResult(images=dataset.images, kind=kind.name)
    changes = []
    for name, record in sorted(waiting.items()):
        move, why = restore_move(dataset, name, record)
        if move is None:
            result.skipped.append((name, why))
            continue
        if kind.name == DUPLICATES:
            move.record["keep"] = bool(files)
        changes.append(move)
    bar = lambda items: progress_bars.bar(items, desc="restore", enabled=progress)  # noqa: E731
    for record in moves.carry_out(dataset, kind.restore_kind, changes, kind.log(dataset), bar):
        result.restored.append(record["file"])
    return result
