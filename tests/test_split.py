"""make split: three parts, stratified, reproducible, no duplicate group across any boundary, and
stable as the dataset grows (checked against independent hashes: imagehash's pHash, hashlib)."""
import csv
import hashlib
import json
import random
import re
import shutil
from collections import Counter
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from dataset import hashcache, neighbours
from dataset.dedupe import dedupe
from dataset.restore import restore
from dataset.export import export
from dataset.importer import import_folder
from dataset.layout import Dataset
from dataset.split import balance, make_split, random_split
from helpers import make


@pytest.fixture(scope="module")
def seed_dataset(tmp_path_factory, seed_voc):
    dataset = Dataset.at(tmp_path_factory.mktemp("split") / "data")
    import_folder(dataset, seed_voc, progress=False)
    make("export", data=dataset.root)
    return dataset


@pytest.fixture
def fresh(seed_dataset, tmp_path):
    """A copy of the exported seed dataset with no split yet (split.json is the record)."""
    copy = Dataset.at(tmp_path / "data")
    shutil.copytree(seed_dataset.root, copy.root, ignore=shutil.ignore_patterns("split*.json", "train.csv",
                                                                                "val.csv", "test.csv"))
    return copy


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _log(dataset) -> dict:
    """The split's last run, from export/split-log.jsonl."""
    return json.loads((dataset.export / "split-log.jsonl").read_text().splitlines()[-1])


def _parts(dataset) -> dict[str, str]:
    """image name -> part, read from the CSVs (not from split.json)."""
    parts = {}
    for part in ("train", "val", "test"):
        path = dataset.export / f"{part}.csv"
        for row in _rows(path) if path.exists() else []:
            assert parts.setdefault(Path(row[0]).name, part) == part  # one part per image
    return parts


_PHASH: dict[str, imagehash.ImageHash] = {}  # by sha256: the tests share the seed images


def independent_pairs(dataset, names, within: int) -> list[tuple[str, str]]:
    """Duplicate pairs by other means than maskset's finder: imagehash's pHash (well inside the
    threshold) and identical bytes (hashlib)."""
    sha = {n: hashlib.sha256((dataset.images / n).read_bytes()).hexdigest() for n in names}
    for n in names:
        if sha[n] not in _PHASH:
            _PHASH[sha[n]] = imagehash.phash(Image.open(dataset.images / n))
    phash = {n: _PHASH[sha[n]] for n in names}
    ordered = sorted(names)
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]
            if phash[a] - phash[b] <= within or sha[a] == sha[b]]


def straddling(dataset, parts: dict[str, str], within: int = 6) -> list[tuple]:
    pairs = independent_pairs(dataset, list(parts), within)
    assert len(pairs) > 100  # the seed data is full of duplicates: the check has teeth
    return [(a, parts[a], b, parts[b]) for a, b in pairs if parts[a] != parts[b]]


def class_shares(dataset, part: str) -> dict[str, float]:
    everything = Counter(r[5] for r in _rows(dataset.export / "annotations.csv"))
    in_part = Counter(r[5] for r in _rows(dataset.export / f"{part}.csv"))
    return {name: in_part[name] / total for name, total in everything.items()}


def test_three_parts_on_seed_voc_are_leak_free_and_stratified(fresh):
    result = make("split", "VAL=0.2", "TEST=0.1", "SEED=1", data=fresh.root)
    train, val, test = (_rows(fresh.export / f"{p}.csv") for p in ("train", "val", "test"))
    everything = _rows(fresh.export / "annotations.csv")
    assert sorted(map(tuple, train + val + test)) == sorted(map(tuple, everything))  # nothing lost or doubled
    parts = _parts(fresh)
    assert straddling(fresh, parts) == []
    for part, share in (("val", 0.2), ("test", 0.1)):
        for name, got in class_shares(fresh, part).items():
            assert abs(got - share) <= 0.03, (part, name, got)
        assert abs(sum(p == part for p in parts.values()) / len(parts) - share) <= 0.05
    record = json.loads((fresh.export / "split.json").read_text())
    assert record["parts"] == parts and record["test"] == 0.1
    assert record["leakage"]["random_split_cross_pairs"] > 0
    assert f"would have put {record['leakage']['random_split_cross_pairs']} pairs across" in result.stdout
    assert "test share of boxes per class (asked 10%)" in result.stdout


