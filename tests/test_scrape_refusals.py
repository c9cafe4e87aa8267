"""Issue 15 with the requests engine, through the real CLI and make: the fake Bing refuses as the
real one does (an empty 200, a bare shell page, a 302 to its captcha, the first page served again,
403), and none of it may read as "the results ended". Also video tiles, X-Robots-Tag opt-out,
how pages are asked for, and the genuine "no results" page (exit 0)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from dataset import manifest
from dataset.layout import Dataset
from dataset.fixtures.scenes import jpeg_bytes
from scraping import bing
from dataset.fixtures.fakebing import CAPTCHA_PATH, FakeBing
from scraping.store import inconsistencies
from helpers import MASKSET, REPO, make

FAST = ["--timeout", "2", "--total-timeout", "3", "--backoff", "0.05", "--no-progress", "--page-waits", "0.05,0.05"]


def cli(data: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([MASKSET, "scrape", "--data", str(data), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def photos(fake: FakeBing, count: int, prefix: str = "/i") -> None:
    for index in range(count):
        img = Image.new("RGB", (120, 90), (index * 6 % 256, 255 - index * 6 % 256, (index * 37) % 256))
        fake.add_result(fake.add_route(f"{prefix}/{index}.jpg", body=jpeg_bytes(img)))


def image_hits(fake: FakeBing) -> dict:
    return {path: n for path, n in fake.hits.items() if path.startswith("/i/")}


def report(data: Path) -> dict:
    return json.loads((data / "export" / "scrape.json").read_text())


def added(dataset: Dataset) -> list[dict]:
    return [r for r in manifest.read_records(dataset) if r["event"] == "added"]


# block -> (page size, results, why in the summary, result pages Bing is asked for before it stops)
REFUSALS = {
    "empty": (5, 12, "an empty answer: no results and nothing else; 3 tries over 0.1 s", 4),
    "shell": (5, 12, 'a page with no results and no "no results" message; 3 tries over 0.1 s', 4),
    "captcha-redirect": (5, 12, "redirected to Bing's captcha at /turing/captcha/challenge", 2),
    "403": (5, 12, "HTTP 403 Forbidden", 2),
    "429": (5, 12, "HTTP 429 Too Many Requests", 2),
    "replay": (35, 40, "first=36 answered with the first page again (35 results): probable throttling, unless "
                       "these 35 are all this query has", 2),
}


@pytest.mark.parametrize("block", list(REFUSALS))
def test_a_refusal_stops_with_exit_3_keeps_what_came_and_a_rerun_resumes(tmp_path, block):
    page_size, count, why, asked = REFUSALS[block]
    data = tmp_path / "data"
    dataset = Dataset.at(data)
    with FakeBing(page_size=page_size, block=block, block_from_page=2) as fake:
        photos(fake, count)
        run = cli(data, "--query", "masks", "--limit", "100", "--bing-url", fake.base, *FAST)
        assert run.returncode == 3, run.stdout + run.stderr
        out = run.stdout + run.stderr
        assert "ended" not in out and "results ended" not in out
        assert f"stopped: refused ({why})" in run.stdout
        assert f"{page_size} images saved" in run.stdout
        assert "error:" in run.stderr and "Bing refused the result page" in run.stderr
        for advice in ("throttling", "Images saved so far are kept", "Wait", "lower the rate", "ENGINE=selenium",
                       "run the same command again"):
            assert advice in run.stderr, advice
        stop = report(data)["stop"]
        assert stop == {"kind": "refused", "why": why, "text": f"refused ({why})"}
        assert report(data)["stopped"] == f"refused ({why})"
        assert report(data)["accepted"] == page_size
        # the first page's images are saved and recorded; retries were bounded (empty pages only)
        assert len(dataset.image_files()) == page_size == len(added(dataset)) and inconsistencies(dataset) == []
        assert len(fake.queries) == asked
        assert fake.hits[CAPTCHA_PATH] == (1 if block == "captcha-redirect" else 0)

        # once Bing answers again, the same command goes on where it stopped
        fake.block = ""
        again = cli(data, "--query", "masks", "--limit", "100", "--bing-url", fake.base, *FAST)
        assert again.returncode == 0, again.stderr
        assert f"{count - page_size} images saved" in again.stdout and f"({page_size} before this run)" in again.stdout
        assert "stopped: results ended (Bing served its last page again at" in again.stdout
        assert report(data)["stop"]["kind"] == "ended"
        assert len(dataset.image_files()) == count == len(added(dataset)) and inconsistencies(dataset) == []
        assert set(image_hits(fake).values()) == {1}  # nothing downloaded twice


def test_an_empty_page_that_passes_after_a_retry_loses_nothing(tmp_path):
    data = tmp_path / "data"
    with FakeBing(page_size=5, block="empty", block_from_page=2, block_count=2) as fake:
        photos(fake, 12)
        run = cli(data, "--query", "masks", "--limit", "100", "--bing-url", fake.base, *FAST)
        assert run.returncode == 0, run.stderr
        assert "12 images saved" in run.stdout and "stopped: results ended" in run.stdout
        assert [q["first"] for q in fake.queries] == ["1", "6", "6", "6", "11", "13"]


def test_a_genuine_no_results_page_is_the_end_exit_0(tmp_path):
    data = tmp_path / "data"
    with FakeBing() as fake:  # no results at all: Bing's "There are no results for ..."
        run = make("scrape", "QUERY=zzqx masks", "LIMIT=10", f"BING_URL={fake.base}", data=data)
        assert "0 results, 0 images saved" in run.stdout
        assert "stopped: results ended (Bing says: There are no results for zzqx masks)" in run.stdout
        assert len(fake.queries) == 1  # asked once: the end is not retried
    assert report(data)["stop"] == {"kind": "ended", "why": "Bing says: There are no results for zzqx masks",
                                    "text": "results ended (Bing says: There are no results for zzqx masks)"}
    assert Dataset.at(data).image_files() == []


def test_the_limit_reached_is_said_as_such(tmp_path):
    data = tmp_path / "data"
    with FakeBing(page_size=4) as fake:
        photos(fake, 10)
        run = cli(data, "--query", "masks", "--limit", "3", "--bing-url", fake.base, *FAST)
        assert run.returncode == 0, run.stderr
        assert "stopped: limit reached (LIMIT 3 images from this query)" in run.stdout
        assert report(data)["stop"]["kind"] == "limit"
        again = cli(data, "--query", "masks", "--limit", "3", "--bing-url", fake.base, *FAST)
        assert "stopped: limit reached (LIMIT 3 already reached for this query; raise LIMIT for more)" in again.stdout


def test_video_tiles_are_skipped_and_opted_out_images_are_not_kept_unless_optout_ignore(tmp_path):
    data = tmp_path / "data"
    dataset = Dataset.at(data)
    poster = jpeg_bytes(Image.new("RGB", (160, 120), (10, 20, 30)))
    with FakeBing(page_size=4) as fake:
        photos(fake, 3)
        # video tiles whose URLs would even serve a JPEG: they must not be fetched at all
        fake.add_result(fake.add_route("/v/watch", body=poster) + "?v=abc", video=True, title="a video")
        fake.add_result(fake.add_route("/v/clip.mp4", body=poster), title="a video file")
        optout = {"/o/noai.jpg": "noai", "/o/noimageai.jpg": "noimageai", "/o/noindex.jpg": "noindex",
                  "/o/ours.jpg": "maskset: noimageai", "/o/theirs.jpg": "otherbot: noai"}
        for index, (path, tag) in enumerate(optout.items()):
            img = Image.new("RGB", (120, 90), (200, index * 40, 90))
            fake.add_result(fake.add_route(path, body=jpeg_bytes(img), headers={"X-Robots-Tag": tag}))
        common = ("scrape", "QUERY=masks", "LIMIT=50", f"BING_URL={fake.base}")
        run = make(*common, data=data)
        assert "10 results, 4 images saved" in run.stdout and "2 videos skipped" in run.stdout
        assert "rejected opted-out: 4" in run.stdout
        assert fake.hits["/v/watch"] == 0 and fake.hits["/v/clip.mp4"] == 0
        log = [json.loads(line) for line in (data / "export" / "scrape-log.jsonl").read_text().splitlines()]
        assert sorted(e["reason"] for e in log) == ["opted-out"] * 4 + ["video"] * 2
        assert {e["url"].replace(fake.base, "") for e in log if e["reason"] == "opted-out"} == set(optout) - {"/o/theirs.jpg"}
        assert report(data)["rejected"] == {"opted-out": 4} and report(data)["videos"] == 2
        records = added(dataset)
        assert len(records) == 4 and not any("optout" in r or "x_robots_tag" in r for r in records)

        # OPTOUT=ignore takes them, and the manifest says so; videos are still not fetched
        run = make(*common, "OPTOUT=ignore", data=data)
        assert "4 images saved" in run.stdout and "OPTOUT=ignore" in run.stdout
        new = added(dataset)[4:]
        assert {r["murl"].replace(fake.base, ""): r.get("x_robots_tag") for r in new} == {
            "/o/noai.jpg": "noai", "/o/noimageai.jpg": "noimageai", "/o/noindex.jpg": "noindex",
            "/o/ours.jpg": "noimageai"}
        assert {r["optout"] for r in new} == {"ignore"}
        assert report(data)["optout"] == "ignore"
        assert fake.hits["/v/watch"] == 0 and fake.hits["/v/clip.mp4"] == 0
        assert inconsistencies(dataset) == []


def test_pages_are_asked_for_with_market_safesearch_cookie_and_a_whole_user_agent(tmp_path):
    data = tmp_path / "data"
    with FakeBing(page_size=2) as fake:
        photos(fake, 3)
        make("scrape", "QUERY=masks", "LIMIT=5", f"BING_URL={fake.base}", "FILTERS=adult=strict", data=data)
        query, headers = fake.queries[0], fake.page_headers[0]
        assert (query["mmasync"], query["cc"], query["setlang"], query["adlt"]) == ("1", "US", "en-US", "strict")
        assert headers["Accept-Language"] == "en-US,en;q=0.9"
        assert "SRCHHPGUSR=SRCHLANG=en&ADLT=STRICT" in headers["Cookie"]
        assert "_EDGE_CD=m=en-us&u=en" in headers["Cookie"]
        assert headers["User-Agent"] == bing.DEFAULT_USER_AGENT
        assert re.search(r"Chrome/\d{3}\.0\.0\.0 Safari/537\.36$", headers["User-Agent"])

        agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) maskset-test"
        photos(fake, 2, prefix="/j")  # something new to download with it
        make("scrape", "QUERY=other", "LIMIT=5", f"BING_URL={fake.base}", "MARKET=de-de", f"USER_AGENT={agent}",
             data=data)
        query, headers = fake.queries[-1], fake.page_headers[-1]
        assert (query["cc"], query["setlang"]) == ("DE", "de-DE") and headers["Accept-Language"] == "de-DE,de;q=0.9"
        assert headers["User-Agent"] == agent and set(fake.agents) == {bing.DEFAULT_USER_AGENT, agent}


@pytest.mark.parametrize("variable, value, message", [
    ("MARKET", "xx-YY", "MARKET='xx-YY' is not a Bing market. Use one of: da-DK, de-AT"),
    ("OPTOUT", "maybe", "OPTOUT='maybe': use respect (the default: an image whose X-Robots-Tag says noai, "
                        "noimageai, noindex, noimageindex is not kept) or ignore"),
])
def test_a_bad_market_or_optout_is_explained(tmp_path, variable, value, message):
    bad = make("scrape", "QUERY=x", f"{variable}={value}", "BING_URL=http://127.0.0.1:9", data=tmp_path / "data",
               check=False)
    assert bad.returncode == 2 and message in bad.stderr
