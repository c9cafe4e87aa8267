"""make import: seed-voc and rendered folders come in as copies with rewritten VOC files."""
import shutil


from dataset import manifest, voc
from dataset.importer import import_folder
from dataset.layout import Dataset
from helpers import make


def test_import_seed_voc_through_make(tmp_path, seed_voc):
    data = tmp_path / "data"
    before = {p.name: p.stat().st_mtime_ns for p in (seed_voc / "images").iterdir()}
    result = make("import", f"SRC={seed_voc}", data=data)
    assert "691 images and 691 annotations imported" in result.stdout
    dataset = Dataset.at(data)
    assert len(dataset.image_files()) == 691 and len(dataset.annotation_files()) == 691
    assert dataset.classes() == ["noMask", "mask"]
    # copied, never moved: the source is untouched
    assert {p.name: p.stat().st_mtime_ns for p in (seed_voc / "images").iterdir()} == before
    # VOC location fields point at the new place; the boxes are as they were
    ann = voc.parse(dataset.annotations / "10.xml")
    assert ann.folder == "images" and ann.filename == "10.jpg" and ann.path == str(dataset.images / "10.jpg")
    original = voc.parse(seed_voc / "annotations" / "10.xml")
    assert original.path.startswith("C:\\")
    assert [o.box for o in ann.objects] == [o.box for o in original.objects]
    # the manifest records the source and the real size
    record = manifest.state(dataset)["10.jpg"]
    assert record["origin"] == "import" and record["source_path"] == str(seed_voc / "images" / "10.jpg")
    assert record["sha256"] == manifest.sha256_file(seed_voc / "images" / "10.jpg")
    # a log (not a terminal) gets the summary lines, not a progress bar's updates
    assert "\r" not in result.stdout + result.stderr
    assert len((result.stdout + result.stderr).splitlines()) <= 5, result.stdout + result.stderr
    # re-importing adds nothing
    again = make("import", f"SRC={seed_voc}", data=data)
    assert "0 images and 0 annotations imported, 691 already there" in again.stdout
    assert len(manifest.read_records(dataset)) == 691


def test_flat_folder_and_existing_annotations_are_kept(tmp_path, sample_src):
    dataset = Dataset.at(tmp_path / "data")
    dataset.ensure()
    mine = dataset.annotations / "scene_0003.xml"
    mine.write_bytes(b"<annotation><filename>scene_0003.jpg</filename></annotation>")
    result = import_folder(dataset, sample_src, progress=False)
    assert result.images_added == len(list(sample_src.glob("*.jpg")))
    assert result.annotations_kept == [str(mine)]
    assert mine.read_bytes() == b"<annotation><filename>scene_0003.jpg</filename></annotation>"
    assert sorted(dataset.classes()) == ["mask", "no_mask"]  # written from the classes found


def test_separate_folders_and_xml_matched_by_filename(tmp_path, sample_src):
    images, annotations = tmp_path / "imgs", tmp_path / "xml"
    images.mkdir()
    annotations.mkdir()
    for jpg in sorted(sample_src.glob("scene_000[0-4].jpg")):
        shutil.copy(jpg, images)
        # an XML named differently from its image is matched by the <filename> it names
        shutil.copy(sample_src / f"{jpg.stem}.xml", annotations / f"label_{jpg.stem}.xml")
    (annotations / "stray.xml").write_bytes((sample_src / "scene_0009.xml").read_bytes())
    (images / "broken.jpg").write_bytes(b"<html>not an image</html>")
    dataset = Dataset.at(tmp_path / "data")
    result = import_folder(dataset, tmp_path, images=images, annotations=annotations, progress=False)
    assert result.images_added == 5 and result.annotations_added == 5
    assert [r[0] for r in result.rejected] == [str(images / "broken.jpg")]
    assert result.orphan_xml == [str(annotations / "stray.xml")]
    assert sorted(p.name for p in dataset.annotation_files()) == [f"scene_000{i}.xml" for i in range(5)]


def test_import_without_src_says_how(tmp_path):
    result = make("import", data=tmp_path / "data", check=False)
    assert result.returncode == 2 and "SRC=" in result.stderr


def test_an_image_sharing_a_stem_gets_its_own_name_and_annotation(tmp_path, sample_src):
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, sample_src, progress=False)
    existing = (dataset.annotations / "scene_0000.xml").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    from PIL import Image
    Image.open(sample_src / "scene_0001.jpg").save(other / "scene_0000.png")  # same stem, other picture
    shutil.copy(sample_src / "scene_0001.xml", other / "scene_0000.xml")
    result = import_folder(dataset, other, progress=False)
    assert result.images_added == 1 and result.annotations_added == 1 and not result.annotations_kept
    assert (dataset.images / "scene_0000-1.png").exists()
    assert (dataset.annotations / "scene_0000.xml").read_bytes() == existing  # untouched
    moved = voc.parse(dataset.annotations / "scene_0000-1.xml")
    assert moved.filename == "scene_0000-1.png"
    assert [o.box for o in moved.objects] == [o.box for o in voc.parse(sample_src / "scene_0001.xml").objects]


def test_import_fingerprints_from_its_one_decode_and_dedupe_reads_them(tmp_path, sample_src):
    """Import decodes every image once (issue 13); the fingerprint made from those pixels is
    the one hashing a file gives, bit for bit, so dedupe decodes nothing to hash them. A PNG
    (lossless: the JPEG-ghost path) and an EXIF-turned JPEG are among them."""
    import io
    from PIL import Image
    from dataset import hashcache
    src = tmp_path / "src"
    shutil.copytree(sample_src, src)
    first = sorted(src.glob("*.jpg"))[0]
    with Image.open(first) as image:
        image.convert("RGB").save(src / "lossless.png")
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned a quarter
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=90, exif=exif.tobytes())
    (src / "turned.jpg").write_bytes(out.getvalue())
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, src, progress=False)
    counts = {}
    seeded = hashcache.image_records(dataset, progress=False, counts=counts)
    assert counts["hashed"] == 0 and {"lossless.png", "turned.jpg"} <= set(seeded)
    shutil.rmtree(dataset.cache)
    fresh = hashcache.image_records(dataset, progress=False, counts=counts)
    assert counts["hashed"] == len(fresh) == len(seeded) and fresh == seeded
    # a file changed after the import is hashed again, not taken from the seed
    (dataset.images / "turned.jpg").write_bytes((src / "lossless.png").read_bytes())
    shutil.rmtree(dataset.cache)
    hashcache.remember(dataset, {"turned.jpg": (*seeded["turned.jpg"], len(out.getvalue()), 0)})
    again = hashcache.image_records(dataset, progress=False, counts=counts)
    assert counts["hashed"] == len(again) and again["turned.jpg"] == seeded["lossless.png"]
