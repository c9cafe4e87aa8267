"""The demo's foundation steps (see demo.py): sample → import → validate → export → split."""
from __future__ import annotations

from lxml import etree

from . import atomic, voc
from .export import export
from .importer import import_folder
from .sample import make_sample
from .split import make_split
from .validate import fix, print_report, validate


def sample(ctx) -> str:
    """Render the labelled sample a curator would already have, with two labelling slips."""
    source = ctx.work / "sample-src"
    count = 24 if ctx.quick else 60
    paths = make_sample(source, count=count, size=(320, 240), seed=1, duplicates=3)
    _add_slips(source)
    ctx.notes["sample_src"] = source
    return f"{len(paths)} rendered images with VOC files in {source} (3 exact + 3 near duplicates, 2 slips)"


def _add_slips(source) -> None:
    """A box dragged past the border and a <size> from another copy: what validate FIX=1 mends."""
    for name, change in (("scene_0001.xml", _box_past_border), ("scene_0002.xml", _wrong_size)):
        path = source / name
        root = etree.parse(str(path), voc._PARSER).getroot()
        change(root)
        atomic.write_bytes(path, etree.tostring(root, pretty_print=True, encoding="utf-8"))


def _box_past_border(root) -> None:
    width = int(root.findtext("size/width"))
    root.find("object/bndbox/xmax").text = str(width + 9)


def _wrong_size(root) -> None:
    root.find("size/width").text = str(int(root.findtext("size/width")) * 2)


def import_sample(ctx) -> str:
    result = import_folder(ctx.data, ctx.notes["sample_src"])
    return result.summary()


def validate_and_fix(ctx) -> str:
    report = validate(ctx.data)
    print_report(report)
    found = len(report.errors)
    done, report = fix(ctx.data, report)
    for line in done:
        print(f"fixed: {line}")
    if done:
        print_report(report)
    return f"{found} errors found, {found - len(report.errors)} fixed (originals in quarantine/fixed/); " \
           f"{len(report.annotated)} annotated, {len(report.pending)} pending"


def export_csv(ctx) -> str:
    return export(ctx.data).summary()


def split_sets(ctx) -> str:
    result = make_split(ctx.data, val=0.25, seed=0)
    print(result.summary())
    return (f"train {result.counts['train']['images']} / val {result.counts['val']['images']} images; "
            f"{result.random_cross_pairs} near-duplicate pairs a random split would have leaked")
