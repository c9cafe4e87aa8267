"""make dedupe / make restore on the real seed data and on rendered samples, run as a user would."""
from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dataset import hashcache, neighbours, manifest, voc
from dataset.dedupe import EXACT, NEAR, dedupe, duplicates_folder, log_file
from dataset.importer import import_folder
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from helpers import make


def _tree(root: Path, *folders: str) -> dict[str, str]:
    """relative path -> sha256 for every file under the given folders."""
    found = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _boxes(folder: Path) -> Counter:
    """Boxes per class in every VOC file under folder."""
    counts = Counter()
    for xml in folder.rglob("*.xml"):
        counts.update(o.name for o in voc.parse(xml).objects)
    return counts


@pytest.fixture(scope="module")
def seed_dataset_master(seed_voc, tmp_path_factory) -> Dataset:
    dataset = Dataset.at(tmp_path_factory.mktemp("seed") / "data")
    import_folder(dataset, seed_voc, progress=False)
    return dataset


@pytest.fixture
def seed_dataset(seed_dataset_master, tmp_path) -> Dataset:
    target = tmp_path / "data"
    shutil.copytree(seed_dataset_master.root, target, copy_function=shutil.copy2)
    return Dataset.at(target)


def test_seed_voc_dedupe_restore_roundtrip(seed_dataset, seed_voc, artifacts):
    data = seed_dataset.root
    before = _tree(data, "images", "annotations")
    boxes_before = _boxes(seed_dataset.annotations)
    manifest_before = seed_dataset.manifest.read_bytes()

    # Dry run: the page and the report, nothing moved, nothing recorded.
    out = make("dedupe", "DRY_RUN=1", data=data).stdout
    assert "dry run" in out
    assert _tree(data, "images", "annotations") == before
    assert seed_dataset.manifest.read_bytes() == manifest_before
    dry = json.loads((seed_dataset.export / "dedupe.json").read_text())
    assert dry["dry_run"] and dry["quarantined"] == 0 and dry["would_quarantine"] > 0

    make("dedupe", data=data)
    report = json.loads((seed_dataset.export / "dedupe.json").read_text())
    # The hashes dedupe used (the files have moved, so read its cache).
    cache = {name: (fp.phash, fp.dhash) for name, (_, _, fp, _) in hashcache.cached_entries(seed_dataset).items()}
    sha = {Path(p).name: h for p, h in before.items() if p.startswith("images/")}
    assert set(cache) == set(sha)

    # Exact duplicates: every set of identical files keeps exactly one copy in images/.
    left = {p.name for p in seed_dataset.image_files()}
    by_sha = Counter(sha[name] for name in left)
    assert max(by_sha.values()) == 1
    assert report["exact"] == len(sha) - len(set(sha.values())) == 691 - 619

    # Every group of a brute-force reference over the same whole-frame hashes (plus identical
    # bytes) lies inside one group found; the finder may join more (a verified crop, rotation),
    # but only whole reference groups, and those joins are few on this set of distinct pictures.
    pairs = [(a, b) for a, b in itertools.combinations(sorted(cache), 2)
             if (cache[a][0] ^ cache[b][0]).bit_count() <= report["threshold"]
             and (cache[a][1] ^ cache[b][1]).bit_count() <= report["dhash_threshold"] or sha[a] == sha[b]]
    reference = [g for g in neighbours.groups(sorted(cache), pairs) if len(g) > 1]
    found = sorted(sorted([d["keeper"], *(x["file"] for x in d["duplicates"])]) for d in report["details"])
    group_of = {name: i for i, g in enumerate(found) for name in g}
    for g in reference:
        assert len({group_of.get(name) for name in g}) == 1 and g[0] in group_of
    assert 0 <= sum(len(g) for g in found) - sum(len(g) for g in reference) <= 40
    # the windows found candidates and they were checked (by the dry run: its verdicts are kept)
    assert dry["verified"] > 0 and report["verified"] == 0 and report["verdicts_remembered"] >= dry["verified"]
    copies = Counter(sha.values())
    for name, digest in sha.items():  # identical files always share one group
        if copies[digest] > 1:
            assert {group_of[n] for n in sha if sha[n] == digest} == {group_of[name]}
    assert len(left) == len(cache) - sum(len(g) - 1 for g in found)
    assert 400 <= len(left) <= 460  # "about 430 distinct to the eye"

    # Keeper rule: annotated first (all seed images are), then the resolution of the picture
    # (within RESOLUTION_TIE of the best counts as as good), then compression, then bytes: no
    # duplicate has clearly more pixels than its keeper.
    from dataset.dedupe import RESOLUTION_TIE
    for detail in report["details"]:
        def pixels(name):
            where = seed_dataset.images / name if name == detail["keeper"] else \
                duplicates_folder(seed_dataset) / name
            with Image.open(where) as im:
                return im.width * im.height
        assert all(pixels(detail["keeper"]) >= RESOLUTION_TIE * pixels(d["file"]) for d in detail["duplicates"])

    # No annotation lost: boxes in the dataset plus quarantine are the boxes before.
    assert _boxes(seed_dataset.annotations) + _boxes(duplicates_folder(seed_dataset)) == boxes_before
    assert _boxes(seed_dataset.annotations) != boxes_before  # something did move

    # Each move is in the log and the manifest, naming the keeper.
    moved = {r["file"]: r for r in manifest.read_records(seed_dataset) if r["event"] == "quarantined"}
    assert len(moved) == report["quarantined"] == report["exact"] + report["near"]
    logged = [json.loads(line) for line in log_file(seed_dataset).read_text().splitlines()]
    assert {r["file"] for r in logged} == set(moved)
    for record in moved.values():
        assert record["reason"] in (EXACT, NEAR)
        assert record["keeper"] in left
        assert (data / record["moved_to"]).exists() and (data / record["annotation_moved_to"]).exists()
        if record["reason"] == EXACT:  # a copy of a better-ranked file with the same bytes
            assert sha[record["file"]] == sha[record["duplicate_of"]] and record["distance"] == 0
        else:
            assert record["duplicate_of"] == record["keeper"]
    page = (seed_dataset.export / "dedupe.html").read_text()
    assert page.count('class="group"') == report["groups"] and "KEEP" in page
    shutil.copy(seed_dataset.export / "dedupe.html", artifacts / "dedupe-seed-voc.html")
    shutil.copytree(seed_dataset.export / "dedupe-thumbs", artifacts / "dedupe-thumbs", dirs_exist_ok=True)

    # A second run changes nothing.
    after_first = _tree(data, "images", "annotations", "quarantine")
    manifest_first = seed_dataset.manifest.read_bytes()
    make("dedupe", data=data)
    assert _tree(data, "images", "annotations", "quarantine") == after_first
    assert seed_dataset.manifest.read_bytes() == manifest_first
    assert json.loads((seed_dataset.export / "dedupe.json").read_text())["groups"] == 0

    # make restore puts every file back byte for byte.
    make("restore", data=data)
    assert _tree(data, "images", "annotations") == before
    assert not [p for p in duplicates_folder(seed_dataset).iterdir() if p.name != "log.jsonl"]
    restored = [r for r in manifest.read_records(seed_dataset) if r["event"] == "restored"]
    assert {r["file"] for r in restored} == set(moved)


