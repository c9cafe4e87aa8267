"""The Selenium engine in real headless Chromium against the fake Bing: scrolling, "see more",
the same parser and downloader as the requests engine, a captcha stop, and (issue 15) each way
the real Bing refuses, in the search page itself and in the answers its infinite scroll fetches,
through the real CLI: exit 3, the refusal named, what came kept, and the same command resumes."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from dataset import manifest
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from scraping.bing import DEFAULT_USER_AGENT, BingBlocked
from dataset.fixtures.fakebing import CAPTCHA_PATH, FakeBing
from scraping.pipeline import ScrapeOptions, scrape
from scraping.stop import Stop
from scraping.store import inconsistencies
from helpers import MASKSET, REPO

BROWSER = ["--engine", "selenium", "--no-progress", "--page-waits", "0.05,0.05", "--timeout", "2",
           "--total-timeout", "3", "--backoff", "0.05"]


def cli(data: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([MASKSET, "scrape", "--data", str(data), *args, *BROWSER],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def report(data: Path) -> dict:
    return json.loads((data / "export" / "scrape.json").read_text())

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
        with pytest.raises(BingBlocked, match="captcha") as caught:
            scrape(dataset, ScrapeOptions(query="masks", limit=10, engine="selenium", bing_url=fake.base),
                   progress=False)
    assert dataset.image_files() == []
    assert caught.value.stop == Stop.refused("captcha form on the page")
    assert caught.value.result.stopped == "refused (captcha form on the page)"


def test_selenium_loads_more_when_the_first_page_is_shorter_than_the_window(tmp_path):
    dataset = Dataset.at(tmp_path / "data")
    with FakeBing(page_size=3, see_more_every=5) as fake:  # 3 results = 900 px < a 1600 px window
        photo_site(fake, 7)
        summary = scrape(dataset, ScrapeOptions(query="masks", limit=100, engine="selenium", bing_url=fake.base),
                         progress=False)
    assert summary.results == 8 and summary.accepted == 7 and summary.duplicates == 1


# block-where -> (page size, results, why): "scrolled" refuses the answers the page fetches on
# scrolling, "search" the search page itself (seen through the browser's URL, its HTTP status, its content)
REFUSALS = {
    "empty-scrolled": (5, 12, "an empty answer: no results and nothing else; 3 tries over 0.1 s"),
    "shell-scrolled": (5, 12, 'a page with no results and no "no results" message; 3 tries over 0.1 s'),
    "captcha-redirect-scrolled": (5, 12, "redirected to Bing's captcha at /turing/captcha/challenge"),
    "403-scrolled": (5, 12, "HTTP 403 Forbidden"),
    "replay-scrolled": (35, 40, "first=36 answered with the first page again (35 results): probable throttling, "
                         "unless these 35 are all this query has"),
    "empty-search": (5, 12, "an empty answer: no results and nothing else; 3 tries over 0.1 s"),
    "captcha-redirect-search": (5, 12, "redirected to Bing's captcha at /turing/captcha/challenge"),
    "403-search": (5, 12, "HTTP 403 Forbidden"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_selenium_a_refusal_stops_with_exit_3_keeps_what_came_and_a_rerun_resumes(tmp_path, case):
    block, where = case.rsplit("-", 1)
    page_size, count, why = REFUSALS[case]
    kept = page_size if where == "scrolled" else 0
    data = tmp_path / "data"
    dataset = Dataset.at(data)
    with FakeBing(page_size=page_size, block=block, block_from_page=2 if where == "scrolled" else 1) as fake:
        photo_site(fake, count - 1)  # + the mirror copy: `count` results
        run = cli(data, "--query", "masks", "--limit", "100", "--bing-url", fake.base)
        assert run.returncode == 3, run.stdout + run.stderr
        assert "ended" not in run.stdout + run.stderr
        assert f"stopped: refused ({why})" in run.stdout and f"{kept} images saved" in run.stdout
        assert "Bing refused the result page" in run.stderr and "throttling" in run.stderr
        assert "ENGINE=requests" in run.stderr and "Images saved so far are kept" in run.stderr
        assert report(data)["stop"] == {"kind": "refused", "why": why, "text": f"refused ({why})"}
        assert len(dataset.image_files()) == kept and inconsistencies(dataset) == []
        assert fake.hits[CAPTCHA_PATH] == (1 if block == "captcha-redirect" else 0)
        if case == "empty-search":
            assert len(fake.queries) == 3  # the search page opened again after each wait, then given up
        if case not in ("empty-scrolled", "replay-scrolled"):
            return  # resuming is the store's (test_scrape_refusals covers it for every refusal)
        fake.block = ""
        again = cli(data, "--query", "masks", "--limit", "100", "--bing-url", fake.base)
        assert again.returncode == 0, again.stderr
        assert f"{count - 1 - kept} images saved, 1 duplicates" in again.stdout
        assert "stopped: results ended (Bing served its last page again at" in again.stdout
        assert len(dataset.image_files()) == count - 1 and inconsistencies(dataset) == []


def test_selenium_a_genuine_no_results_page_is_the_end(tmp_path):
    data = tmp_path / "data"
    with FakeBing() as fake:
        run = cli(data, "--query", "zzqx masks", "--limit", "10", "--bing-url", fake.base)
    assert run.returncode == 0, run.stderr
    assert "stopped: results ended (Bing says: There are no results for zzqx masks)" in run.stdout
    assert report(data)["stop"]["kind"] == "ended" and Dataset.at(data).image_files() == []


def test_selenium_skips_video_tiles_respects_optout_and_asks_in_the_market(tmp_path):
    data = tmp_path / "data"
    with FakeBing(page_size=4, see_more_every=9) as fake:
        photo_site(fake, 5)
        poster = fake.routes["/img/1.jpg"].body
        fake.add_result(fake.add_route("/v/watch", body=poster) + "?v=abc", video=True)
        fake.add_result(fake.add_route("/o/noai.jpg", body=fake.routes["/img/2.jpg"].body[:-2] + b"\xff\xd9",
                                       headers={"X-Robots-Tag": "noai"}))
        run = cli(data, "--query", "masks", "--limit", "50", "--bing-url", fake.base, "--market", "fr-FR",
                  "--filters", "adult=off")
        assert run.returncode == 0, run.stderr
        assert "8 results, 5 images saved, 1 duplicates, 1 rejected" in run.stdout
        assert "1 videos skipped" in run.stdout and "rejected opted-out: 1" in run.stdout
        assert fake.hits["/v/watch"] == 0
        search, scrolled = fake.queries[0], fake.queries[1]
        assert search["path"] == "/images/search" and scrolled["path"] == "/images/async"
        for query in (search, scrolled):
            assert (query["cc"], query["setlang"], query["adlt"]) == ("FR", "fr-FR", "off")
        assert scrolled["mmasync"] == "1"
        for headers in fake.page_headers[:2]:
            assert headers["User-Agent"] == DEFAULT_USER_AGENT
            assert headers["Accept-Language"].startswith("fr-FR")
            assert "SRCHHPGUSR=SRCHLANG=fr&ADLT=OFF" in headers["Cookie"] and "_EDGE_S=mkt=fr-fr&ui=fr" in headers["Cookie"]
    assert report(data)["videos"] == 1 and report(data)["rejected"] == {"opted-out": 1}
