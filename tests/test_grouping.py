"""dataset.grouping: pHash, the neighbour search against brute force, union-find, the hash cache."""
from __future__ import annotations

import io
import itertools
import os
import random
import threading

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from dataset import hashcache, hashing, images, neighbours
from dataset.errors import MasksetError
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes, render_scene


def _brute_pairs(hashes: dict, threshold: int):
    return sorted((a, b, neighbours.hamming(hashes[a], hashes[b]))
                  for a, b in itertools.combinations(sorted(hashes), 2)
                  if neighbours.hamming(hashes[a], hashes[b]) <= threshold)


def _clustered_hashes(n_centres=300, per_centre=4, max_flips=14, seed=0) -> dict[str, int]:
    """Random 64-bit centres with copies a few bits away: every distance from 0 to 14 occurs."""
    rng = random.Random(seed)
    hashes = {}
    for c in range(n_centres):
        centre = rng.getrandbits(64)
        hashes[f"c{c:04d}"] = centre
        for k in range(rng.randrange(per_centre)):
            flips = rng.sample(range(64), rng.randrange(max_flips + 1))
            hashes[f"c{c:04d}-{k}"] = centre ^ sum(1 << b for b in flips)
    hashes["all-zero"], hashes["all-one"] = 0, (1 << 64) - 1  # the uint64 edges
    return hashes


@pytest.mark.parametrize("threshold", [0, 1, 3, 4, 7, 10, 13, 17])
def test_near_pairs_equal_brute_force(threshold):
    hashes = _clustered_hashes()
    pairs = neighbours.near_pairs(hashes, threshold)
    assert pairs == _brute_pairs(hashes, threshold)
    assert all(a < b for a, b, _ in pairs)
    if threshold >= 4:
        assert len(pairs) > 50  # the test data really exercises the search


@pytest.mark.parametrize("threshold,dhash_threshold", [(10, 40), (14, 20), (8, 128)])
def test_similar_pairs_equal_brute_force_over_both_hashes(threshold, dhash_threshold):
    rng = random.Random(1)
    prints = {k: hashing.Fingerprint(p, rng.getrandbits(1) and rng.getrandbits(128) or p << 64 | p)
              for k, p in _clustered_hashes(seed=3).items()}
    expected = [(a, b, d) for a, b, d in _brute_pairs({k: f.phash for k, f in prints.items()}, threshold)
                if neighbours.hamming(prints[a].dhash, prints[b].dhash) <= dhash_threshold]
    found = neighbours.similar_pairs(prints, threshold, dhash_threshold)
    assert found == expected
    assert dhash_threshold == 128 or len(found) < len(_brute_pairs({k: f.phash for k, f in prints.items()}, threshold))


def test_thresholds_out_of_range_are_refused_with_the_range():
    with pytest.raises(MasksetError, match=r"THRESHOLD=65: must be a pHash distance from 0 to 64"):
        neighbours.similar_pairs({}, 65)
    with pytest.raises(MasksetError, match=r"DHASH_THRESHOLD=-1: .* from 0 to 128"):
        neighbours.similar_pairs({}, 10, -1)


def test_same_bytes_pairs_join_each_copy_to_the_first_name():
    digests = {"c.jpg": "x", "a.jpg": "x", "b.jpg": "y", "d.jpg": "x", "e.jpg": "z"}
    assert neighbours.same_bytes_pairs(digests) == [("a.jpg", "c.jpg", 0), ("a.jpg", "d.jpg", 0)]
    assert neighbours.same_bytes_pairs({}) == []


def test_near_pairs_edge_cases():
    assert neighbours.near_pairs({}, 10) == []
    assert neighbours.near_pairs({"a": 5}, 10) == []
    assert neighbours.near_pairs({"a": 5, "b": 5}, 0) == [("a", "b", 0)]
    assert neighbours.near_pairs({"a": 0, "b": (1 << 64) - 1}, 64) == [("a", "b", 64)]
    assert neighbours.near_pairs({"a": 0, "b": (1 << 64) - 1}, 63) == []


