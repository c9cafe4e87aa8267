"""Scraper parts on their own: the one parser, filters, checks, downloader (fake Bing on 127.0.0.1)."""
from __future__ import annotations

import html
import io
import json

import pytest
from PIL import Image

from dataset.errors import MasksetError
from scraping import bing
from scraping.checks import Rejected, check_image
from scraping.download import Downloader, DownloadFailed, DownloadSettings
from dataset.fixtures.fakebing import CAPTCHA_PAGE, FakeBing
from scraping.parse import parse_page


def anchor(meta) -> str:
    return f'<li><a class="iusc" m="{html.escape(json.dumps(meta), quote=True)}" href="#">x</a></li>'


def encoded(image, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_parser_reads_m_json_with_ampersands_odd_extensions_and_any_key_order():
    metas = [
        {"murl": "https://a.example/i.php?id=1&size=l&x=%20", "purl": "https://a.example/p?a=1&b=2", "t": "A & B"},
        {"t": "second", "turl": "https://tse.bing.net/th?id=OIP.2&pid=Api", "murl": "http://b.example/p.JFIF;v=2"},
        {"purl": "", "murl": "https://c.example/noext", "t": "quote \" and <tag>"},
    ]
    page = parse_page("<ul>" + "".join(anchor(m) for m in metas)
                      + '<a class="iusc" m="{not json">bad</a><a class="iusc">no m</a>'
                      + '<a class="other" m="{&quot;murl&quot;:&quot;http://skip.me/x.jpg&quot;}">not a result</a></ul>')
    assert [r.murl for r in page.results] == [m["murl"] for m in metas]
    assert page.results[0].purl == "https://a.example/p?a=1&b=2"
    assert page.results[0].title == "A & B"
    assert page.results[1].turl == "https://tse.bing.net/th?id=OIP.2&pid=Api"
    assert page.results[2].title == 'quote " and <tag>'
    assert page.skipped == 2
    assert page.blocked == ""


def test_captcha_and_429_pages_are_blocks_but_an_ordinary_empty_page_is_not():
    assert "captcha" in parse_page(CAPTCHA_PAGE.decode()).blocked
    assert parse_page("<html><title>429 Too Many Requests</title><body>slow down</body></html>").blocked
    assert parse_page("<ul class='dgControl_list'></ul>").blocked == ""
    # a result about captchas is a result, not a block
    page = parse_page(anchor({"murl": "https://x.example/captcha.png", "t": "captcha solving"}))
    assert len(page.results) == 1 and page.blocked == ""


def test_filters_map_to_bing_qft_and_adlt_and_bad_ones_are_explained():
    filters = bing.parse_filters("type=photo, size=large,license=public face=portrait safe=strict")
    params = bing.filter_params(filters)
    assert params["adlt"] == "strict"
    for code in ("+filterui:photo-photo", "+filterui:imagesize-large", "+filterui:license-L1",
                 "+filterui:face-portrait"):
        assert code in params["qft"]
    url = bing.async_url("http://127.0.0.1:1", "face masks & co", 36, filters)
    assert "first=36" in url and "count=35" in url and "q=face+masks+%26+co" in url
    with pytest.raises(MasksetError, match="size='huge' is not one of: small, medium, large, wallpaper"):
        bing.parse_filters("size=huge")
    with pytest.raises(MasksetError, match="unknown filter 'colour'"):
        bing.parse_filters("colour=red")
    with pytest.raises(MasksetError, match="not key=value"):
        bing.parse_filters("photo")


def test_checks_keep_plain_images_byte_for_byte_and_convert_what_labelimg_cannot_open():
    rgb = Image.new("RGB", (200, 120), (10, 200, 30))
    plain = encoded(rgb, "JPEG")
    kept = check_image(plain)
    assert kept.data == plain and kept.suffix == ".jpg" and not kept.converted
    exif = rgb.getexif()
    exif[0x0112] = 6
    cases = {
        "cmyk": (encoded(rgb.convert("CMYK"), "JPEG"), ".jpg", "CMYK"),
        "webp": (encoded(rgb, "WEBP"), ".jpg", "WEBP"),
        "16-bit": (encoded(Image.new("I;16", (200, 120), 50000), "PNG"), ".png", "I;16"),
        "palette-alpha": (encoded(rgb.convert("P"), "PNG", transparency=0), ".png", "mode P"),
        "animated": (encoded(rgb.convert("P"), "GIF", save_all=True,
                             append_images=[Image.new("RGB", (200, 120)).convert("P")]), ".png", "animated"),
        "exif": (encoded(rgb, "JPEG", exif=exif), ".jpg", "EXIF"),
    }
    for name, (data, suffix, why) in cases.items():
        checked = check_image(data)
        assert checked.suffix == suffix and why in checked.converted, name
        stored = Image.open(io.BytesIO(checked.data))
        assert stored.mode in ("RGB", "L") and getattr(stored, "n_frames", 1) == 1, name
        assert stored.format in ("JPEG", "PNG"), name
        assert not stored.getexif().get(0x0112), name
    assert check_image(cases["exif"][0]).width == 120  # rotated 90 degrees: pixels as shown
    assert Image.open(io.BytesIO(check_image(cases["16-bit"][0]).data)).getpixel((0, 0)) == 50000 // 256


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html><body>denied</body></html>", "html"),
    (b"\x00\x01 just bytes", "not-image"),
    (encoded(Image.new("RGB", (300, 200), "blue"), "JPEG")[:400], "truncated"),
    (encoded(Image.new("RGB", (40, 300), "blue"), "PNG"), "too-small"),
    (encoded(Image.new("1", (9000, 9000)), "PNG"), "decompression-bomb"),
], ids=["empty", "html", "garbage", "truncated", "tiny", "bomb"])
def test_checks_reject_with_a_reason(data, reason):
    with pytest.raises(Rejected) as caught:
        check_image(data, min_side=64, max_pixels=40_000_000)
    assert caught.value.reason == reason


