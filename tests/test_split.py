"""make split: stratified, reproducible, and no near-duplicate group across train and val."""
import csv
import json
from collections import Counter

import imagehash
import pytest
from PIL import Image

from dataset import hashcache, neighbours
from dataset.importer import import_folder
from dataset.layout import Dataset
from dataset.split import make_split, random_split
from helpers import make


@pytest.fixture(scope="module")
def seed_dataset(tmp_path_factory, seed_voc):
    dataset = Dataset.at(tmp_path_factory.mktemp("split") / "data")
    import_folder(dataset, seed_voc, progress=False)
    make("export", data=dataset.root)
    return dataset


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_split_is_stratified_and_leak_free_on_seed_voc(seed_dataset):
    result = make("split", "VAL=0.2", "SEED=1", data=seed_dataset.root)
    train = _rows(seed_dataset.export / "train.csv")
    val = _rows(seed_dataset.export / "val.csv")
    everything = _rows(seed_dataset.export / "annotations.csv")
    assert sorted(map(tuple, train + val)) == sorted(map(tuple, everything))  # nothing lost or doubled
    train_images, val_images = {r[0] for r in train}, {r[0] for r in val}
    assert not train_images & val_images
    # per-class box shares in val close to VAL
    totals, in_val = Counter(r[5] for r in everything), Counter(r[5] for r in val)
    for name, total in totals.items():
        assert abs(in_val[name] / total - 0.2) <= 0.03, (name, in_val[name], total)
    assert abs(len(val_images) / len(train_images | val_images) - 0.2) <= 0.05
    # an independent check with imagehash's own pHash: no near-duplicate pair straddles the split
    hashes = {p: imagehash.phash(Image.open(seed_dataset.export / p)) for p in sorted(train_images | val_images)}
    threshold = json.loads((seed_dataset.export / "split.json").read_text())["threshold"]
    names = sorted(hashes)
    straddling = close = 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if hashes[a] - hashes[b] <= max(0, threshold - 4):  # well inside the threshold
                close += 1
                straddling += (a in val_images) != (b in val_images)
    assert close > 200 and straddling == 0
    # the leakage it prevented is printed and recorded
    saved = json.loads((seed_dataset.export / "split.json").read_text())
    assert saved["leakage"]["random_split_cross_pairs"] > 0
    assert f"would have put {saved['leakage']['random_split_cross_pairs']} pairs across" in result.stdout


def test_leakage_count_matches_an_independent_random_split(seed_dataset):
    result = make_split(seed_dataset, val=0.2, seed=5, progress=False)
    images = sorted(result.assignment)
    naive_val = random_split(images, 0.2, 5)  # the plain split it is compared with
    assert len(naive_val) == round(0.2 * len(images)) and naive_val <= set(images)
    assert naive_val == random_split(list(reversed(images)), 0.2, 5) != random_split(images, 0.2, 6)
    hashes = hashcache.image_hashes(seed_dataset, progress=False)
    name = lambda p: p.rsplit("/", 1)[1]
    pairs = [(a, b) for a in images for b in images
             if a < b and neighbours.hamming(hashes[name(a)].phash, hashes[name(b)].phash) <= result.threshold
             and neighbours.hamming(hashes[name(a)].dhash, hashes[name(b)].dhash) <= result.dhash_threshold]
    assert result.pairs == len(pairs)
    assert result.random_cross_pairs == sum((a in naive_val) != (b in naive_val) for a, b in pairs)


def test_same_seed_same_bytes_other_seed_other_split(seed_dataset):
    outputs = []
    for seed in (3, 3, 4):
        make_split(seed_dataset, val=0.2, seed=seed, progress=False)
        outputs.append(tuple((seed_dataset.export / f).read_bytes() for f in ("train.csv", "val.csv", "split.json")))
    assert outputs[0] == outputs[1]
    assert outputs[0][1] != outputs[2][1]


def test_split_without_export_says_what_to_run(tmp_path):
    Dataset.at(tmp_path / "d").ensure()
    result = make("split", data=tmp_path / "d", check=False)
    assert result.returncode != 0 and "Run `make export` first" in result.stderr


def test_bad_val_is_refused(seed_dataset):
    result = make("split", "VAL=1.5", data=seed_dataset.root, check=False)
    assert result.returncode != 0 and "between 0 and 1" in result.stderr