def test_groups_are_connected_components():
    keys = [f"k{i:02d}" for i in range(30)]
    rng = random.Random(3)
    pairs = [tuple(sorted(rng.sample(keys, 2))) for _ in range(18)]
    result = neighbours.groups(keys, pairs)
    assert sorted(k for g in result for k in g) == keys  # each key exactly once
    assert result == sorted(result) and all(g == sorted(g) for g in result)
    where = {k: i for i, g in enumerate(result) for k in g}
    assert all(where[a] == where[b] for a, b in pairs)
    # Reference: flood fill over the same edges.
    adjacent = {k: set() for k in keys}
    for a, b in pairs:
        adjacent[a].add(b)
        adjacent[b].add(a)
    seen, reference = set(), []
    for k in keys:
        if k in seen:
            continue
        stack, component = [k], set()
        while stack:
            x = stack.pop()
            if x not in component:
                component.add(x)
                stack.extend(adjacent[x] - component)
        seen |= component
        reference.append(sorted(component))
    assert result == sorted(reference)


def _scene(seed: int) -> Image.Image:
    return render_scene(random.Random(seed), (480, 360))[0]


def test_phash_is_robust_to_copies_and_tells_scenes_apart():
    original = _scene(1)
    small = original.resize((240, 180), Image.LANCZOS)
    brighter = ImageEnhance.Brightness(original).enhance(1.2)
    png = io.BytesIO()
    original.save(png, "PNG")
    copies = [jpeg_bytes(small, 60), jpeg_bytes(brighter), png.getvalue()]
    others = [jpeg_bytes(_scene(s)) for s in range(2, 12)]
    prints = {name: hashing.fingerprint_bytes(data) for name, data in
              [("original", jpeg_bytes(original)), *((f"copy{i}", d) for i, d in enumerate(copies)),
               *((f"other{i}", d) for i, d in enumerate(others))]}
    pairs = neighbours.similar_pairs(prints)
    assert neighbours.groups(sorted(prints), pairs)[0] == ["copy0", "copy1", "copy2", "original"]
    assert not any("other" in a + b for a, b, _ in pairs)