def test_conflicts_and_keeper_rule(tmp_path):
    """An unannotated larger copy loses to an annotated one; disagreeing labels are a conflict."""
    from dataset.fixtures.scenes import render_scene
    import random
    src = tmp_path / "src"
    src.mkdir()
    image, faces = render_scene(random.Random(5), (400, 300), max_faces=2)
    big = image.resize((800, 600))
    (src / "a_small.jpg").write_bytes(jpeg_bytes(image, 85))
    (src / "b_big_unlabelled.jpg").write_bytes(jpeg_bytes(big, 95))
    (src / "c_relabelled.jpg").write_bytes(jpeg_bytes(image, 70))
    (src / "d_other.jpg").write_bytes(jpeg_bytes(render_scene(random.Random(6), (400, 300))[0]))
    from dataset.fixtures.scenes import annotation_for
    voc.write(annotation_for("a_small.jpg", image, faces, src), src / "a_small.xml")
    wrong = annotation_for("c_relabelled.jpg", image, faces, src)
    wrong.objects[0].name = "mask" if wrong.objects[0].name != "mask" else "no_mask"
    voc.write(wrong, src / "c_relabelled.xml")
    dataset = Dataset.at(tmp_path / "data")
    import_folder(dataset, src, progress=False)

    out = make("dedupe", data=dataset.root).stdout
    assert "conflict: c_relabelled.jpg duplicates a_small.jpg" in out and "classes differ" in out
    report = json.loads((dataset.export / "dedupe.json").read_text())
    assert [(d["keeper"], [(x["file"], x["reason"], x["duplicate_of"]) for x in d["duplicates"]])
            for d in report["details"]] == [("a_small.jpg", [("c_relabelled.jpg", NEAR, "a_small.jpg"),  # annotated
                                                             ("b_big_unlabelled.jpg", NEAR, "a_small.jpg")])]
    assert report["conflicts"] == [{"keeper": "a_small.jpg", "duplicate": "c_relabelled.jpg",
                                    "why": report["conflicts"][0]["why"]}]
    assert sorted(p.name for p in dataset.image_files()) == ["a_small.jpg", "d_other.jpg"]
    assert (duplicates_folder(dataset) / "c_relabelled.xml").exists()
    assert "conflict" in (dataset.export / "dedupe.html").read_text()


