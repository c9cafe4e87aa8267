"""make card / takedown / restore TAKEDOWN=1 / package, run as a user would, on the real seed data
plus a scrape from the fake Bing on 127.0.0.1 (issue 18)."""
from __future__ import annotations

import csv
import hashlib
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest

from dataset import manifest, voc
from dataset.cli import call
from dataset.fixtures.fakebing import FakeBing
from dataset.fixtures.scenes import make_sample
from dataset.importer import import_folder
from dataset.layout import Dataset
from helpers import assert_consistent, digest, files_by_digest, maskset, make, write_points

# Each scraped result: (page URL, title); the first query is asked with a licence filter.
FIRST = [("https://site-a.example/gallery?id=1", "=HYPERLINK(\"http://evil.example\") masks"),
         ("https://site-a.example/gallery?id=2", 'Nurses, "masked" at work'),
         ("https://cdn.site-a.example/p/3", "street | crowd <b>masked</b>"),
         ("https://www.site-b.example/post/4", "market day"),
         ("https://www.site-b.example/post/5", "commuters")]
SECOND = [("https://site-c.example/a", "choir"), ("https://site-c.example/b", "- dash first"),
          ("https://site-d.example/c", "bus stop")]
QUERIES = {"people wearing face masks": ("license=share", FIRST), "masked crowd": ("", SECOND)}


@pytest.fixture(scope="module")
def published_master(seed_voc, tmp_path_factory):
    """seed-voc imported, two queries scraped, one scraped image annotated by hand (a VOC file),
    exported and split: ready to publish."""
    work = tmp_path_factory.mktemp("publish")
    dataset = Dataset.at(work / "data")
    import_folder(dataset, seed_voc, progress=False)
    served = {}
    for number, (query, (filters, results)) in enumerate(QUERIES.items()):
        images = make_sample(work / f"web{number}", count=len(results), duplicates=0, annotate=False,
                             prefix=f"web{number}", seed=40 + number)
        with FakeBing(page_size=2) as fake:  # several pages: the last one tells the end
            by_url = {}
            for rank, (path, (page, title)) in enumerate(zip(images, results)):
                murl = fake.add_route(f"/img/{rank}/{quote(path.name)}", body=path.read_bytes())
                fake.add_result(murl, title=title, purl=page)
                by_url[murl] = {"page": page, "title": title, "url": murl, "query": query,
                                "licence": filters.partition("=")[2]}
            result = call("scrape", dataset, query=query, limit=50, bing_url=fake.base, filters=filters,
                          no_progress=True)
        assert result.accepted == len(results), result.summary()
        for name, record in manifest.state(dataset).items():
            if record.get("murl") in by_url:
                served[name] = by_url[record["murl"]]
    # A curator annotates one site-a image: its VOC file must travel with it on takedown.
    site_a = sorted(n for n, s in served.items() if "site-a" in s["page"])
    labelled = site_a[0]
    ann = voc.VocAnnotation(labelled, 320, 240, objects=[voc.VocObject("mask", 40, 30, 120, 130)])
    voc.write(ann, dataset.annotation_for(labelled))
    for stage in ("export", "split"):
        call(stage, dataset)
    return dataset, served, labelled


@pytest.fixture
def published(published_master, tmp_path):
    master, served, labelled = published_master
    target = tmp_path / "data"
    shutil.copytree(master.root, target, copy_function=shutil.copy2)
    return Dataset.at(target), served, labelled


def _attribution(dataset: Dataset) -> list[dict]:
    with open(dataset.export / "ATTRIBUTION.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _csv_counts(path: Path) -> tuple[int, Counter]:
    rows = list(csv.reader(path.open(newline="")))
    return len({r[0] for r in rows}), Counter(r[5] for r in rows if r[5])


def _card_row(card: str, first_cell: str) -> list[str]:
    match = re.search(rf"^\| {re.escape(first_cell)} \|(.*)\|$", card, re.M)
    assert match, first_cell
    return [c.strip() for c in match[1].split("|")]


def _tree(root: Path, *folders: str) -> dict[str, str]:
    """relative path -> sha256 of every file under the folders (the lock file aside)."""
    return {str(p.relative_to(root)): digest(p) for folder in folders
            for p in sorted((root / folder).rglob("*")) if p.is_file() and p.name != ".lock"}


def _package(folder: Path) -> Path:
    archives = sorted(folder.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime_ns)
    assert archives, f"no package in {folder}"
    return archives[-1]


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name.partition("/")[2]: tar.extractfile(m).read() for m in tar if m.isfile()}


