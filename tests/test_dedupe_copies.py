"""The kinds of copies a perceptual hash misses, on real photos with real transformations: crops,
rotations, mirror images, heavy re-encodes and two edits at once are found by `make dedupe`
(mirror images with FLIP=1) and by `make leakcheck` (mirror images by default); the copy kept is
the original, not its padded, PNG or upscaled copy; a studio series (same model and backdrop,
another pose) stays apart. Plus the parts under it: the window index against brute force, the
JPEG quality estimate, the cache pruning."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from dataset import hashcache, hashing, neighbours, verify
from dataset.dedupe import jpeg_quality
from dataset.layout import Dataset
from helpers import make

ORIGINALS = ("10.jpg", "100.jpg", "322.jpg")   # distinct seed photos, 720-960 px
STUDIO_SERIES = ("320.jpg", "322.jpg")          # same model, backdrop and shirt; another pose


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def _crop(image, left, top, right, bottom):
    w, h = image.size
    return image.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def _rotate(image, degrees):
    """Rotated, then cut to an upright box inside the rotated picture (no fill shows)."""
    w, h = image.size
    rotated = image.rotate(degrees, resample=Image.BICUBIC, expand=False)
    a = np.radians(abs(degrees))
    # the largest centred box of the original's aspect that stays inside the rotated frame
    k = 1 / (np.cos(a) + max(w / h, h / w) * np.sin(a))
    cw, ch = int(w * k), int(h * k)
    return rotated.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2))


def _pad(image):
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (0, 0, 0))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def _copies(original: Image.Image) -> dict[str, bytes]:
    """What scraping does to a photo: each transformation as a file's bytes."""
    png = io.BytesIO()
    Image.open(io.BytesIO(_jpeg(original, 90))).save(png, "PNG")  # the original's own pixels, lossless
    w, h = original.size
    return {
        "crop": _jpeg(_crop(original, 0.16, 0.04, 0.10, 0.15), 85),
        "rotate": _jpeg(_rotate(original, 4), 85),
        "mirror": _jpeg(original.transpose(Image.FLIP_LEFT_RIGHT), 85),
        "reencode": _jpeg(original.resize((w * 2 // 3, h * 2 // 3), Image.LANCZOS), 20),
        "combined": _jpeg(_rotate(_crop(original, 0.08, 0.08, 0.0, 0.04), -2), 30),
        "pad": _jpeg(_pad(original), 85),
        "png": png.getvalue(),
        "upscale": _jpeg(original.resize((w * 8 // 5, h * 8 // 5), Image.LANCZOS), 92),
    }


SUFFIX = {"png": ".png"}


@pytest.fixture(scope="module")
def copies_folder(seed_voc, tmp_path_factory):
    """originals (saved at quality 90) and 8 copies of each: {file: (original, transformation)}."""
    folder = tmp_path_factory.mktemp("copies")
    truth = {}
    for name in ORIGINALS:
        stem = name.split(".")[0]
        with Image.open(seed_voc / "images" / name) as image:
            original = image.convert("RGB")
        (folder / f"o{stem}.jpg").write_bytes(_jpeg(original, 90))
        truth[f"o{stem}.jpg"] = (stem, "original")
        for kind, data in _copies(original).items():
            file = f"c{stem}_{kind}{SUFFIX.get(kind, '.jpg')}"
            (folder / file).write_bytes(data)
            truth[file] = (stem, kind)
    return folder, truth


def _dataset(tmp_path, folder) -> Dataset:
    dataset = Dataset.at(tmp_path / "data").ensure()
    for path in folder.iterdir():
        os.link(path, dataset.images / path.name)
    return dataset


def _groups(report) -> list[set[str]]:
    return [{d["keeper"], *(x["file"] for x in d["duplicates"])} for d in report["details"]]


def test_whole_frame_hashes_are_the_old_ones(copies_folder):
    """The cache's whole-frame pHash/dHash (what every DIRECT pair and older tools compare) are
    the 32x32-thumbnail hashes of before, bit for bit."""
    folder, _ = copies_folder
    for path in sorted(folder.iterdir())[:6]:
        data = path.read_bytes()
        thumb = hashing.thumbnail(data)
        fingerprint = hashing.fingerprint_bytes(data)
        assert (fingerprint.phash, fingerprint.dhash) == \
               (hashing.phash_of_thumbnail(thumb), hashing.dhash_of_thumbnail(thumb)), path.name
        assert len(fingerprint.views) == hashing.VIEW_ROWS * 24


def test_make_dedupe_flip_finds_every_copy_and_keeps_the_original(copies_folder, tmp_path):
    folder, truth = copies_folder
    dataset = _dataset(tmp_path, folder)
    out = make("dedupe", "FLIP=1", data=dataset.root).stdout
    assert "mirrored copies included" in out
    report = json.loads((dataset.export / "dedupe.json").read_text())
    expected = sorted(sorted(f for f, (o, _) in truth.items() if o == name.split(".")[0]) for name in ORIGINALS)
    assert sorted(sorted(g) for g in _groups(report)) == expected  # every copy found, nothing mixed
    # The whole-frame hashes alone (the finder of before) miss these: the windows and the
    # verifier found them.
    records = hashcache.hash_records(sorted(folder.iterdir()))
    old = neighbours.groups(sorted(truth), [(a, b) for a, b, _ in neighbours.similar_pairs(
        {p.name: fp for p, (fp, _) in records.items()})])
    old_group = {name: k for k, g in enumerate(old) for name in g}
    missed = {truth[f][1] for f in truth if old_group[f] != old_group[f"o{truth[f][0]}.jpg"]}
    assert {"crop", "rotate", "mirror", "combined"} <= missed
    assert report["verified"] > 0
    # The keeper is the original every time, over a padded copy (more pixels), a PNG re-save of it
    # (more bytes) and an upscaled copy (more pixels and bytes).
    assert sorted(d["keeper"] for d in report["details"]) == sorted(f"o{n.split('.')[0]}.jpg" for n in ORIGINALS)
    assert sorted(p.name for p in dataset.image_files()) == sorted(d["keeper"] for d in report["details"])

    # make restore, then FLIP off (dedupe's default): the mirror images are not duplicates.
    make("restore", data=dataset.root)
    make("dedupe", data=dataset.root)
    report = json.loads((dataset.export / "dedupe.json").read_text())
    assert not report["flip"]
    assert sorted(p.name for p in dataset.image_files()) == \
        sorted([d["keeper"] for d in report["details"]] + [f for f, (_, k) in truth.items() if k == "mirror"])


def test_a_studio_series_stays_apart(seed_voc, tmp_path):
    """320 and 322: the same model, backdrop and shirt in another pose. ORB finds a consistent
    transform between them (32 inliers at the first verifier's settings); the aligned-overlap
    hashes tell them apart."""
    a, b = (verify.features_file(seed_voc / "images" / n) for n in STUDIO_SERIES)
    verdict = verify.verify(a, b)
    assert not verdict.ok and not verify.verify(b, a).ok
    records = hashcache.hash_records([seed_voc / "images" / n for n in STUDIO_SERIES])
    found = verify.find_pairs({p.name: fp for p, (fp, _) in records.items()},
                              {p.name: p for p in records}, flip=True)
    assert found.pairs == []
    # judged once: both stay alone, and the second pass does not propose the pair again
    assert (found.verified, found.rejected, found.second_pass) == (1, 1, 0)


def test_verify_accepts_a_crop_and_refuses_another_picture(copies_folder):
    folder, _ = copies_folder
    original = verify.features_file(folder / "o10.jpg")
    crop = verify.verify(original, verify.features_file(folder / "c10_crop.jpg"))
    assert crop.ok and crop.inliers >= verify.MIN_INLIERS and abs(crop.angle) < 1
    rotated = verify.verify(original, verify.features_file(folder / "c10_rotate.jpg"))
    assert rotated.ok and 2.5 < abs(rotated.angle) < 5.5
    mirror = verify.features_file(folder / "c10_mirror.jpg")
    assert not verify.verify(original, mirror).ok and verify.verify(original, verify.mirrored(mirror)).ok
    assert not verify.verify(original, verify.features_file(folder / "o100.jpg")).ok


def test_features_are_remembered_within_a_run_and_never_across_runs(copies_folder, tmp_path):
    """A worker keeps the features of the images its earlier tasks met (a large component is cut
    into tasks that share images), but only for one run: a file replaced between two runs in one
    process (the tests, a notebook) is decoded again, and its new verdict is the right one."""
    folder, _ = copies_folder
    original, copy = tmp_path / "a.jpg", tmp_path / "b.jpg"
    original.write_bytes((folder / "o10.jpg").read_bytes())
    copy.write_bytes((folder / "c10_crop.jpg").read_bytes())
    task = ([(0, 0, 1, neighbours.VIEW)], {0: original, 1: copy}, {})
    assert verify._run_task((*task, "run 1")) == ([0], [(0, True)], 1)
    copy.write_bytes((folder / "o100.jpg").read_bytes())            # another picture, same name
    assert verify._run_task((*task, "run 1")) == ([0], [(0, True)], 1)   # the same run: remembered
    assert verify._run_task((*task, "run 2")) == ([], [(0, False)], 1)   # a new run: decoded again


def test_a_crop_of_another_aspect_is_found_by_the_second_pass(seed_voc, tmp_path):
    """A crop that cuts one axis much more than the other matches no window against a whole
    frame (the first pass proposes nothing), but one of its windows matches one of the
    original's: the pass over the images left alone proposes it, and verification accepts it.
    Another photo in the folder joins nothing."""
    with Image.open(seed_voc / "images" / "5.jpg") as image:
        original = image.convert("RGB")
    files = {"o5.jpg": _jpeg(original, 90),
             "wide.jpg": _jpeg(_crop(original, 0.18, 0.02, 0.02, 0.03), 85),
             "tall.jpg": _jpeg(_crop(original, 0.02, 0.18, 0.03, 0.02), 85),
             "other.jpg": (seed_voc / "images" / "322.jpg").read_bytes()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = {name: tmp_path / name for name in files}
    fingerprints = {name: hashing.fingerprint_bytes(data) for name, data in files.items()}
    keys = sorted(fingerprints)                                  # o5, other, tall, wide
    first = neighbours.candidate_pairs([fingerprints[k] for k in keys])
    assert not {(keys[a], keys[b]) for a, b in zip(first.i.tolist(), first.j.tolist())} & \
        {("o5.jpg", "tall.jpg"), ("o5.jpg", "wide.jpg")}         # the windows against frames miss both
    found = verify.find_pairs(fingerprints, paths)
    assert found.second_pass > 0
    assert neighbours.groups(keys, [(a, b) for a, b, _ in found.pairs]) == \
        [["o5.jpg", "tall.jpg", "wide.jpg"], ["other.jpg"]]


def test_make_leakcheck_finds_crops_and_mirror_images_by_default(copies_folder, tmp_path):
    folder, truth = copies_folder
    dataset = Dataset.at(tmp_path / "data").ensure()
    for name in ORIGINALS:
        os.link(folder / f"o{name.split('.')[0]}.jpg", dataset.images / f"o{name.split('.')[0]}.jpg")
    other = tmp_path / "other"
    other.mkdir()
    wanted = [f for f, (_, k) in truth.items() if k in ("crop", "mirror", "rotate", "combined")]
    for file in wanted:
        os.link(folder / file, other / file)

    def found(*variables):
        result = make("leakcheck", f"OTHER={other}", *variables, data=dataset.root, check=False)
        assert result.returncode != 0 and "pair:" in result.stdout, result.stdout + result.stderr  # exit 1: pairs found
        pairs = json.loads((dataset.export / "leakcheck.json").read_text())["pairs"]
        return {os.path.basename(p["other"]) for p in pairs}

    assert found() == set(wanted)
    assert found("FLIP=0") == {f for f in wanted if truth[f][1] != "mirror"}


@pytest.mark.parametrize("seed", [0, 1])
def test_window_index_equals_brute_force(seed):
    """query_index_pairs is exact without max_radius, and at radius 2 misses only pairs with 3
    bits in every chunk."""
    rng = np.random.default_rng(seed)
    db = rng.integers(0, 2**63, size=400, dtype=np.int64).astype(np.uint64)
    queries = db[rng.integers(0, 400, size=300)].copy()
    for k in range(len(queries)):  # near copies: flip a few random bits
        for bit in rng.choice(64, size=rng.integers(0, 14), replace=False):
            queries[k] ^= np.uint64(1) << np.uint64(bit)
    distance = neighbours.popcount64((queries[:, None] ^ db[None, :]).ravel()).reshape(len(queries), len(db))
    for threshold in (8, 12):
        brute = {(int(q), int(e)) for q, e in zip(*np.nonzero(distance <= threshold))}
        q, e, d = neighbours.query_index_pairs(db, queries, threshold)
        assert set(zip(q.tolist(), e.tolist())) == brute
        assert (d == distance[q, e]).all()
        q, e, _ = neighbours.query_index_pairs(db, queries, threshold, max_radius=2)
        capped = set(zip(q.tolist(), e.tolist()))
        assert capped <= brute
        for qq, ee in brute - capped:
            x = int(queries[qq] ^ db[ee])
            assert all(((x >> (16 * c)) & 0xFFFF).bit_count() >= 3 for c in range(4))


@pytest.mark.parametrize("quality", [30, 60, 85, 95])
def test_jpeg_quality_is_read_from_the_quantisation_tables(quality):
    image = Image.effect_noise((64, 64), 40).convert("RGB")
    with Image.open(io.BytesIO(_jpeg(image, quality))) as reopened:
        assert abs(jpeg_quality(reopened.quantization) - quality) <= 1


def test_the_hash_cache_forgets_files_that_left(copies_folder, tmp_path):
    folder, _ = copies_folder
    dataset = _dataset(tmp_path, folder)
    hashcache.image_records(dataset, progress=False)
    assert "c10_crop.jpg" in hashcache.cached_entries(dataset)
    (dataset.images / "c10_crop.jpg").unlink()                  # gone for good
    kept = dataset.quarantine / "duplicates" / "c10_rotate.jpg"  # quarantined: may come back
    kept.parent.mkdir(parents=True)
    os.replace(dataset.images / "c10_rotate.jpg", kept)
    hashcache.image_records(dataset, progress=False)
    cached = hashcache.cached_entries(dataset)
    assert "c10_crop.jpg" not in cached and "c10_rotate.jpg" in cached and "o10.jpg" in cached
