"""make validate: every kind of problem is named with file and field; FIX=1 mends the safe ones."""
import json

import pytest
from lxml import etree
from PIL import Image

from dataset import exif, voc
from dataset.layout import Dataset
from dataset.validate import validate
from helpers import make


def _edit(xml, change):
    root = etree.parse(str(xml)).getroot()
    change(root)
    xml.write_bytes(etree.tostring(root))


def _set(path, value):
    return lambda root: setattr(root.find(path), "text", value)


def _jpeg_with_orientation(path, orientation=6, size=(320, 240)):
    image = Image.new("RGB", size, (200, 100, 50))
    exif_data = image.getexif()
    exif_data[0x0112] = orientation
    image.save(path, exif=exif_data, quality=95)


@pytest.fixture
def broken(sample_dataset):
    """The sample dataset with one slip of each kind, keyed by the file it is in."""
    ds = sample_dataset
    a = ds.annotations
    _edit(a / "scene_0000.xml", _set("size/width", "999"))
    _edit(a / "scene_0001.xml", _set("object/bndbox/xmax", "400"))
    _edit(a / "scene_0002.xml", _set("object/bndbox/xmin", "5000"))          # xmin > xmax
    _edit(a / "scene_0003.xml", _set("object/bndbox/ymin", "12.5"))
    _edit(a / "scene_0004.xml", _set("object/bndbox/ymin", "12.0"))
    _edit(a / "scene_0005.xml", _set("object/name", "face"))
    _edit(a / "scene_0006.xml", lambda r: r.append(etree.fromstring(etree.tostring(r.find("object")))))
    _edit(a / "scene_0007.xml", lambda r: r.find("object/bndbox").remove(r.find("object/bndbox/ymax")))
    (a / "scene_0008.xml").write_text("<annotation><filename>scene_0008.jpg</filename><size>")
    (a / "ghost.xml").write_bytes((a / "scene_0009.xml").read_bytes())
    (ds.images / "scene_0010.jpg").write_bytes(b"<html>captcha</html>")
    (a / "scene_0011.xml").unlink()                                            # pending, not an error
    _jpeg_with_orientation(ds.images / "rotated.jpg")
    voc.write(voc.VocAnnotation("rotated.jpg", 320, 240, objects=[voc.VocObject("mask", 10, 10, 50, 60)]),
              a / "rotated.xml")
    return ds


EXPECTED = {
    ("annotations/scene_0000.xml", "<size><width>", "size-mismatch"),
    ("annotations/scene_0001.xml", "<object> #1 <bndbox><xmax>", "out-of-bounds"),
    ("annotations/scene_0002.xml", "<object> #1 <bndbox>", "degenerate-box"),
    ("annotations/scene_0003.xml", "<object> #1 <bndbox><ymin>", "non-integer"),
    ("annotations/scene_0004.xml", "<object> #1 <bndbox><ymin>", "integer-as-float"),
    ("annotations/scene_0005.xml", "<object> #1 <name>", "unknown-class"),
    ("annotations/scene_0006.xml", None, "duplicate-box"),
    ("annotations/scene_0007.xml", "<object> #1 <bndbox><ymax>", "missing-field"),
    ("annotations/scene_0008.xml", None, "malformed-xml"),
    ("annotations/ghost.xml", "<filename>", "orphan-annotation"),
    ("images/scene_0010.jpg", "image", "image-unreadable"),
    ("images/rotated.jpg", "EXIF Orientation", "exif-orientation"),
}


def test_each_problem_is_named_by_file_field_and_kind(broken):
    report = validate(broken, progress=False)
    found = {(f.file, f.field, f.kind) for f in report.findings}
    for file, field, kind in EXPECTED:
        assert any(f == file and (field is None or fl == field) and k == kind for f, fl, k in found), (file, kind)
    assert len(report.findings) == len(EXPECTED)
    assert "scene_0011.jpg" in report.pending
    assert {f.kind for f in report.warnings} == {"integer-as-float", "exif-orientation"}
    saved = json.loads((broken.export / "validate.json").read_text())
    assert saved["summary"]["errors"] == len(EXPECTED) - 2


def test_make_validate_exits_nonzero_and_prints_one_line_each(broken):
    result = make("validate", data=broken.root, check=False)
    assert result.returncode != 0 and "validate] Error 1" in result.stderr  # the stage exited 1
    lines = [l for l in result.stdout.splitlines() if l.startswith(("error:", "warning:"))]
    assert len(lines) == len(EXPECTED)
    assert "error: annotations/scene_0001.xml: <object> #1 <bndbox><xmax>: 400 is outside the image" in result.stdout
    assert "make validate FIX=1" in result.stdout


