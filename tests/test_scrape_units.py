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
from scraping.fakebing import CAPTCHA_PAGE, FakeBing
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
        pages = list(bing.requests_pages(fake.base, "masks", {}, max_pages=3))
    assert [len(page) for page in pages] == [2, 2, 2] and len(fake.queries) == 3