def test_test_0_is_the_two_part_split_of_before(fresh):
    result = make("split", "VAL=0.2", "SEED=1", data=fresh.root)
    assert not (fresh.export / "test.csv").exists() and "test:" not in result.stdout
    parts = _parts(fresh)
    assert set(parts.values()) == {"train", "val"} and straddling(fresh, parts) == []
    for name, got in class_shares(fresh, "val").items():
        assert abs(got - 0.2) <= 0.03, (name, got)


def test_leakage_count_matches_an_independent_random_split(fresh):
    result = make_split(fresh, val=0.2, seed=5, progress=False)
    images = sorted(result.assignment)
    naive_val = random_split(images, 0.2, 5)  # the plain split it is compared with
    assert len(naive_val) == round(0.2 * len(images)) and naive_val <= set(images)
    assert naive_val == random_split(list(reversed(images)), 0.2, 5) != random_split(images, 0.2, 6)
    records = hashcache.image_records(fresh, progress=False)
    name = lambda p: p.rsplit("/", 1)[1]  # noqa: E731
    pairs = [(a, b) for a in images for b in images if a < b and (
        records[name(a)][1] == records[name(b)][1]
        or neighbours.hamming(records[name(a)][0].phash, records[name(b)][0].phash) <= result.threshold
        and neighbours.hamming(records[name(a)][0].dhash, records[name(b)][0].dhash) <= result.dhash_threshold)]
    # The finder joins more than whole frames: crops, small rotations, mirror images (FLIP is on
    # by default here), each confirmed by geometric verification. Those extra pairs are checked
    # here on their own: each one verifies, directly or mirrored.
    from dataset import verify
    from dataset.split import find_duplicates
    found = find_duplicates({n: fp for n, (fp, _) in records.items()}, result.threshold, result.dhash_threshold,
                            True, paths={n: fresh.images / n for n in records},
                            digests={n: sha for n, (_, sha) in records.items()})
    by_path = {name(p): p for p in images}
    finder_pairs = {tuple(sorted((by_path[a], by_path[b]))) for a, b, _ in found.pairs() if a in by_path and b in by_path}
    assert set(pairs) <= finder_pairs
    extra = finder_pairs - set(pairs)
    assert len(extra) <= 20
    for a, b in extra:
        fa, fb = (verify.features_file(fresh.images / name(x)) for x in (a, b))
        assert verify.verify(fa, fb).ok or verify.verify(fa, verify.mirrored(fb)).ok, (a, b)
    assert result.pairs == len(finder_pairs)
    assert result.random_cross_pairs == sum((a in naive_val) != (b in naive_val) for a, b in finder_pairs)


def test_same_seed_same_bytes_other_seed_other_split(fresh):
    outputs = []
    for seed in (3, 3, 4):
        make_split(fresh, val=0.2, test=0.1, seed=seed, resplit="test", progress=False)
        outputs.append(tuple((fresh.export / f).read_bytes()
                             for f in ("train.csv", "val.csv", "test.csv", "split.json")))
    assert outputs[0] == outputs[1]
    assert outputs[0][1] != outputs[2][1] and outputs[0][2] != outputs[2][2]


def _subset(src: Path, names: list[str], folder: Path) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for name in names:
        shutil.copy(src / "images" / name, folder / "images" / name)
        xml = src / "annotations" / (Path(name).stem + ".xml")
        if xml.exists():
            shutil.copy(xml, folder / "annotations" / xml.name)
    return folder