def _sums(files: dict[str, bytes]) -> dict[str, str]:
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in files["SHA256SUMS"].decode().splitlines()}


# -- 1. the card and the attribution list ----------------------------------------------------------
def test_card_on_seed_plus_scrape_lists_every_image_once_and_computes_its_numbers(published, seed_voc):
    dataset, served, labelled = published
    make("card", data=dataset.root)
    rows = _attribution(dataset)
    images = [p.name for p in dataset.image_files()]
    assert len(images) == 691 + len(FIRST) + len(SECOND)
    assert Counter(r["file"] for r in rows) == Counter(images)            # every image exactly once
    by_file = {r["file"]: r for r in rows}
    for name in images:
        assert by_file[name]["sha256"] == digest(dataset.images / name)
    for name, source in served.items():                                 # scraped: where from, terms
        row = by_file[name]
        assert (row["origin"], row["source_page"], row["image_url"]) == ("scrape", source["page"], source["url"])
        title = source["title"]
        assert row["title"] == ("'" + title if title[0] in "=-" else title)  # never a spreadsheet formula
        assert row["licence_filter"] == source["licence"] and row["import_source"] == ""
    seed_names = {p.name for p in (seed_voc / "images").iterdir()}
    imported = [r for r in rows if r["origin"] == "import"]
    assert len(imported) == 691 and {r["file"] for r in imported} == seed_names
    assert all(r["import_source"].startswith(str(seed_voc / "images" / r["file"])) for r in imported)

    # Every number on the card is the dataset's: compare with counts made here independently.
    card = (dataset.export / "DATASET.md").read_text()
    classes = dataset.classes()
    header = _card_row(card, "part")
    for part in ("train", "val"):
        n_images, boxes = _csv_counts(dataset.export / f"{part}.csv")
        assert _card_row(card, part) == [str(n_images), *[str(boxes[c]) for c in classes], "0"], part
    by_voc = Counter(o.name for x in dataset.annotation_files() for o in voc.parse(x).objects)
    assert header == ["images", *[f"{c} boxes" for c in classes], "images with no box"]
    assert _card_row(card, "all annotated") == [str(692), *[str(by_voc[c]) for c in classes], "0"]
    assert f"{len(images)} images, 692 of them annotated with {sum(by_voc.values())} boxes" in card
    assert f"Not annotated yet, so not in the CSV files: {len(served) - 1} images." in card
    per_query = Counter(s["query"] for s in served.values())
    for query, (filters, _) in QUERIES.items():
        assert _card_row(card, query)[:4] == ["requests", "en-US", filters or "none", str(per_query[query])]
    sites = Counter(re.sub(r"^https://([^/]+)/.*", r"\1", s["page"]) for s in served.values())
    for site, count in sites.items():
        assert _card_row(card, site) == [str(count)]
    assert f"pages of {len(sites)} sites and served from 1 host" in card
    licensed = sum(1 for s in served.values() if s["licence"])
    assert (f"{licensed} of the {len(served)} scraped images were found with a Bing licence filter "
            f"(license=share: {licensed}): that filter is Bing's claim") in card
    assert _card_row(card, "imported with its source's annotation") == ["691"]
    assert _card_row(card, "no record of how (a VOC file put into `annotations/` by hand)") == ["1"]
    assert "<b>" not in card and "\\<b\\>" not in card  # page titles are not on the card
    for section in ("Motivation", "Composition", "Collection", "Preprocessing and cleaning", "Labelling",
                    "Uses", "Known limits", "Distribution"):
        assert f"\n## {section}\n" in card
    # Nothing on it depends on when it was written.
    before = (dataset.export / "DATASET.md").read_bytes(), (dataset.export / "ATTRIBUTION.csv").read_bytes()
    make("card", data=dataset.root)
    assert before == ((dataset.export / "DATASET.md").read_bytes(), (dataset.export / "ATTRIBUTION.csv").read_bytes())