def test_fix_clamps_corrects_size_clears_orientation_and_keeps_originals(broken):
    originals = {n: (broken.annotations / n).read_bytes() for n in ("scene_0000.xml", "scene_0001.xml", "scene_0006.xml")}
    rotated_before = (broken.images / "rotated.jpg").read_bytes()
    make("validate", "FIX=1", data=broken.root, check=False)
    report = validate(broken, progress=False)
    kinds = {f.kind for f in report.findings}
    assert not kinds & {"size-mismatch", "out-of-bounds", "duplicate-box", "exif-orientation"}
    assert voc.parse(broken.annotations / "scene_0000.xml").width == 320
    assert voc.parse(broken.annotations / "scene_0001.xml").objects[0].xmax == 320
    kept = {p.name: p.read_bytes() for p in (broken.quarantine / "fixed").rglob("*") if p.is_file()}
    for name, data in originals.items():
        assert kept[name] == data
    assert kept["rotated.jpg"] == rotated_before
    # the orientation fix is lossless: only the tag's two bytes changed
    after = (broken.images / "rotated.jpg").read_bytes()
    assert len(after) == len(rotated_before)
    assert sum(a != b for a, b in zip(after, rotated_before)) == 1
    with Image.open(broken.images / "rotated.jpg") as image:
        assert image.getexif().get(0x0112) == 1


def test_fix_removes_exactly_the_duplicate_box(broken):
    xml = broken.annotations / "scene_0006.xml"
    # the copy says 57.0 where the original says 57: the same box, written differently
    _edit(xml, lambda root: setattr(root.findall("object")[-1].find("bndbox/xmin"), "text",
                                    root.find("object/bndbox/xmin").text + ".0"))
    before = voc.parse(xml).objects
    assert before[-1].raw["xmin"] == before[0].raw["xmin"] + ".0"
    make("validate", "FIX=1", data=broken.root, check=False)
    after = voc.parse(xml).objects
    assert len(after) == len(before) - 1
    assert [o.box for o in after] == [o.box for o in before[:-1]]


@pytest.mark.parametrize("payload", [
    # billion laughs: entity expansion must not happen
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;">]>'
    '<annotation><filename>&y;</filename></annotation>',
    # external entity: a local file must not be read
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<annotation><filename>&e;</filename></annotation>',
])
def test_hostile_xml_is_not_expanded(tmp_path, payload):
    path = tmp_path / "evil.xml"
    path.write_text(payload)
    try:
        ann = voc.parse(path)
    except voc.VocError:
        return
    assert "root:" not in ann.filename and "xxxxxxxxxx" not in ann.filename


def test_exif_patch_leaves_files_without_orientation_alone(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.jpg")
    data = (tmp_path / "plain.jpg").read_bytes()
    assert exif.clear_orientation(data) == data
    assert exif.clear_orientation(b"not a jpeg") == b"not a jpeg"


def test_seed_voc_is_clean(tmp_path, seed_voc):
    from dataset.importer import import_folder
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, seed_voc, progress=False)
    report = validate(dataset, progress=False)
    assert report.errors == [] and len(report.annotated) == 691
    assert dict(report.boxes) == {"mask": 457, "noMask": 366}


# -- incremental: what is unchanged is remembered ---------------------------------------------------
def _findings(report):
    return sorted((f.file, f.field, f.kind, f.severity, f.message) for f in report.findings)


def test_a_rerun_checks_only_what_changed_and_finds_the_same(broken):
    ds = broken
    first = validate(ds, progress=False)
    # scene_0010.jpg was replaced and rotated.jpg was never imported: only they are decoded;
    # every other image's facts come from import's manifest record (import decoded each once)
    assert first.checked == len(ds.annotation_files()) and first.decoded == 2
    again = validate(ds, progress=False)
    assert (again.checked, again.decoded) == (0, 0)
    assert _findings(again) == _findings(first) and again.counts() == first.counts()
    assert again.pending == first.pending and sorted(again.annotations) == sorted(first.annotations)
    for name, ann in first.annotations.items():
        assert [(o.name, o.box, o.difficult) for o in again.annotations[name].objects] == \
            [(o.name, o.box, o.difficult) for o in ann.objects]
    rechecked = validate(ds, progress=False, recheck=True)
    assert rechecked.decoded == len(rechecked.annotated) + 1  # every image with a VOC file (+ the broken one)
    assert _findings(rechecked) == _findings(first)

    _edit(ds.annotations / "scene_0012.xml", _set("object/bndbox/xmax", "9999"))  # one VOC file edited
    edited = validate(ds, progress=False)
    assert (edited.checked, edited.decoded) == (1, 0)
    assert ("annotations/scene_0012.xml", "<object> #1 <bndbox><xmax>", "out-of-bounds") in \
        {(f.file, f.field, f.kind) for f in edited.findings}

    Image.new("RGB", (100, 80)).save(ds.images / "scene_0013.jpg")  # an image replaced
    replaced = validate(ds, progress=False)
    assert (replaced.checked, replaced.decoded) == (1, 1)
    assert ("annotations/scene_0013.xml", "<size><width>", "size-mismatch") in \
        {(f.file, f.field, f.kind) for f in replaced.findings}

    ds.write_classes(["mask"])  # classes.txt changed: every VOC file again, no image decoded
    narrowed = validate(ds, progress=False)
    assert narrowed.checked == len(ds.annotation_files()) and narrowed.decoded == 0
    assert any(f.kind == "unknown-class" and "'no_mask'" in f.message for f in narrowed.findings)

    (ds.annotations / "scene_0014.xml").unlink()  # a file gone: pending, and forgotten
    gone = validate(ds, progress=False)
    assert "scene_0014.jpg" in gone.pending and gone.checked == 0
    header, memory = (json.loads(line) for line in (ds.cache / "validate-v1.json").read_text().splitlines())
    assert "scene_0014.xml" not in memory["entries"] and len(memory["entries"]) == len(ds.annotation_files())
    assert header["last"]["signature"] == gone.signature  # the next run, with nothing changed, reads this alone
    unchanged = validate(ds, progress=False)
    assert (unchanged.checked, unchanged.signature) == (0, gone.signature)
    assert _findings(unchanged) == _findings(gone) and unchanged.counts() == gone.counts()
    assert {n: [(o.name, o.box) for o in a.objects] for n, a in unchanged.annotations.items()} == \
        {n: [(o.name, o.box) for o in a.objects] for n, a in gone.annotations.items()}