def test_jpeg_size_reads_the_frame_header_and_refuses_what_is_not_a_whole_jpeg():
    image = _scene(3).resize((333, 215))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the header keeps the stored size
    for options in ({}, {"progressive": True}, {"exif": exif.tobytes()}, {"quality": 30, "optimize": True}):
        out = io.BytesIO()
        image.save(out, "JPEG", **options)
        assert images.jpeg_size(out.getvalue()) == (333, 215), options
    whole = jpeg_bytes(image)
    png = io.BytesIO()
    image.save(png, "PNG")
    for data in (whole[: len(whole) // 2], png.getvalue(), b"", b"\xff\xd8\xff"):
        assert images.jpeg_size(data) is None


@pytest.mark.parametrize("size", [(1600, 1083), (333, 215), (600, 64), (130, 127), (64, 64), (40, 30)])
def test_reduction_is_the_scale_pillows_draft_picks(size):
    """images.reduction, which OpenCV's reduced decodes (hashing, thumbnails) and the lossless
    files' area-averaging use, picks the scale Pillow's draft does, which import decodes at."""
    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(out, "JPEG")
    with Image.open(out) as image:
        image.draft("L", (64, 64))
        assert images.reduction(*size, min_short=64) == round(size[0] / image.size[0])
    assert images.reduction(*size, min_long=200) == max(f for f in (1, 2, 4, 8) if f == 1 or max(size) // f >= 200)


def test_jpeg_hash_follows_exif_orientation_and_matches_the_pillow_path():
    # OpenCV decodes JPEGs; Pillow everything else. A rotated-by-EXIF copy must hash like the
    # upright picture, and a PNG of it (Pillow's path) must land within a bit or two.
    upright = _scene(4)
    stored = upright.transpose(Image.ROTATE_90)  # EXIF 6 = rotate 270 to view = undo ROTATE_90
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = io.BytesIO()
    stored.save(rotated, "JPEG", quality=95, exif=exif.tobytes())
    png = io.BytesIO()
    upright.save(png, "PNG")
    base = hashing.fingerprint_bytes(jpeg_bytes(upright, 95)).phash
    assert neighbours.hamming(base, hashing.fingerprint_bytes(rotated.getvalue()).phash) <= 2
    assert neighbours.hamming(base, hashing.fingerprint_bytes(png.getvalue()).phash) <= 2
    assert neighbours.hamming(base, hashing.fingerprint_bytes(jpeg_bytes(stored, 95)).phash) > neighbours.DEFAULT_THRESHOLD


def test_broken_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(jpeg_bytes(_scene(1))[:300])
    with pytest.raises(MasksetError, match="broken.jpg"):
        hashcache.hash_files([bad])


def test_worker_processes_and_threads_hash_alike_and_name_a_broken_file(tmp_path, monkeypatch):
    scene = _scene(5).resize((96, 72))
    paths = []
    for i in range(hashcache.PROCESS_MIN_FILES + 20):
        path = tmp_path / f"{i:03d}.jpg"
        path.write_bytes(jpeg_bytes(ImageEnhance.Brightness(scene).enhance(0.5 + i / 300), 80))
        paths.append(path)
    forks = []
    real_executor = hashcache._executor
    monkeypatch.setattr(hashcache, "_fork_is_safe", lambda: True)  # other tests may leave idle threads
    monkeypatch.setattr(hashcache, "_executor", lambda n: forks.append(real_executor(n)) or forks[-1])
    in_processes = hashcache.hash_files(paths)
    assert isinstance(forks[-1][0], hashcache.ProcessPoolExecutor)
    paths[200].write_bytes(paths[200].read_bytes()[:200])
    with pytest.raises(MasksetError, match="200.jpg: cannot decode"):
        hashcache.hash_files(paths)
    monkeypatch.setattr(hashcache, "_fork_is_safe", lambda: False)
    paths[200].write_bytes(jpeg_bytes(ImageEnhance.Brightness(scene).enhance(0.5 + 200 / 300), 80))
    assert hashcache.hash_files(paths) == in_processes
    assert isinstance(forks[-1][0], hashcache.ThreadPoolExecutor)


def test_fork_is_refused_while_another_thread_runs():
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        assert not hashcache._fork_is_safe()
    finally:
        release.set()
        worker.join()


def test_image_hashes_cache_is_incremental(tmp_path):
    dataset = Dataset.at(tmp_path / "data").ensure()
    for seed in range(4):
        (dataset.images / f"img{seed}.jpg").write_bytes(jpeg_bytes(_scene(seed)))
    first = hashcache.image_hashes(dataset, progress=False)
    assert sorted(first) == [f"img{s}.jpg" for s in range(4)]
    assert first == {p.name: h for p, h in hashcache.hash_files(dataset.image_files()).items()}
    cache = hashcache.cache_path(dataset)
    assert cache.exists()

    # Prove the cache is read, not recomputed: plant a marker hash for an unchanged file.
    entries = hashcache.cached_entries(dataset)
    size, mtime, fingerprint, sha = entries["img1.jpg"]
    entries["img1.jpg"] = (size, mtime, fingerprint._replace(phash=0xFF), sha)
    hashcache._write_cache(cache, entries)
    assert hashcache.image_hashes(dataset, progress=False)["img1.jpg"].phash == 0xFF

    # A changed file (new bytes, new mtime) is hashed again; a new one is added.
    (dataset.images / "img1.jpg").write_bytes(jpeg_bytes(_scene(9)))
    os.utime(dataset.images / "img1.jpg", ns=(1, 1))
    (dataset.images / "new.jpg").write_bytes(jpeg_bytes(_scene(7)))
    again = hashcache.image_hashes(dataset, progress=False)
    assert again["img1.jpg"] == hashing.fingerprint_bytes((dataset.images / "img1.jpg").read_bytes())
    assert again["new.jpg"] == hashing.fingerprint_bytes((dataset.images / "new.jpg").read_bytes())
    assert {k: again[k] for k in ("img0.jpg", "img2.jpg", "img3.jpg")} == \
           {k: first[k] for k in ("img0.jpg", "img2.jpg", "img3.jpg")}
    # files= limits the answer to those files.
    assert list(hashcache.image_hashes(dataset, files=["img2.jpg"], progress=False)) == ["img2.jpg"]


def test_popcount_matches_python():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**63, size=1000, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    values[0] = np.uint64(2**64 - 1)
    assert neighbours.popcount64(values).tolist() == [int(v).bit_count() for v in values]