# -- 2. takedown, and restore -----------------------------------------------------------------------
def test_takedown_of_a_host_leaves_its_images_out_and_restore_brings_them_back(published):
    dataset, served, labelled = published
    data = dataset.root
    make("package", "QUIET=1", data=data)
    first = _package(dataset.packages)
    before = _tree(data, "images", "annotations")
    site_a = {n for n, s in served.items() if "site-a.example" in s["page"]}  # cdn.site-a too
    assert len(site_a) == 3 and labelled in site_a

    done = make("takedown", "HOST=site-a.example", "REASON=the site owner's email of 2024-05-01", data=data)
    assert "3 images moved" in done.stdout and "1 with their annotation" in done.stdout
    assert {p.name for p in dataset.image_files()} == {Path(k).name for k in before if k.startswith("images/")} - site_a
    assert not dataset.annotation_for(labelled).exists()
    taken = {f: r for f, r in manifest.state(dataset).items() if r.get("reason") == "takedown"}
    assert set(taken) == site_a
    for record in taken.values():
        assert record["takedown"] == {"request": {"host": "site-a.example"},
                                      "reason": "the site owner's email of 2024-05-01"}
        assert (data / record["moved_to"]).is_file()
    assert digest(data / taken[labelled]["annotation_moved_to"]) == before[f"annotations/{Path(labelled).stem}.xml"]

    # The stale export is refused until export and split run again; then all leave them out.
    stale = make("package", data=data, check=False)
    assert stale.returncode == 2 and f"lists images/{labelled}" in stale.stderr and "make export" in stale.stderr
    for stage in ("export", "split", "card"):
        make(stage, data=data)
    make("package", "QUIET=1", data=data)
    second = _package(dataset.packages)
    old, new = _members(first), _members(second)
    assert {p for p in _sums(old) if p.startswith("images/")} - {p for p in _sums(new)} == {f"images/{n}" for n in site_a}
    assert {p for p in _sums(new) if p.startswith("images/")} == {f"images/{p.name}" for p in dataset.image_files()}
    split_rows = lambda files: sorted((files["export/train.csv"] + files["export/val.csv"]).decode().splitlines())  # noqa: E731
    assert [r for r in split_rows(old) if labelled not in r] == split_rows(new) != split_rows(old)
    assert labelled not in new["export/annotations.csv"].decode()
    assert (dataset.export / "train.csv").read_bytes() == new["export/train.csv"]
    assert not site_a & {r["file"] for r in _attribution(dataset)}
    assert not any(n in new["ATTRIBUTION.csv"].decode() for n in site_a)
    card, old_card = new["DATASET.md"].decode(), old["DATASET.md"].decode()
    assert f"A face-mask detection dataset: {len(before) - 692 - 3} images, 691 of them" in card
    assert f"A face-mask detection dataset: {len(before) - 692} images, 692 of them" in old_card
    assert int(_card_row(card, "all annotated")[0]) == int(_card_row(old_card, "all annotated")[0]) - 1 == 691
    assert _card_row(card, "taken down on request (make takedown)") == ["3"]
    assert re.search(r"^\| \d{4}-\d\d-\d\d \| the site owner's email of 2024-05-01 \| 3 \|$", card, re.M)
    assert "site-a.example" not in card
    changelog = new["CHANGELOG.md"].decode()
    assert f"Against `{first.name[:-7]}`" in changelog and "## Removed (3)" in changelog
    assert _card_row(changelog, "removed") == ["3"] and _card_row(changelog, "added") == ["0"]
    assert _card_row(changelog, "relabelled (annotation changed)") == ["0"]
    assert (dataset.packages / (second.name[:-7] + ".CHANGELOG.md")).read_bytes() == new["CHANGELOG.md"]

    # The same request again has nothing left to do; restore brings every byte back.
    again = make("takedown", "HOST=site-a.example", "REASON=again", data=data)
    assert "nothing more to do" in again.stdout
    back = make("restore", "TAKEDOWN=1", data=data)
    assert "3 taken-down files back" in back.stdout
    assert _tree(data, "images", "annotations") == before
    for stage in ("export", "split"):
        make(stage, data=data)
    third = make("package", data=data)
    assert first.name in third.stdout and "exists already with this content" in third.stdout


def test_takedown_reaches_quarantined_duplicates_and_restore_keeps_the_kinds_apart(sample_dataset):
    dataset = sample_dataset
    originals = {p.name: digest(p) for p in dataset.image_files()}
    call("dedupe", dataset, quiet=True)
    duplicates = sorted(f for f, r in manifest.state(dataset).items() if r.get("event") == "quarantined")
    victim = duplicates[0]
    done = make("takedown", f"FILE={victim}", "REASON=the photographer asked", data=dataset.root)
    assert "1 of them quarantined duplicates" in done.stdout
    record = manifest.state(dataset)[victim]
    assert record["reason"] == "takedown" and record["moved_to"].startswith("quarantine/takedown/")
    assert not (dataset.quarantine / "duplicates" / victim).exists()

    back = make("restore", data=dataset.root)                      # duplicates only
    assert f"{len(duplicates) - 1} files back" in back.stdout and not (dataset.images / victim).exists()
    named = make("restore", f"FILES={victim}", data=dataset.root, check=False)
    assert named.returncode == 2 and "is a taken-down image: make restore TAKEDOWN=1" in named.stderr
    make("restore", "TAKEDOWN=1", f"FILES={victim}", data=dataset.root)
    assert {p.name: digest(p) for p in dataset.image_files()} == originals


