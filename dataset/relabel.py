"""`make relabel MAP="noMask=no_mask"`: rename classes across a dataset, or merge several into one.

Every VOC file in annotations/ that holds a mapped class is rewritten through voc.edited (every
other tag kept), and classes.txt is rewritten with the new names (a class mapped onto one that
exists merges into it). It is one crash-safe change: the plan, with each file's new bytes, is
journaled first; then each original is copied to quarantine/relabel/<time>/ before its file is
replaced atomically; then classes.txt, one sync, and one manifest record per relabelled image
("relabelled", with the map and where the original went), appended in one write. A run killed
at any point is finished by the next `make relabel` (recover). A file a person changed since the
plan was made is left as it is, and said.

Quarantined duplicates keep the names they had: after `make restore`, run the same relabel again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, jsonl, manifest, voc
from .errors import MasksetError
from .faults import point
from .importer import ClassMap
from .layout import Dataset
from .results import Result

log = logging.getLogger(__name__)

JOURNAL = "relabel.jsonl"
EVENT = "relabelled"


@dataclass
class RelabelResult(Result):
    mapping: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)        # VOC files rewritten
    boxes: Counter = field(default_factory=Counter)       # boxes renamed, per old class
    classes_before: list[str] = field(default_factory=list)
    classes_after: list[str] = field(default_factory=list)
    originals: str = ""                                   # where the originals went
    recovered: int = 0                                    # files finished for a killed relabel
    left: list[str] = field(default_factory=list)         # changed by a person meanwhile: untouched
    merged: list[str] = field(default_factory=list)       # classes two or more were mapped onto

    def summary(self) -> str:
        lines = [f"recovered: an interrupted relabel was finished ({self.recovered} files)"] if self.recovered else []
        lines += [f"warning: {f}: changed since the relabel was planned; left as it is" for f in self.left]
        renamed = ", ".join(f"{old} -> {new} ({self.boxes.get(old, 0)} boxes)" for old, new in self.mapping.items())
        lines.append(f"relabel: {renamed}; {len(self.files)} VOC files rewritten"
                     + ("" if self.files or self.recovered else " (nothing holds those classes: relabelled already?)"))
        lines.append(f"classes.txt: {', '.join(self.classes_before)} -> {', '.join(self.classes_after)}"
                     + (f" ({', '.join(self.merged)} now holding several classes' boxes)" if self.merged else ""))
        if self.files:
            lines.append(f"originals kept in {self.originals}")
        return "\n".join(lines)


def parse_map(text: str | None) -> dict[str, str]:
    if not text or not text.strip():
        raise MasksetError('MAP= is empty: give old=new pairs, e.g. make relabel MAP="noMask=no_mask" '
                           '(several: MAP="a=x,b=x" merges a and b into x).')
    mapping = ClassMap.parse(text).rename
    return {old: new for old, new in mapping.items() if old != new}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _journal(dataset: Dataset) -> Path:
    return dataset.journal / JOURNAL


def plan(dataset: Dataset, mapping: dict[str, str]) -> tuple[list[dict], list[str], list[str], Counter]:
    """The change, nothing written: one entry per VOC file to rewrite, the classes before and after,
    and the boxes renamed per class. Raises when a mapped class is nowhere, or a VOC file cannot be
    read (relabel cannot tell what it holds)."""
    before = dataset.classes()
    images = {p.stem: p.name for p in dataset.image_files()}
    found: Counter = Counter()
    entries = []
    for xml in dataset.annotation_files():
        ann = voc.parse(xml)  # a VocError names the file and field
        names = Counter(o.name for o in ann.objects)
        found.update(names)
        hits = {old: n for old, n in names.items() if old in mapping}
        if not hits:
            continue

        def change(root):
            for node in root.findall("object"):
                old = (node.findtext("name") or "").strip()
                if old in mapping:
                    voc.set_text(node, "name", mapping[old])
        original = xml.read_bytes()
        entries.append({"annotation": str(xml.relative_to(dataset.root)), "image": images.get(xml.stem),
                        "sha256": _sha(original), "new": voc.edited(xml, change).decode("utf-8"),
                        "renamed": {old: mapping[old] for old in hits}, "boxes": sum(hits.values())})
    # a class that is nowhere while its new name is in classes.txt was relabelled already (the same
    # command again, or after an interrupted run was finished): nothing to do, not an error
    nowhere = [old for old in mapping if old not in before and old not in found and mapping[old] not in before]
    if nowhere:
        raise MasksetError(f"MAP: {', '.join(repr(n) for n in nowhere)} is in neither {dataset.classes_file} "
                           f"({', '.join(before)}) nor any annotation. Nothing was changed. Check the spelling "
                           f"(class names are case-sensitive).")
    after = list(dict.fromkeys(mapping.get(name, name) for name in before))
    after += [new for old, new in mapping.items() if old in found and new not in after]
    boxes = Counter({old: found[old] for old in mapping})
    return entries, before, after, boxes


def _apply(dataset: Dataset, entry: dict, backup: str) -> str:
    """Carry out one entry: "done", "already" (finished before a kill) or "changed" (a person
    edited the file since the plan: left alone)."""
    path = dataset.inside(entry["annotation"], "VOC file to relabel")
    new = entry["new"].encode("utf-8")
    current = path.read_bytes() if path.exists() else None
    if current == new:
        return "already"
    if current is None or _sha(current) != entry["sha256"]:
        return "changed"
    original = dataset.inside(backup, "relabel backup")
    if not original.exists():
        atomic.copy_file(path, original)  # the original first: a kill after it loses nothing
    atomic.write_bytes(path, new, durable=False)
    return "done"


def _finish(dataset: Dataset, header: dict, entries: list[dict], result: RelabelResult) -> int:
    """Apply every entry, then classes.txt, sync, records; the journal goes last."""
    recorded = {r.get("op") for r in manifest.read_records(dataset) if r.get("op")}
    records, applied = [], 0
    for entry in entries:
        state = _apply(dataset, entry, entry["backup"])
        if state == "changed":
            result.left.append(entry["annotation"])
            continue
        applied += 1
        result.files.append(entry["annotation"])
        if entry.get("image") and entry["op"] not in recorded:
            records.append({"file": entry["image"], "event": EVENT, "op": entry["op"],
                            "renamed": entry["renamed"], "boxes": entry["boxes"],
                            "annotation": entry["annotation"], "original": entry["backup"]})
    classes_backup = dataset.inside(header["classes_backup"], "relabel backup")
    if dataset.classes_file.exists() and not classes_backup.exists():
        if dataset.classes() != header["classes_after"]:
            atomic.copy_file(dataset.classes_file, classes_backup)
    dataset.write_classes(header["classes_after"])
    atomic.sync_tree(dataset.root)
    manifest.append_many(dataset, records)
    _journal(dataset).unlink()
    point("relabel journal removed")
    return applied


def recover(dataset: Dataset, result: RelabelResult | None = None) -> int:
    """Finish a relabel that was killed. Returns how many files it rewrote or found rewritten."""
    path = _journal(dataset)
    if not path.exists():
        return 0
    lines = jsonl.read(path, strict=False)
    if lines.torn_tail or not lines.records or "classes_after" not in lines.records[0]:
        path.unlink()  # the journal itself was cut short: nothing had been changed yet
        return 0
    header, entries = lines.records[0], lines.records[1:]
    done = _finish(dataset, header, entries, result or RelabelResult())
    log.warning("%s: finished an interrupted relabel (%d files)", dataset.root, done)
    return done


def relabel(dataset: Dataset, mapping: dict[str, str]) -> RelabelResult:
    """Rename (or merge) classes across the dataset (the caller holds the write lock)."""
    result = RelabelResult(mapping=dict(mapping))
    result.recovered = recover(dataset, RelabelResult())
    entries, before, after, boxes = plan(dataset, mapping)
    result.classes_before, result.classes_after, result.boxes = before, after, boxes
    onto = Counter(mapping.get(name, name) for name in {*before, *(old for old in mapping if boxes[old])})
    result.merged = sorted(name for name, n in onto.items() if n > 1)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder = Path(atomic.unique_path(dataset.quarantine / "relabel" / stamp)).relative_to(dataset.root)
    result.originals = str(dataset.root / folder)
    for number, entry in enumerate(entries):
        entry["backup"] = str(folder / Path(entry["annotation"]).name)
        entry["op"] = f"relabel-{stamp}-{os.getpid()}-{number}"
    header = {"mapping": mapping, "classes_before": before, "classes_after": after,
              "classes_backup": str(folder / "classes.txt")}
    if not entries and before == after:
        return result
    atomic.write_text(_journal(dataset), "".join(jsonl.dumps(r) + "\n" for r in [header, *entries]))
    _finish(dataset, header, entries, result)
    return result