def test_incremental_and_named_restore(sample_dataset):
    dataset = sample_dataset
    with dataset.lock("dedupe"):
        first = dedupe(dataset, progress=False)
    assert first.report["exact"] == 3 and first.report["near"] == 3  # the sample's planted copies
    keeper = first.plan.groups[0].keeper.file

    # A new scrape brings a resized copy of a keeper and a new picture: only those are hashed.
    cache_before = hashcache.cached_entries(dataset)
    with Image.open(dataset.images / keeper) as im:
        copy = im.resize((im.width // 2, im.height // 2))
    (dataset.images / "zz_new_copy.jpg").write_bytes(jpeg_bytes(copy, 75))
    from dataset.fixtures.scenes import render_scene
    import random
    (dataset.images / "zz_new_scene.jpg").write_bytes(jpeg_bytes(render_scene(random.Random(99))[0]))
    with dataset.lock("dedupe"):
        second = dedupe(dataset, progress=False)
    cache_after = hashcache.cached_entries(dataset)
    assert {n for n in cache_after if cache_after[n] != cache_before.get(n)} == {"zz_new_copy.jpg", "zz_new_scene.jpg"}
    assert [[x["file"] for x in d["duplicates"]] for d in second.report["details"]] == [["zz_new_copy.jpg"]]
    assert second.report["details"][0]["keeper"] == keeper  # annotated beats unannotated

    # Restoring one file by name means "not a duplicate": later runs keep it.
    make("restore", data=dataset.root, check=True)  # everything back first (an undo)
    with dataset.lock("dedupe"):
        dedupe(dataset, progress=False)
    named = sorted(manifest.read_records(dataset), key=lambda r: r["time"])[-1]["file"]
    from dataset.cli import main
    assert main(["restore", "--data", str(dataset.root), "--files", named, "--quiet"]) == 0
    with dataset.lock("dedupe"):
        third = dedupe(dataset, progress=False)
    assert third.moved == [] and (dataset.images / named).exists()
    assert any(named in d["kept"] for d in third.report["details"])


def test_bad_input_is_a_clear_error(sample_dataset, tmp_path):
    result = make("dedupe", "THRESHOLD=99", data=sample_dataset.root, check=False)
    assert result.returncode != 0 and "THRESHOLD=99: must be a pHash distance from 0 to 64" in result.stderr
    result = make("dedupe", "DHASH_THRESHOLD=200", data=sample_dataset.root, check=False)
    assert result.returncode != 0 and "DHASH_THRESHOLD=200: must be a dHash distance from 0 to 128" in result.stderr
    (sample_dataset.images / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    result = make("dedupe", data=sample_dataset.root, check=False)
    assert result.returncode != 0 and "truncated.jpg" in result.stderr and "Traceback" not in result.stderr
    assert not duplicates_folder(sample_dataset).exists() or not any(duplicates_folder(sample_dataset).iterdir())
    result = make("dedupe", data=tmp_path / "nowhere", check=False)
    assert result.returncode != 0 and "no dataset here" in result.stderr
    with sample_dataset.lock("annotate"):
        result = make("dedupe", data=sample_dataset.root, check=False)
    assert result.returncode != 0 and "annotate" in result.stderr


def test_demo_step(sample_dataset, tmp_path):
    import demo
    ctx = demo.DemoContext(work=tmp_path, data=sample_dataset, runs=tmp_path / "runs", quick=True)
    summary = demo.dedupe(ctx)
    assert summary == "3 groups, 6 files quarantined, 0 conflicts"
    assert ctx.notes["dedupe"]["quarantined"] == 6


def test_disagreement_compares_boxes_at_one_scale():
    from dataset.dedupe import Member, disagreement
    from dataset.voc import VocObject

    def member(name, size, boxes):
        return Member(name, "sha", 0, width=size[0], height=size[1], annotation=f"annotations/{name}.xml",
                      objects=[VocObject(c, *b) for c, b in boxes])

    big = member("big", (800, 600), [("mask", (100, 100, 300, 300)), ("no_mask", (400, 100, 600, 300))])
    half = member("half", (400, 300), [("no_mask", (201, 50, 299, 151)), ("mask", (50, 49, 151, 150))])
    assert disagreement(big, half) is None  # same boxes at half size, other order
    moved = member("moved", (400, 300), [("mask", (50, 50, 150, 150)), ("no_mask", (20, 160, 120, 260))])
    assert "no_mask box [400, 100, 600, 300] has no partner in moved" in disagreement(big, moved)
    relabelled = member("relabelled", (800, 600), [("mask", (100, 100, 300, 300)), ("mask", (400, 100, 600, 300))])
    assert "classes differ" in disagreement(big, relabelled)