# -- 3. reproducible packages ----------------------------------------------------------------------
def test_packages_are_byte_identical_and_a_relabel_changes_digest_and_changelog(published, tmp_path):
    dataset, served, labelled = published
    one, two = tmp_path / "one", tmp_path / "two"
    make("package", "QUIET=1", f"OUT={one}", data=dataset.root)
    make("package", "QUIET=1", f"OUT={two}", data=dataset.root)
    first = _package(one)
    assert first.read_bytes() == _package(two).read_bytes()                        # same bytes
    assert first.read_bytes()[4:8] == b"\0\0\0\0" and first.read_bytes()[3] & 0x08 == 0  # no time, no name
    with tarfile.open(first, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and names[0] == first.name[:-7]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(315532800, 0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644} and {m.mode for m in members if m.isdir()} == {0o755}
    files = _members(first)
    sums = _sums(files)
    assert set(sums) == set(files) - {"SHA256SUMS", "CHANGELOG.md"}
    assert all(hashlib.sha256(files[p]).hexdigest() == s for p, s in sums.items())  # sha256sum -c
    assert first.name.endswith(hashlib.sha256(files["SHA256SUMS"]).hexdigest()[:12] + ".tar.gz")
    assert {p for p in files if p.startswith("images/")} == {f"images/{p.name}" for p in dataset.image_files()}
    assert len([p for p in files if p.startswith("annotations/")]) == 692
    assert {"export/annotations.csv", "export/classes.csv", "export/train.csv", "export/val.csv",
            "export/split.json", "DATASET.md", "ATTRIBUTION.csv", "classes.txt"} <= set(files)

    # One annotation changes: refused until exported, then a new digest and a changelog naming it.
    changed = "5.jpg"
    xml = dataset.annotation_for(changed)
    boxes_before = Counter(o.name for o in voc.parse(xml).objects)
    other = next(c for c in dataset.classes() if c != voc.parse(xml).objects[0].name)

    def relabel(root):
        root.find("object/name").text = other
    xml.write_bytes(voc.edited(xml, relabel))
    refused = make("package", f"OUT={one}", data=dataset.root, check=False)
    assert refused.returncode == 2 and f"its rows for {changed} differ from annotations/5.xml" in refused.stderr
    assert len(list(one.glob("*.tar.gz"))) == 1
    for stage in ("export", "split"):
        make(stage, data=dataset.root)
    make("package", "QUIET=1", f"OUT={one}", data=dataset.root)
    second = _package(one)
    assert second.name != first.name and second.name[:-19] == first.name[:-19]  # same version, new digest
    changelog = _members(second)["CHANGELOG.md"].decode()
    assert changelog == (one / (second.name[:-7] + ".CHANGELOG.md")).read_text()
    assert _card_row(changelog, "relabelled (annotation changed)") == ["1"]
    assert _card_row(changelog, "added") == ["0"] and _card_row(changelog, "removed") == ["0"]
    boxes_after = Counter(o.name for o in voc.parse(xml).objects)
    classes = dataset.classes()
    shown = lambda c: ", ".join(f"{k} {c.get(k, 0)}" for k in classes)  # noqa: E731
    assert f"- {changed}: {shown(boxes_before)} -> {shown(boxes_after)}" in changelog

    # VERSION= names it; a package written again into the same folder is the same file.
    make("package", "QUIET=1", "VERSION=1.0.0", f"OUT={two}", data=dataset.root)
    assert (two / f"maskset-data-1.0.0-{second.name[-19:]}").exists()
    again = make("package", f"OUT={one}", data=dataset.root)
    assert "exists already with this content" in again.stdout and len(list(one.glob("*.tar.gz"))) == 2


# -- 4. bad input ----------------------------------------------------------------------------------
def test_a_takedown_matching_nothing_says_so_and_changes_nothing(sample_dataset):
    data = sample_dataset.root
    (data.parent / "outside.jpg").write_bytes(b"not the dataset's")
    manifest.append(sample_dataset, {"file": "../../evil.jpg", "event": "quarantined",  # a hand-made record
                                     "reason": "near-duplicate", "moved_to": "../outside.jpg"})
    before = _tree(data, ".")
    for args, message in (
            (["HOST=nowhere.example", "REASON=x"], "HOST=nowhere.example: matches no image"),
            (["QUERY=cats", "REASON=x"], "QUERY=cats: matches no image"),
            (["URL=https://example.org/x.jpg", "REASON=x"], "URL=https://example.org/x.jpg: matches no image"),
            (["FILE=nothere.jpg", "REASON=x"], "nothere.jpg: not in images/ nor quarantined"),
            (["FILE=../../evil.jpg", "REASON=x"], "../../evil.jpg: not in images/ nor quarantined"),
            (["REASON=x"], "exactly one of URL=, HOST=, FILE= or QUERY= (none given)"),
            (["HOST=a.example", "FILE=scene_0001.jpg", "REASON=x"], "(HOST= and FILE= given)"),
            (["FILE=scene_0001.jpg"], "say why with REASON=")):
        result = make("takedown", *args, data=data, check=False)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if "matches no image" in message:
            assert "nothing was changed" in result.stderr
        assert _tree(data, ".") == before, args
    assert (data.parent / "outside.jpg").read_bytes() == b"not the dataset's"


def test_package_is_refused_while_validate_finds_errors(sample_dataset):
    data = sample_dataset.root
    for stage in ("export", "split"):
        make(stage, data=data)
    xml = sample_dataset.annotation_for("scene_0003.jpg")

    def past_the_border(root):
        root.find("object/bndbox/xmax").text = str(int(root.findtext("size/width")) + 50)
    xml.write_bytes(voc.edited(xml, past_the_border))
    refused = make("package", data=data, check=False)
    assert refused.returncode == 2 and "validate finds 1 errors; package refuses" in refused.stderr
    assert "annotations/scene_0003.xml: <object> #1 <bndbox><xmax>" in refused.stderr
    assert not sample_dataset.packages.exists()
    bad = make("package", "VERSION=../x", data=data, check=False)
    assert bad.returncode == 2 and "VERSION='../x': use letters, digits" in bad.stderr


def test_demo_step(sample_dataset, tmp_path):
    import demo
    for stage in ("export", "split"):
        call(stage, sample_dataset)
    ctx = demo.DemoContext(work=tmp_path, data=sample_dataset, runs=tmp_path / "runs", quick=True)
    line = demo.publish(ctx)
    archive = _package(sample_dataset.packages)
    n = len(sample_dataset.image_files())
    assert line.startswith(f"DATASET.md and ATTRIBUTION.csv ({n} images: 0 scraped, {n} imported)")
    assert line.endswith(f"{archive.name}, {n} images, {n} annotations")
    assert len(_sums(_members(archive))) == 3 + 2 * n + 5  # card, credits, classes; images, VOC; export


# -- 5. a killed takedown ---------------------------------------------------------------------------
@pytest.mark.slow
def test_takedown_killed_at_every_write_point_then_rerun_and_restore(tmp_path):
    src = tmp_path / "src"
    make_sample(src, count=4, size=(160, 120), seed=11, duplicates=0)
    (src / "scene_0002.xml").unlink()  # one image without its VOC file
    base = tmp_path / "base"
    assert maskset("import", "--data", str(base), "--src", str(src)).returncode == 0
    originals = _tree(base, "images", "annotations")
    expected = files_by_digest(Dataset.at(base))
    request = ("takedown", "--file", "scene_0001.jpg", "scene_0002.jpg", "--reason", "asked", "--quiet")
    count = tmp_path / "count"
    shutil.copytree(base, count)
    points = write_points(tmp_path, *request, "--data", str(count))
    assert any(p.split()[1] == "linked" for p in points) and any("journal removed" in p for p in points)
    for k in range(1, len(points) + 1):
        data = tmp_path / f"killed-{k}"
        shutil.copytree(base, data)
        killed = maskset(*request, "--data", str(data), MASKSET_KILL_AT=k)
        assert killed.returncode == -9, (k, points[k - 1], killed.stderr)
        again = maskset(*request, "--data", str(data))
        assert again.returncode == 0, (k, points[k - 1], again.stderr)
        dataset = Dataset.at(data)
        assert_consistent(dataset, expected)
        assert sorted(p.name for p in dataset.image_files()) == ["scene_0000.jpg", "scene_0003.jpg"], k
        back = maskset("restore", "--takedown", "--data", str(data), "--quiet")
        assert back.returncode == 0, (k, back.stdout, back.stderr)
        assert _tree(data, "images", "annotations") == originals, (k, points[k - 1])
        shutil.rmtree(data)