def test_a_growing_dataset_keeps_every_earlier_image_in_its_part(tmp_path, seed_voc):
    names = sorted(p.name for p in (seed_voc / "images").iterdir())
    random.Random(0).shuffle(names)
    first, later = sorted(names[:450]), sorted(names[450:])
    dataset = Dataset.at(tmp_path / "data")
    make("import", f"SRC={_subset(seed_voc, first, tmp_path / 'week1')}", data=dataset.root)
    make("export", data=dataset.root)
    make("split", "VAL=0.2", "TEST=0.1", data=dataset.root)
    before = _parts(dataset)
    record_before = json.loads((dataset.export / "split.json").read_text())

    make("import", f"SRC={_subset(seed_voc, later, tmp_path / 'week2')}", data=dataset.root)
    make("export", data=dataset.root)
    result = make("split", data=dataset.root)  # no settings: the record's
    after = _parts(dataset)
    record = json.loads((dataset.export / "split.json").read_text())
    assert {n: after.get(n) for n in before} == before            # no earlier image moved
    assert set(after) | set(record["held_out"]) == set(names)    # every new one placed or held out
    assert not set(record["held_out"]) & set(before)
    assert straddling(dataset, after) == []
    assert record["counts"]["test"]["images"] == record_before["counts"]["test"]["images"]  # test frozen
    # a new image that duplicates a placed one joins that one's part; held out if that part is test
    joined = held = 0
    for group in record["near_duplicate_groups"]:
        earlier = {before[n] for n in group if n in before}
        for n in group:
            if n in before or len(earlier) != 1:
                continue
            (part,) = earlier
            if part == "test":
                assert n in record["held_out"] and "in test" in record["held_out"][n]
                held += 1
            else:
                assert after[n] == part
                joined += 1
    assert joined > 10 and held > 0
    drift = _log(dataset)["drift"]
    assert f"new images train {drift['added']['train']}, val {drift['added']['val']}" in result.stdout
    assert "left none" in result.stdout and "held out:" in result.stdout
    # the shares the new images were placed for stay close to the asked ones
    for name, got in class_shares(dataset, "val").items():
        assert abs(got - 0.2) <= 0.03, (name, got)


def test_images_that_leave_leave_their_part_and_come_back_to_it(fresh):
    make("split", "VAL=0.2", "TEST=0.1", "SEED=2", data=fresh.root)
    before = _parts(fresh)
    first_record = (fresh.export / "split.json").read_bytes()
    with fresh.lock("test"):
        dedupe(fresh, progress=False)  # quarantines duplicates: they leave the dataset
        export(fresh, progress=False)
    result = make("split", data=fresh.root)
    gone = set(before) - {p.name for p in fresh.image_files()}
    after = _parts(fresh)
    assert gone and not gone & set(after)
    assert {n: before[n] for n in after} == after
    left = Counter(before[n] for n in gone)
    record = json.loads((fresh.export / "split.json").read_text())
    assert _log(fresh)["drift"]["left"] == {p: left.get(p, 0) for p in ("train", "val", "test")}
    assert f"left {', '.join(f'{p} {left[p]}' for p in ('train', 'val', 'test') if left[p])}" in result.stdout
    assert {n: record["departed"][n] for n in gone} == {n: before[n] for n in gone}
    with fresh.lock("test"):
        restore(fresh, progress=False)
        export(fresh, progress=False)
    make("split", data=fresh.root)
    assert _parts(fresh) == before  # back where they were
    assert (fresh.export / "split.json").read_bytes() == first_record  # the same state, the same record
    assert len((fresh.export / "split-log.jsonl").read_text().splitlines()) == 3  # and the three runs logged


def test_resplit_redraws_train_and_val_keeps_test_and_the_old_record(fresh):
    make("split", "VAL=0.2", "TEST=0.1", "SEED=1", data=fresh.root)
    old = (fresh.export / "split.json").read_text()
    before = _parts(fresh)
    refused = make("split", "VAL=0.3", data=fresh.root, check=False)
    assert refused.returncode == 2 and "RESPLIT=1" in refused.stderr and "VAL=0.2" in refused.stderr
    refused = make("split", "TEST=0.2", "RESPLIT=1", data=fresh.root, check=False)
    assert refused.returncode == 2 and "RESPLIT=test" in refused.stderr
    assert (fresh.export / "split.json").read_text() == old  # refusals change nothing

    result = make("split", "RESPLIT=1", "SEED=7", "VAL=0.25", data=fresh.root)
    after = _parts(fresh)
    test = lambda parts: {n for n, p in parts.items() if p == "test"}  # noqa: E731
    assert test(after) == test(before)
    assert {n for n, p in after.items() if p == "val"} != {n for n, p in before.items() if p == "val"}
    kept = [p for p in fresh.export.glob("split-*.json")]
    assert len(kept) == 1 and kept[0].read_text() == old and str(kept[0]) in result.stdout
    assert straddling(fresh, after) == []
    for name, got in class_shares(fresh, "val").items():
        assert abs(got - 0.25) <= 0.03, (name, got)

    make("split", "RESPLIT=test", "SEED=8", data=fresh.root)
    assert test(_parts(fresh)) != test(before) and len(list(fresh.export.glob("split-*.json"))) == 2