def test_downloader_refuses_other_schemes_caps_bytes_and_retries_429():
    body = encoded(Image.new("RGB", (100, 100), "green"), "PNG")
    with FakeBing() as fake:
        big = fake.add_route("/big.jpg", body=b"\xff" * 5000)
        busy = fake.add_route("/busy.png", body=body, fail_first=2, fail_status=429)
        gone = fake.add_route("/gone.png", body=body, fail_first=99, fail_status=503)
        downloader = Downloader(DownloadSettings(max_bytes=4000, backoff=0.01, retries=2))
        for url in ("file:///etc/passwd", "ftp://example.org/x.jpg", "javascript:alert(1)"):
            with pytest.raises(DownloadFailed, match="bad-scheme"):
                downloader.fetch(url)
        with pytest.raises(DownloadFailed, match="too-large"):
            downloader.fetch(big)
        assert downloader.fetch(busy) == body and fake.hits["/busy.png"] == 3
        with pytest.raises(DownloadFailed, match="http-503"):
            downloader.fetch(gone)
        assert fake.hits["/gone.png"] == 3  # 1 + 2 retries, then it gives up


def test_downloader_keeps_to_the_per_host_limit_and_sends_its_user_agent():
    from concurrent.futures import ThreadPoolExecutor
    body = encoded(Image.new("RGB", (100, 100), "green"), "PNG")
    with FakeBing() as fake:
        urls = [fake.add_route(f"/slow/{i}.png", body=body, delay=0.2) for i in range(8)]
        downloader = Downloader(DownloadSettings(threads=8, per_host=2, user_agent="maskset-test/1.0"))
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(downloader.fetch, urls)) == [body] * 8
        assert fake.max_active == 2
        assert fake.agents == {"maskset-test/1.0": 8}


def test_requests_engine_caps_the_pages_it_reads():
    with FakeBing(page_size=2) as fake:
        for index in range(20):
            fake.add_result(f"http://127.0.0.1:9/{index}.jpg")
        pages = bing.requests_pages(fake.base, "masks", {}, max_pages=3)
        sizes = [len(next(pages)) for _ in range(3)]
        with pytest.raises(StopIteration) as end:
            next(pages)
    assert sizes == [2, 2, 2] and len(fake.queries) == 3
    assert end.value.value.text() == "limit reached (--max-pages: 3 result pages read; raise it for more)"


# -- issue 15: how the real Bing refuses ----------------------------------------------------------
def page_of(*murls) -> str:
    return "<ul>" + "".join(anchor({"murl": murl, "t": "x"}) for murl in murls) + "</ul>"


