"""Property-based fuzzing (Hypothesis) of the two readers every stage trusts: the VOC reader and the
manifest reader. Any input ends in a correct read or a clear MasksetError, never a traceback."""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset import jsonl, manifest, voc
from dataset.errors import MasksetError
from dataset.layout import Dataset

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts a number field meets in the wild: numbers in every spelling, and everything else.
NUMBER_TEXTS = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["inf", "-inf", "nan", "NaN", "1e309", "-1e309", "210.0", " 12 ", "", "0x10", "1_000",
                     "١٢٣", "12px", "1e-400", "9" * 400]),
    st.text(max_size=12),
)
NAMES = st.one_of(st.sampled_from(["mask", "no_mask", "noMask"]), st.text(max_size=20))


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


@st.composite
def voc_documents(draw) -> bytes:
    """A labelImg-shaped VOC file whose fields may be missing, empty or anything at all."""
    def field(tag, text_strategy=NUMBER_TEXTS):
        if draw(st.integers(0, 9)) == 0:
            return ""  # the tag left out
        return f"<{tag}>{_escape(draw(text_strategy))}</{tag}>"

    objects = []
    for _ in range(draw(st.integers(0, 4))):
        box = "".join(field(t) for t in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(f"<object>{field('name', NAMES)}{field('difficult')}"
                       + (f"<bndbox>{box}</bndbox>" if draw(st.booleans()) or box else "") + "</object>")
    size = "<size>" + "".join(field(t) for t in ("width", "height", "depth")) + "</size>"
    root = draw(st.sampled_from(["annotation", "annotation", "annotation", "html"]))
    body = (f"<{root}>{field('filename', st.text(max_size=30))}{size if draw(st.booleans()) else ''}"
            + "".join(objects) + f"</{root}>")
    return body.encode("utf-8")


def _check_read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.xml"
        path.write_bytes(data)
        try:
            ann = voc.parse(path)
        except MasksetError as error:
            assert str(path) in str(error)  # a clear error names the file
            return
        for value in (ann.width, ann.height, ann.depth):
            assert value is None or (isinstance(value, int) and value >= 0)
        for obj in ann.objects:
            assert obj.name and all(math.isfinite(v) for v in obj.box)


@FUZZ
@given(voc_documents())
def test_voc_reader_reads_or_names_the_problem(data):
    _check_read(data)


@FUZZ
@given(st.binary(max_size=600))
def test_voc_reader_on_any_bytes(data):
    _check_read(data)


@FUZZ
@given(st.data())
def test_voc_reader_on_damaged_real_files(seed_voc, data):
    original = (seed_voc / "annotations" / "10.xml").read_bytes()
    cut = data.draw(st.integers(0, len(original)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=4))
    damaged = bytearray(original[:cut] + original[cut:] * data.draw(st.integers(0, 1)))
    for where, byte in flips:
        if where < len(damaged):
            damaged[where] = byte
    _check_read(bytes(damaged))


# -- the manifest ---------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)
RECORDS = st.fixed_dictionaries({"file": st.text(min_size=1, max_size=12), "event": st.sampled_from(
    ["added", "quarantined", "restored", "fixed"])}, optional={"sha256": st.text(max_size=8), "extra": JSON_VALUES})
LINES = st.one_of(RECORDS.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=30).filter(lambda t: "\n" not in t))


@FUZZ
@given(st.lists(LINES, max_size=8), st.booleans())
def test_manifest_reader_reads_or_names_the_line(lines, ends_with_newline):
    with tempfile.TemporaryDirectory() as folder:
        dataset = Dataset.at(folder)
        text = "\n".join(lines) + ("\n" if ends_with_newline and lines else "")
        dataset.manifest.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            records = manifest.read_records(dataset)
        except MasksetError as error:
            assert "manifest.jsonl:" in str(error) and "not a record" in str(error)
            return
        assert all(isinstance(r.get("file"), str) and isinstance(r.get("event"), str) for r in records)
        manifest.state(dataset, records)  # folds without error


@FUZZ
@given(st.lists(RECORDS, max_size=5), st.text(max_size=40).filter(lambda t: "\n" not in t), RECORDS)
def test_an_append_after_a_torn_tail_keeps_every_record(records, torn, new):
    """Whatever a crash left at the end, the next record lands on a line of its own."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records) + torn, encoding="utf-8")
        jsonl.append(path, new)
        read = jsonl.read(path, strict=True).records
        assert read[-1] == new and read[:len(records)] == records
        whole = torn.strip().startswith("{") and _is_object(torn)
        assert len(read) == len(records) + 1 + whole  # a whole record without its newline is kept


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