def test_folds_are_grouped_and_stratified(fresh):
    result = make("split", "VAL=0.2", "TEST=0.1", "FOLDS=5", data=fresh.root)
    parts = _parts(fresh)
    fold_of = {}
    for k in range(1, 6):
        val = {Path(r[0]).name for r in _rows(fresh.export / "folds" / f"fold-{k}-val.csv")}
        train = {Path(r[0]).name for r in _rows(fresh.export / "folds" / f"fold-{k}-train.csv")}
        assert not val & train and val | train == {n for n, p in parts.items() if p != "test"}
        fold_of.update({n: k for n in val})
    assert len(fold_of) == sum(p != "test" for p in parts.values())
    assert straddling(fresh, fold_of) == []  # no duplicate pair across two folds
    rows = [r for r in _rows(fresh.export / "annotations.csv") if parts[Path(r[0]).name] != "test"]
    totals = Counter(r[5] for r in rows)
    for k in range(1, 6):
        in_fold = Counter(r[5] for r in rows if fold_of[Path(r[0]).name] == k)
        for name, total in totals.items():
            assert abs(in_fold[name] / total - 0.2) <= 0.03, (k, name)
    assert "folds: 5 grouped, stratified folds" in result.stdout
    written = {p.name: p.read_bytes() for p in (fresh.export / "folds").iterdir()}
    make("split", data=fresh.root)  # kept like the other settings
    assert {p.name: p.read_bytes() for p in (fresh.export / "folds").iterdir()} == written
    make("split", "FOLDS=0", data=fresh.root)
    assert not list((fresh.export / "folds").iterdir())


def test_balance_places_groups_by_class_shares_around_fixed_ones():
    # 20 single-box images of each class; 2 mask images already sit in val (an earlier split)
    vectors = [[1, 0, 1]] * 18 + [[0, 1, 1]] * 20
    base = {"train": [0, 0, 0], "val": [2, 0, 2], "test": [0, 0, 0]}
    placed = balance(vectors, [("train", "val", "test")] * len(vectors), base, {"val": 0.2, "test": 0.1}, seed=0)
    got = {part: [sum(v[c] for v, p in zip(vectors, placed) if p == part) for c in (0, 1)]
           for part in ("val", "test")}
    assert got == {"val": [2, 4], "test": [2, 2]}  # val: 4 of 20 of each class with the 2 it had


def test_split_without_export_says_what_to_run(tmp_path):
    Dataset.at(tmp_path / "d").ensure()
    result = make("split", data=tmp_path / "d", check=False)
    assert result.returncode != 0 and "Run `make export` first" in result.stderr


def test_bad_shares_are_refused(fresh):
    for args, words in ((["VAL=1.5"], "between 0 and 1"), (["VAL=0.6", "TEST=0.5"], "below 1"),
                        (["TEST=-0.1"], "test share"), (["FOLDS=1"], "FOLDS=1"), (["RESPLIT=maybe"], "RESPLIT=")):
        result = make("split", *args, data=fresh.root, check=False)
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
    (fresh.export / "split.json").write_text("{not json")
    result = make("split", data=fresh.root, check=False)
    assert result.returncode == 2 and "split.json: cannot read" in result.stderr and "RESPLIT=test" in result.stderr
    make("split", "RESPLIT=test", data=fresh.root)  # draws anew, keeping the unreadable record beside
    assert [p.read_text() for p in fresh.export.glob("split-*.json")] == ["{not json"]
    assert _log(fresh)["mode"] == "all"


def test_the_card_reads_three_parts(fresh):
    make("split", "VAL=0.2", "TEST=0.1", data=fresh.root)
    make("card", data=fresh.root)
    card = (fresh.export / "DATASET.md").read_text()
    counts = json.loads((fresh.export / "split.json").read_text())["counts"]
    for part in ("train", "val", "test"):
        assert re.search(rf"^\| {part} \| {counts[part]['images']} \|", card, re.M), part
    assert "train, val, test, split.json" in card and "so val and test hold no copies" in card