def test_classify_tells_results_the_genuine_end_and_each_refusal_apart():
    from dataset.fixtures.fakebing import FORBIDDEN_PAGE, NO_RESULTS_PAGE, SHELL_PAGE, TURING_PAGE
    kind = bing.PageKind
    ok = "http://127.0.0.1:1/images/async?q=x&first=1"
    results = parse_page(page_of("https://a.example/1.jpg"))
    assert bing.classify(results, ok) == bing.Verdict(kind.RESULTS)
    end = bing.classify(parse_page(NO_RESULTS_PAGE.format(title="masks")), ok)
    assert end.kind is kind.END and end.why == "Bing says: There are no results for masks"
    # refusals, and which are worth a new try after a wait (only the empty ones)
    cases = {
        "429": (parse_page("<title>x</title>"), ok, 429, "HTTP 429", False),
        "403": (parse_page(FORBIDDEN_PAGE.decode()), ok, 403, "HTTP 403", False),
        # the turing page never says "captcha": only where it landed tells
        "redirect": (parse_page(TURING_PAGE.decode()), "http://127.0.0.1:1/turing/captcha/challenge?q=x", 200,
                     "redirected to Bing's captcha at /turing/captcha/challenge", False),
        "captcha text": (parse_page(CAPTCHA_PAGE.decode()), ok, 200, "captcha", False),
        "empty": (parse_page(""), ok, 200, "an empty answer", True),
        "browser's empty document": (parse_page("<html><head></head><body></body></html>"), ok, 0,
                                     "an empty answer", True),
        "shell": (parse_page(SHELL_PAGE.format(title="masks")), ok, 200, 'no "no results" message', True),
    }
    for name, (page, url, status, why, retry) in cases.items():
        verdict = bing.classify(page, url, status)
        assert verdict.kind is kind.REFUSED and why in verdict.why and verdict.retry is retry, name
    assert not parse_page(TURING_PAGE.decode()).blocked  # so the URL test above can fail
    # a wrong BING_URL is an error, not a refusal and not the end
    assert bing.classify(parse_page("<h1>Not Found</h1>"), ok, 404).kind is kind.ERROR
    # results win over a status a browser could not tell; captcha paths are refusals even with results
    assert bing.classify(results, ok, 0).kind is kind.RESULTS
    assert bing.classify(results, "https://www.bing.com/turing/captcha/challenge").kind is kind.REFUSED


def test_page_history_tells_bings_last_page_again_from_throttling_replays():
    kind = bing.PageKind

    def pages(*murl_lists):
        history = bing.PageHistory()
        verdicts = []
        for number, murls in enumerate(murl_lists):
            verdict, new = history.add(f"page {number + 1}", [bing.Result(m) for m in murls])
            verdicts.append((verdict, [r.murl for r in new]))
        return verdicts

    # the usual end: the last page served again
    *_, (last, new) = pages(["a", "b"], ["c", "d"], ["e"], ["e"])
    assert last.kind is kind.END and new == [] and "last page again at page 4" in last.why
    # the first page served again at a later offset (also right after it: Bing's throttling)
    for sequence in (pages(["a", "b"], ["a", "b"]), pages(["a", "b"], ["c"], ["b", "a"])):
        verdict, new = sequence[-1]
        assert verdict.kind is kind.REFUSED and "the first page again" in verdict.why and new == []
    # any earlier page again, or only results seen before
    verdict, _ = pages(["a"], ["b"], ["c"], ["b"])[-1]
    assert verdict.kind is kind.REFUSED and "repeats the page at page 2" in verdict.why
    verdict, _ = pages(["a", "b"], ["c", "d"], ["b", "c"])[-1]
    assert verdict.kind is kind.REFUSED and "only results already seen" in verdict.why
    # a page with some new results is results, and only those are new
    verdict, new = pages(["a", "b"], ["b", "c", "c"])[-1]
    assert verdict.kind is kind.RESULTS and new == ["c"]


def test_video_tiles_are_known_by_bings_markup_thumbnail_id_or_url():
    video_markup = ('<li><a class="iusc" m="{&quot;murl&quot;:&quot;https://v.example/watch/1&quot;}">x</a>'
                    '<div class="vrhdata" vrhm="{&quot;du&quot;:&quot;2:31&quot;}"></div></li>')
    page = parse_page("<ul>" + video_markup + "".join(anchor(meta) for meta in [
        {"murl": "https://a.example/photo.jpg", "turl": "https://tse1.mm.bing.net/th?id=OVP.x1&pid=Api"},
        {"murl": "https://a.example/clip.MP4?x=1"},
        {"murl": "https://www.youtube.com/watch?v=abc"},
        {"murl": "https://vimeo.com/123456"},
        {"murl": "https://i.ytimg.com/vi/abc/hqdefault.jpg"},       # a video's poster is an image
        {"murl": "https://a.example/videos/still.jpg", "turl": "https://tse1.mm.bing.net/th?id=OIP.x2&pid=Api"},
        {"murl": "https://youtube.com/"},
    ]) + "</ul>")
    assert [r.video for r in page.results] == [True, True, True, True, True, False, False, False]
    assert [r.murl for r in page.images] == ["https://i.ytimg.com/vi/abc/hqdefault.jpg",
                                             "https://a.example/videos/still.jpg", "https://youtube.com/"]