def test_export_reuses_the_validation_that_just_ran_and_writes_only_what_changed(sample_dataset):
    ds = sample_dataset
    make("validate", data=ds.root)
    result = make("export", data=ds.root)
    assert "validation: 0 VOC files checked" in result.stdout and "wrote" in result.stdout
    written = (ds.export / "annotations.csv").read_bytes()
    stamp = (ds.export / "annotations.csv").stat().st_mtime_ns
    again = make("export", data=ds.root)  # nothing changed: nothing to write
    assert "its CSV files are up to date" in again.stdout and again.stdout.splitlines()[0] == \
        result.stdout.splitlines()[0]
    assert (ds.export / "annotations.csv").stat().st_mtime_ns == stamp
    for change in ("a box moved", "the CSV edited by hand", "an option"):
        if change == "a box moved":
            _edit(ds.annotations / "scene_0003.xml", _set("object/bndbox/xmin", "3"))
            args = ()
        elif change == "the CSV edited by hand":
            (ds.export / "annotations.csv").write_text("mine\n")
            args = ()
        else:
            args = ("SKIP_DIFFICULT=1",)
        result = make("export", *args, data=ds.root)
        assert "wrote" in result.stdout, change
        assert (ds.export / "annotations.csv").read_text() != "mine\n"
    lines = (ds.export / "annotations.csv").read_text().splitlines()
    assert any(line.startswith("../images/scene_0003.jpg,2,") for line in lines)  # VOC 3 is CSV 2
    assert len(lines) == len(written.decode().splitlines())


def test_import_records_what_its_one_decode_learned(sample_dataset):
    from dataset import manifest
    from dataset.images import inspect
    for name, record in manifest.state(sample_dataset).items():
        path = sample_dataset.images / name
        info, stat = inspect(path), path.stat()
        assert (record["width"], record["height"], record["format"]) == (info.width, info.height, info.format)
        assert (record["bytes"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns), name


def test_scrape_records_what_its_one_decode_learned(tmp_path):
    """Scraped images (plain, converted, EXIF-rotated ...) carry their facts; once annotated,
    validate decodes none of them."""
    import subprocess
    from bing_traps import add_tricky_results
    from dataset import manifest
    from dataset.fixtures.fakebing import FakeBing
    from dataset.images import inspect
    from helpers import MASKSET
    data = tmp_path / "data"
    with FakeBing(page_size=8) as fake:
        add_tricky_results(fake, slow=0.5)
        run = subprocess.run([MASKSET, "scrape", "--data", str(data), "--query", "faces", "--limit", "100",
                              "--bing-url", fake.base, "--timeout", "2", "--total-timeout", "3", "--backoff",
                              "0.05", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ds = Dataset.at(data)
    records = manifest.state(ds)
    assert len(records) >= 10
    for name, record in records.items():
        path = ds.images / name
        info, stat = inspect(path), path.stat()
        assert (record["width"], record["height"], record["format"], info.orientation) == \
            (info.width, info.height, info.format, 1), name
        assert (record["bytes"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns), name
        voc.write(voc.VocAnnotation(name, info.width, info.height, objects=[voc.VocObject("mask", 2, 2, 20, 20)]),
                  ds.annotation_for(name))
    report = validate(ds, progress=False)
    assert report.decoded == 0 and report.checked == len(records) and report.errors == []
