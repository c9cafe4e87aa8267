"""The Selenium engine in real headless Chromium against the fake Bing: scrolling, "see more",
the same parser and downloader as the requests engine, and a captcha stop."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from dataset import manifest
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from scraping.bing import BingBlocked
from scraping.fakebing import FakeBing
from scraping.pipeline import ScrapeOptions, scrape
from scraping.store import inconsistencies

pytestmark = pytest.mark.browser


def photo_site(fake: FakeBing, count: int) -> None:
    for index in range(count):
        img = Image.new("RGB", (180, 140), (index * 8 % 256, 255 - index * 8 % 256, (index * 37) % 256))
        path = f"/img/{index}.jpg?w=180&h=140" if index % 3 else f"/img/{index}.webp.php?id={index}&s=1"
        fake.add_route(path.split("?")[0], body=jpeg_bytes(img))
        fake.add_result(fake.base + path, title=f"photo {index} & more")
    # the same bytes under another URL: one copy stored
    fake.add_result(fake.add_route("/mirror/copy.jpg", body=fake.routes["/img/1.jpg"].body))


def test_selenium_scrolls_clicks_see_more_and_gets_every_result(tmp_path, artifacts):
    dataset = Dataset.at(tmp_path / "data")
    with FakeBing(page_size=6, see_more_every=2) as fake:
        photo_site(fake, 30)
        summary = scrape(dataset, ScrapeOptions(query="masks & faces", limit=100, engine="selenium",
                                                bing_url=fake.base), progress=False)
        # 31 results over 6 pages: pages 4 and 6 appear only after clicking "see more"
        assert summary.results == 31 and summary.accepted == 30 and summary.duplicates == 1
        async_firsts = [int(q["first"]) for q in fake.queries if q["path"] == "/images/async"]
        assert async_firsts[:5] == [7, 13, 19, 25, 31]
        assert fake.queries[0]["path"] == "/images/search" and fake.queries[0]["q"] == "masks & faces"
    records = [r for r in manifest.read_records(dataset) if r["event"] == "added"]
    assert {r["engine"] for r in records} == {"selenium"}
    ranks = {r["rank"] for r in records}
    assert len(ranks) == 30 and ranks | {2, 31} == set(range(1, 32))  # rank 31 repeats rank 2's bytes
    assert any("&s=1" in r["murl"] for r in records)
    assert inconsistencies(dataset) == []
    (artifacts / "scrape-selenium-summary.json").write_text(json.dumps(
        {"results": summary.results, "accepted": summary.accepted, "async": async_firsts}, indent=1))


def test_selenium_stops_on_a_captcha_page(tmp_path):
    dataset = Dataset.at(tmp_path / "data")
    with FakeBing(block="captcha") as fake:
        photo_site(fake, 3)
        with pytest.raises(BingBlocked, match="captcha"):
            scrape(dataset, ScrapeOptions(query="masks", limit=10, engine="selenium", bing_url=fake.base),
                   progress=False)
    assert dataset.image_files() == []


def test_selenium_loads_more_when_the_first_page_is_shorter_than_the_window(tmp_path):
    dataset = Dataset.at(tmp_path / "data")
    with FakeBing(page_size=3, see_more_every=5) as fake:  # 3 results = 900 px < a 1600 px window
        photo_site(fake, 7)
        summary = scrape(dataset, ScrapeOptions(query="masks", limit=100, engine="selenium", bing_url=fake.base),
                         progress=False)
    assert summary.results == 8 and summary.accepted == 7 and summary.duplicates == 1
