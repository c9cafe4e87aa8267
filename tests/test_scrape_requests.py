"""The requests engine end to end: a fake Bing on 127.0.0.1 with every trap, through the real CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from dataset import manifest
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from bing_traps import add_tricky_results
from dataset.fixtures.fakebing import FakeBing
from scraping.store import NAME, inconsistencies
from helpers import MASKSET, REPO, make

FAST = ["--timeout", "2", "--total-timeout", "3", "--backoff", "0.05", "--no-progress"]


def cli(data: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MASKSET, "scrape", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def image_hits(fake: FakeBing) -> dict:
    return {path: n for path, n in fake.hits.items() if not path.startswith("/images/")}


def test_every_trap_in_bings_results_is_handled_and_a_rerun_downloads_nothing(tmp_path, artifacts):
    data = tmp_path / "data"
    with FakeBing(page_size=8) as fake:
        expected = add_tricky_results(fake, slow=5.0)
        run = cli(data, "--query", "face masks & more", "--limit", "100", "--bing-url", fake.base, *FAST)
        assert run.returncode == 0, run.stderr
        report = json.loads((data / "export" / "scrape.json").read_text())
        assert report["accepted"] == expected["accepted"]
        assert report["duplicates"] == expected["duplicates"]
        assert report["converted"] == expected["converted"]
        assert report["rejected"] == expected["rejected"]
        assert report["results"] == len(fake.results)
        assert f"{expected['accepted']} images saved" in run.stdout

        # paging: several pages, then the re-served last page ends it (never beyond 1 extra)
        assert len(fake.results) == 30
        assert [int(q["first"]) for q in fake.queries] == [1, 9, 17, 25, 31]

        dataset = Dataset.at(data)
        assert inconsistencies(dataset) == []
        images = dataset.image_files()
        assert len(images) == expected["accepted"]
        assert all(NAME.match(p.name) for p in images)           # names from content, never URLs
        assert sorted(p.name for p in data.rglob("*escape*")) == []
        assert not (tmp_path / "escape.jpg").exists()
        for path in images:                                      # all open as plain images
            with Image.open(path) as image:
                assert image.format in ("JPEG", "PNG") and image.mode in ("RGB", "L")
        records = [r for r in manifest.read_records(dataset) if r["event"] == "added"]
        murls = {r["murl"] for r in records}
        assert fake.base + "/img/pic.php?id=3&size=l" in murls       # & kept as Bing wrote it
        # the same bytes under two URLs: whichever landed first is kept, the other is a duplicate
        twins = {fake.base + "/img/a.jpg?w=320&h=240&amp=1", fake.base + "/mirror/same-photo-elsewhere.png"}
        assert len(twins & murls) == 1
        assert fake.base + "/img/image.jfif?x=%20y&z" in murls
        assert fake.base + "/img/redirect.jpg" in murls
        for record in records:
            assert record["query"] == "face masks & more" and record["engine"] == "requests"
            assert record["origin"] == "scrape" and record["rank"] >= 1 and record["purl"]
            assert record["sha256"] == manifest.sha256_file(dataset.images / record["file"])
        log = [json.loads(line) for line in (data / "export" / "scrape-log.jsonl").read_text().splitlines()]
        assert {e["url"] for e in log if e["reason"] == "bad-scheme"} == {
            "file:///etc/passwd", fake.base + "/img/to-file.jpg"}
        assert {e["reason"] for e in log} == {*expected["rejected"], "duplicate"}
        page = (data / "export" / "scrape.html").read_text()
        assert page.count("<figure>") == expected["accepted"] and "decompression-bomb" in page
        assert "converted: " in page and "file:///etc/passwd" in page
        shutil.copytree(data, artifacts / "scrape-traps", dirs_exist_ok=True)  # open export/scrape.html

        # the same command again: nothing new, no image downloaded again but the two timeouts
        before = image_hits(fake)
        again = cli(data, "--query", "face masks & more", "--limit", "100", "--bing-url", fake.base, *FAST)
        assert again.returncode == 0, again.stderr
        changed = {p for p, n in image_hits(fake).items() if n != before.get(p)}
        assert changed == {"/img/slow.jpg", "/img/trickle.jpg"}
        assert len(dataset.image_files()) == expected["accepted"]
        assert "0 images saved" in again.stdout
        assert inconsistencies(dataset) == []


def test_make_scrape_limit_filters_min_side_and_resume_across_runs(tmp_path):
    data = tmp_path / "data"
    with FakeBing(page_size=4) as fake:
        for index in range(12):
            size = (320, 240) if index % 2 == 0 else (200, 150)
            colour = (index * 20 % 256, 90, 200 - index * 10)
            path = fake.add_route(f"/photo/{index}.jpg", body=jpeg_bytes(Image.new("RGB", size, colour)))
            fake.add_result(path)
        common = dict(QUERY="masked people", BING_URL=fake.base, ENGINE="requests",
                      FILTERS="type=photo,size=large,adult=strict", MIN_SIDE="200")
        result = make("scrape", "LIMIT=3", *(f"{k}={v}" for k, v in common.items()), data=data)
        assert "3 images saved" in result.stdout
        dataset = Dataset.at(data)
        records = [r for r in manifest.read_records(dataset) if r["event"] == "added"]
        assert len(records) == 3 and len(dataset.image_files()) == 3
        assert all(r["width"] == 320 for r in records)               # MIN_SIDE=200 rejected 150
        assert records[0]["filters"] == {"type": "photo", "size": "large", "adult": "strict"}
        assert fake.queries[0]["qft"] == "+filterui:imagesize-large+filterui:photo-photo"
        assert fake.queries[0]["adlt"] == "strict"
        # LIMIT counts this query's images across runs: 6 means 3 more; neither a saved image
        # nor a rejected one is fetched again
        done_before = {r["murl"].replace(fake.base, "") for r in records}
        done_before |= {e["url"].replace(fake.base, "") for e in
                        map(json.loads, (data / "export" / "scrape-log.jsonl").read_text().splitlines())}
        assert len(done_before) >= 5
        result = make("scrape", "LIMIT=6", *(f"{k}={v}" for k, v in common.items()), data=data)
        assert "3 images saved" in result.stdout and "3 before this run" in result.stdout
        assert len(dataset.image_files()) == 6
        assert {p: image_hits(fake)[p] for p in done_before} == {p: 1 for p in done_before}
        assert inconsistencies(dataset) == []
        bad = make("scrape", "LIMIT=6", "FILTERS=size=huge", f"BING_URL={fake.base}",
                   "QUERY=x", data=data, check=False)
        assert bad.returncode != 0 and "FILTERS: size='huge' is not one of" in bad.stderr


@pytest.mark.parametrize("block", ["429", "captcha"])
def test_a_429_or_captcha_stops_with_an_error_and_keeps_what_was_saved(tmp_path, block):
    data = tmp_path / "data"
    with FakeBing(page_size=5, block=block, block_from_page=2) as fake:
        for index in range(12):
            img = Image.new("RGB", (160, 120), (index * 20, 255 - index * 20, 90))
            fake.add_result(fake.add_route(f"/i/{index}.jpg", body=jpeg_bytes(img)))
        run = cli(data, "--query", "masks", "--limit", "50", "--bing-url", fake.base, *FAST)
        assert run.returncode == 3, run.stdout + run.stderr
        assert "error:" in run.stderr and "Bing refused the result page" in run.stderr
        assert ("429" if block == "429" else "captcha") in run.stderr
        assert "Images saved so far are kept" in run.stderr
        stop = json.loads((data / "export" / "scrape.json").read_text())["stop"]
        assert stop["kind"] == "refused" and run.stdout.count(f"stopped: {stop['text']}") == 1
        dataset = Dataset.at(data)
        assert len(dataset.image_files()) == 5 and inconsistencies(dataset) == []
        # once Bing lets us in again, the same command goes on where it stopped
        fake.block = ""
        run = cli(data, "--query", "masks", "--limit", "50", "--bing-url", fake.base, *FAST)
        assert run.returncode == 0, run.stderr
        assert len(dataset.image_files()) == 12 and "7 images saved" in run.stdout
        assert "stopped: results ended (Bing served its last page again at first=13)" in run.stdout
        assert all(n == 1 for n in image_hits(fake).values())


def test_demo_step_scrapes_the_fake_bing_into_the_demo_dataset(tmp_path):
    import demo
    ctx = demo.DemoContext(work=tmp_path, data=Dataset.at(tmp_path / "data"), runs=tmp_path / "runs", quick=True)
    line = demo.scrape(ctx)
    # 4 scenes + 1 exact + 1 near copy (make_sample) + 1 more exact copy on a "mirror"
    assert line.startswith("7 results, 5 images saved, 2 duplicates")
    assert len(ctx.data.image_files()) == 5 and inconsistencies(ctx.data) == []
    assert ctx.notes["scrape"]["accepted"] == 5
