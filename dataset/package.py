"""`make package [VERSION=..] [OUT=..]`: the dataset as one reproducible, versioned archive.

The archive (tar.gz) holds, under one top folder named like the archive:
  DATASET.md, ATTRIBUTION.csv   the card and the attribution list (`make card`, rewritten now)
  classes.txt, images/, annotations/ (the VOC file of every annotated image; no unreviewed draft)
  export/                       annotations.csv, classes.csv, and train.csv, val.csv, split.json
  SHA256SUMS                    the sha256 of every file above (`sha256sum -c SHA256SUMS`)
  CHANGELOG.md                  images added, removed, relabelled since the previous package
Its name is maskset-<dataset>-<version>-<first 12 hex digits of sha256(SHA256SUMS)>.tar.gz: the
version is VERSION=, or else the date the newest image in it was added, so the name follows from
the content. The same content gives the same bytes: entries sorted, every timestamp fixed, owner
0, modes 644/755, gzip without a name or time. The changelog compares with the newest package
in the same folder whose content differs, so packaging twice gives the same archive; it is also
written beside the archive. An archive already there is never replaced.

Refused while validate finds errors, or while the export or split CSVs are older than the
dataset (a takedown, a relabel): they would publish what is no longer there.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, card as cards, manifest
from . import progress as progress_bars
from .errors import MasksetError
from .layout import Dataset
from .results import Result

log = logging.getLogger(__name__)

FIXED_MTIME = 315532800       # 1980-01-01T00:00:00Z, zip's epoch, as reproducible builds use
SUMS = "SHA256SUMS"
CHANGELOG = "CHANGELOG.md"
SUFFIX = ".tar.gz"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass
class Entry:
    path: str                   # inside the archive's top folder
    source: Path | None = None  # a file to copy
    data: bytes | None = None   # or these bytes
    sha256: str = ""

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.source.stat().st_size


def _entry(path: str, source: Path | None = None, data: bytes | None = None, sha256: str = "") -> Entry:
    if not sha256:
        sha256 = hashlib.sha256(data).hexdigest() if data is not None else manifest.sha256_file(source)
    return Entry(path, source, data, sha256)


def contents(dataset: Dataset, report, facts, card_text: str, attribution: str, exports) -> list[Entry]:
    """Every file of the package but SHA256SUMS and CHANGELOG.md, sorted by path."""
    entries = [_entry(cards.CARD, data=card_text.encode()), _entry(cards.ATTRIBUTION, data=attribution.encode()),
               _entry("classes.txt", data="".join(f"{c}\n" for c in facts.classes).encode())]
    entries += [_entry(f"images/{name}", dataset.images / name, sha256=sha) for name, sha in facts.sha256.items()]
    entries += [_entry(f"annotations/{ann.source.name}", ann.source) for ann in report.annotations.values()]
    entries += [_entry(f"export/{path.name}", path) for path in exports.files]
    return sorted(entries, key=lambda e: e.path)


def _sums_line(sha: str, path: str) -> str:
    """One line of `sha256sum` output (GNU's escaping for a name with a backslash or newline)."""
    if "\\" in path or "\n" in path:
        return "\\" + sha + "  " + path.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
    return f"{sha}  {path}\n"


def sums_text(entries: list[Entry]) -> str:
    return "".join(_sums_line(e.sha256, e.path) for e in entries)


def parse_sums(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        escaped = line.startswith("\\")
        sha, _, path = line.lstrip("\\").partition("  ")
        if escaped:
            path = path.replace("\\n", "\n").replace("\\\\", "\\")
        if path:
            found[path] = sha
    return found


# -- naming -----------------------------------------------------------------------------------------
def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "dataset"


def version_of(facts, version: str | None) -> str:
    """VERSION= as given (checked), or the date the newest image was added (YYYYMMDD)."""
    if version:
        if not VERSION_RE.match(version):
            raise MasksetError(f"VERSION={version!r}: use letters, digits, '.', '_', '+' or '-' (at most 64), "
                               f"e.g. VERSION=1.2.0")
        return version
    added = [t for t in facts.provenance.added if t]
    return max(added)[:10].replace("-", "") if added else "undated"


def _digest_of(name: str) -> str | None:
    match = re.search(r"-([0-9a-f]{12})" + re.escape(SUFFIX) + "$", name)
    return match[1] if match else None


# -- the previous package and the changelog ------------------------------------------------------------
@dataclass
class Snapshot:
    """What a package holds, for the changelog: image -> sha256, annotation -> sha256, boxes."""
    name: str
    images: dict[str, str]
    annotations: dict[str, str]          # image stem -> sha256 of its VOC file
    boxes: dict[str, Counter]            # image name -> boxes per class


def _boxes(rows) -> dict[str, Counter]:
    boxes: dict[str, Counter] = {}
    for row in rows:
        counter = boxes.setdefault(Path(row[0]).name, Counter())
        if row[5]:
            counter[row[5]] += 1
    return boxes


def snapshot(name: str, sums: dict[str, str], annotation_rows) -> Snapshot:
    images = {p[len("images/"):]: s for p, s in sums.items() if p.startswith("images/")}
    notes = {Path(p).stem: s for p, s in sums.items() if p.startswith("annotations/")}
    return Snapshot(name, images, notes, _boxes(annotation_rows))


def read_snapshot(path: Path) -> Snapshot:
    """SHA256SUMS and export/annotations.csv of a package (read as a stream, stopping once found)."""
    import csv
    wanted = {SUMS: None, "export/annotations.csv": None}
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            inner = member.name.partition("/")[2]
            if inner in wanted and member.isfile():
                wanted[inner] = tar.extractfile(member).read().decode("utf-8")
                if all(v is not None for v in wanted.values()):
                    break
    if wanted[SUMS] is None:
        raise MasksetError(f"{path}: no {SUMS} in it (not a maskset package)")
    rows = list(csv.reader(io.StringIO(wanted["export/annotations.csv"] or "")))
    return snapshot(path.name[:-len(SUFFIX)], parse_sums(wanted[SUMS]), [r for r in rows if len(r) == 6])


def previous_package(out: Path, prefix: str, digest12: str) -> Snapshot | None:
    """The newest package of this dataset in `out` whose content differs from this one."""
    if not out.is_dir():
        return None
    found = [p for p in out.iterdir() if p.name.startswith(prefix) and p.name.endswith(SUFFIX)
             and p.is_file() and _digest_of(p.name) not in (None, digest12)]
    for path in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True):
        try:
            return read_snapshot(path)
        except (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeDecodeError, MasksetError) as error:
            log.warning("%s: unreadable, so not compared with (%s); trying an older package", path, error)
    return None


@dataclass
class Changes:
    previous: str | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # same name, other bytes (e.g. an EXIF fix)
    unchanged: int = 0


def compare(before: Snapshot | None, now: Snapshot) -> Changes:
    if before is None:
        return Changes(None, added=sorted(now.images))
    changes = Changes(before.name)
    changes.added = sorted(set(now.images) - set(before.images))
    changes.removed = sorted(set(before.images) - set(now.images))
    for name in sorted(set(now.images) & set(before.images)):
        stem = Path(name).stem
        relabelled = before.annotations.get(stem) != now.annotations.get(stem)
        changed = before.images[name] != now.images[name]
        if relabelled:
            changes.relabelled.append(name)
        if changed:
            changes.changed.append(name)
        changes.unchanged += not (relabelled or changed)
    return changes


def _boxes_text(counter: Counter | None, classes: list[str]) -> str:
    if counter is None:
        return "not annotated"
    return ", ".join(f"{c} {counter.get(c, 0)}" for c in classes + sorted(set(counter) - set(classes)))


def changelog_text(name: str, changes: Changes, before: Snapshot | None, now: Snapshot,
                   classes: list[str]) -> str:
    out = [f"# Changelog: {cards.cell(name)}", ""]
    if changes.previous is None:
        out += [f"The first package of this dataset (no earlier one beside it): all {len(changes.added)} "
                f"images are new.", ""]
        return "\n".join(out)
    out += [f"Against `{cards.cell(changes.previous)}`, the previous package beside it.", "",
            cards.table_md(["images", "count"], [
                ["added", len(changes.added)], ["removed", len(changes.removed)],
                ["relabelled (annotation changed)", len(changes.relabelled)],
                ["image bytes changed", len(changes.changed)], ["unchanged", changes.unchanged]]), ""]
    sections = [
        ("Added", changes.added, lambda n: _boxes_text(now.boxes.get(n), classes)),
        ("Removed", changes.removed, lambda n: _boxes_text(before.boxes.get(n), classes)),
        ("Relabelled", changes.relabelled,
         lambda n: f"{_boxes_text(before.boxes.get(n), classes)} -> {_boxes_text(now.boxes.get(n), classes)}"),
        ("Image bytes changed", changes.changed, lambda n: "same name, new bytes"),
    ]
    for title, names, note in sections:
        if names:
            out += [f"## {title} ({len(names)})", ""] + [f"- {cards.cell(n)}: {note(n)}" for n in names] + [""]
    return "\n".join(out)


# -- writing ----------------------------------------------------------------------------------------
def _info(path: str, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
    info.type, info.mode, info.size = (tarfile.DIRTYPE, 0o755, 0) if folder else (tarfile.REGTYPE, 0o644, size)
    return info


def write_archive(path: Path, top: str, entries: list[Entry], progress: bool = False) -> None:
    """The archive, deterministically: sorted entries (folders included), fixed metadata."""
    folders = sorted({str(Path(e.path).parent) for e in entries} - {"."})
    items = sorted([(f, None) for f in folders] + [(e.path, e) for e in entries], key=lambda item: item[0])
    with atomic.writing(path, exclusive=True) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(top, folder=True))
        for inner, entry in progress_bars.bar(items, desc="package", enabled=progress):
            if entry is None:
                tar.addfile(_info(f"{top}/{inner}", folder=True))
            elif entry.data is not None:
                tar.addfile(_info(f"{top}/{inner}", len(entry.data)), io.BytesIO(entry.data))
            else:
                with open(entry.source, "rb") as handle:
                    tar.addfile(_info(f"{top}/{inner}", entry.size()), handle)


@dataclass
class PackageResult(Result):
    name: str
    path: Path
    changelog: Path
    digest: str
    images: int
    annotations: int
    changes: Changes
    existed: bool = False
    bytes: int = 0

    def summary(self) -> str:
        c = self.changes
        against = (f"against {c.previous}: {len(c.added)} added, {len(c.removed)} removed, "
                   f"{len(c.relabelled)} relabelled" + (f", {len(c.changed)} with new bytes" if c.changed else "")
                   if c.previous else "the first package here")
        head = (f"package: {self.path} exists already with this content (sha256 {self.digest[:12]}); kept as it is"
                if self.existed else f"package: {self.path} ({self.bytes / 1e6:.1f} MB)")
        return (f"{head}\n{self.images} images, {self.annotations} annotations; {against}\n"
                f"changelog: {self.changelog}")


def package(dataset: Dataset, out: Path | str | None = None, version: str | None = None,
            progress: bool = True) -> PackageResult:
    """Write the package (see the module docstring). The caller holds the write lock."""
    from .validate import refuse_errors, validate
    if version:
        version_of(None, version)  # a bad VERSION= is refused before the long checks
    report = validate(dataset, progress=progress, write_report=False)
    refuse_errors(dataset, report, "package refuses to publish them", "`make export split package` again")
    facts, card_text, attribution, exports = cards.build(dataset, report, stage="package", package=True)
    atomic.write_text(dataset.export / cards.CARD, card_text)
    atomic.write_text(dataset.export / cards.ATTRIBUTION, attribution)

    entries = contents(dataset, report, facts, card_text, attribution, exports)
    sums = sums_text(entries)
    digest = hashlib.sha256(sums.encode()).hexdigest()
    prefix = f"maskset-{slug(dataset.root.name)}-"
    name = f"{prefix}{version_of(facts, version)}-{digest[:12]}"
    folder = Path(out) if out else dataset.packages
    path, beside = folder / (name + SUFFIX), folder / f"{name}.{CHANGELOG}"
    now = snapshot(name, parse_sums(sums), exports.rows or [])
    before = previous_package(folder, prefix, digest[:12])
    changes = compare(before, now)
    result = PackageResult(name, path, beside, digest, len(facts.sha256), len(report.annotations), changes)
    if path.exists():
        result.existed = True
        return result
    text = changelog_text(name, changes, before, now, facts.classes)
    entries = sorted(entries + [_entry(SUMS, data=sums.encode()), _entry(CHANGELOG, data=text.encode())],
                     key=lambda e: e.path)
    if folder == dataset.packages:
        dataset._refuse_link(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_archive(path, name, entries, progress)
    atomic.write_text(beside, text)
    result.bytes = path.stat().st_size
    return result