def test_x_robots_tag_optout_is_read_as_img2dataset_reads_it():
    from scraping.download import optout_directives
    assert optout_directives(["noai"]) == ["noai"]
    assert optout_directives(["NoImageAI, nofollow"]) == ["noimageai"]
    assert optout_directives(["noindex", "noimageindex"]) == ["noindex", "noimageindex"]
    assert optout_directives(["maskset: noai"]) == ["noai"]          # addressed to us
    assert optout_directives(["otherbot: noai, noimageai"]) == []    # addressed to someone else
    assert optout_directives(["unavailable_after: 25 Jun 2010 15:00:00 PST", "nofollow, noarchive"]) == []
    assert optout_directives([]) == []


def test_downloader_refuses_an_opted_out_image_from_its_headers_before_reading_the_body():
    import time
    body = encoded(Image.new("RGB", (100, 100), "green"), "PNG")
    with FakeBing() as fake:
        # 40 KB sent 1 KB a second: reading the body would take 40 s
        slow = fake.add_route("/optout/slow.png", body=body + b"\0" * 40000, trickle=1.0,
                              headers={"X-Robots-Tag": "noai"})
        other = fake.add_route("/optout/other.png", body=body, headers={"X-Robots-Tag": "otherbot: noai"})
        started = time.monotonic()
        with pytest.raises(DownloadFailed) as caught:
            Downloader(DownloadSettings(retries=0)).fetch(slow)
        assert caught.value.reason == "opted-out" and "X-Robots-Tag: noai" in caught.value.detail
        assert time.monotonic() - started < 5
        assert Downloader().fetch(other) == body
        ignoring = Downloader(DownloadSettings(optout="ignore"))
        quick = fake.add_route("/optout/quick.png", body=body, headers={"X-Robots-Tag": "noimageai"})
        fetched = ignoring.get(quick)
        assert fetched.data == body and fetched.optout == ["noimageai"]


def test_requests_are_made_as_maintained_scrapers_make_them():
    url = bing.async_url("http://127.0.0.1:1", "masks", 36, {"adult": "strict"}, market="de-DE")
    assert "mmasync=1" in url and "cc=DE" in url and "setlang=de-DE" in url and "adlt=strict" in url
    assert bing.bing_cookies("en-US", {"adult": "moderate"})["SRCHHPGUSR"] == "SRCHLANG=en&ADLT=DEMOTE"
    assert "ADLT" not in bing.bing_cookies("en-US", {})["SRCHHPGUSR"]   # Bing's own default then
    assert bing.accept_language("fr-CA") == "fr-CA,fr;q=0.9"
    assert bing.parse_market("en_gb") == "en-GB" and bing.parse_market(None) == "en-US"
    with pytest.raises(MasksetError, match=r"MARKET='xx-YY' is not a Bing market. Use one of: .*en-US"):
        bing.parse_market("xx-YY")
    import re
    assert re.fullmatch(r"Mozilla/5\.0 \(X11; Linux x86_64\) AppleWebKit/537\.36 \(KHTML, like Gecko\) "
                        r"Chrome/1\d\d\.0\.0\.0 Safari/537\.36", bing.DEFAULT_USER_AGENT)


def test_the_requests_engine_retries_an_empty_page_with_bounded_backoff_then_goes_on():
    from scraping.stop import Stop
    with FakeBing(page_size=2, block="empty", block_from_page=2, block_count=2) as fake:
        for index in range(5):
            fake.add_result(f"http://127.0.0.1:9/{index}.jpg")
        pages = bing.requests_pages(fake.base, "masks", {}, page_waits=(0.01, 0.01, 0.01))
        got = []
        while True:
            try:
                got.append(len(next(pages)))
            except StopIteration as end:
                stop = end.value
                break
    assert got == [2, 2, 1] and stop == Stop.ended("Bing served its last page again at first=6")
    assert [q["first"] for q in fake.queries] == ["1", "3", "3", "3", "5", "6"]
