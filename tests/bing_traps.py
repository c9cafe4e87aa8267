"""A hostile Bing result list for the scrape tests: every trap a real result list throws at a
scraper (odd URLs, HTML bodies, bombs, truncated files, CMYK, 16-bit, palette+alpha, WebP, GIF,
redirects, timeouts, 5xx and 429 answers ...), with what a correct scraper makes of it."""
from __future__ import annotations

import random
from urllib.parse import urlsplit

from dataset.fixtures.fakebing import FakeBing


def _encoded(image, fmt: str, **kwargs) -> bytes:
    import io
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _palette(colour):
    """A palette image: `colour` with a band of index 1 (transparent where asked)."""
    from PIL import Image, ImageDraw
    image = Image.new("P", (240, 160), 0)
    image.putpalette([*colour, 250, 250, 250] + [0] * 762)
    ImageDraw.Draw(image).rectangle([40, 40, 200, 90], fill=1)
    return image


def add_tricky_results(fake: FakeBing, good: int = 10, seed: int = 3, slow: float = 3.0) -> dict:
    """Fill `fake` with everything a real result list throws at a scraper; returns what a correct
    scraper makes of it: {"accepted": n, "duplicates": n, "converted": n, "rejected": {reason: n}}.
    The fake must be started (URLs carry its port)."""
    from PIL import Image

    from dataset.fixtures.scenes import jpeg_bytes, render_scene

    rng = random.Random(seed)
    scenes = [jpeg_bytes(render_scene(rng, (320, 240))[0]) for _ in range(good + 4)]
    odd_paths = ["/img/a.jpg?w=320&h=240&amp=1", "/img/photo.JPEG", "/img/pic.php?id=3&size=l",
                 "/img/noextension", "/img/x.jpg;v=1", "/img/image.jfif?x=%20y&z"]
    for index in range(good):
        path = odd_paths[index] if index < len(odd_paths) else f"/img/scene_{index}.jpg"
        route_path = urlsplit(path).path
        fake.add_route(route_path, body=scenes[index], content_type="image/jpeg")
        fake.add_result(fake.base + path, title=f"mask & people {index}")
    first = scenes[0]
    fake.add_result(fake.add_route("/mirror/same-photo-elsewhere.png", body=first), title="same bytes")
    fake.add_result(fake.url("/img/missing.jpg"), title="404")
    fake.add_result(fake.add_route("/img/html.jpg", body=b"<!DOCTYPE html><html><body>Hotlinking "
                                   b"not allowed</body></html>", content_type="image/jpeg"))
    fake.add_result(fake.add_route("/img/truncated.jpg", body=scenes[good][: len(scenes[good]) // 2]))
    fake.add_result(fake.add_route("/img/tiny.png", body=_encoded(Image.new("RGB", (16, 16), "red"), "PNG"),
                                   content_type="image/png"))
    fake.add_result(fake.add_route("/img/slow.jpg", body=scenes[good + 1], delay=slow))
    fake.add_result(fake.add_route("/img/trickle.jpg", body=scenes[good + 1] + b"\0" * 20000, trickle=0.25))
    fake.add_route("/img/target.jpg", body=scenes[good + 2])
    fake.add_result(fake.add_route("/img/redirect.jpg", status=302, location="/img/target.jpg"))
    fake.add_result(fake.add_route("/img/to-file.jpg", status=302, location="file:///etc/passwd"))
    fake.add_result(fake.add_route("/img/bomb.png", body=_encoded(Image.new("1", (12000, 12000)), "PNG"),
                                   content_type="image/png"))
    fake.add_result("file:///etc/passwd", title="not http")
    fake.add_result(fake.add_route("/img/..%2F..%2F..%2Fescape.jpg", body=scenes[good + 3]))
    busy = _encoded(Image.new("RGB", (200, 150), (30, 90, 160)), "PNG")
    fake.add_result(fake.add_route("/img/busy.png", body=busy, content_type="image/png",
                                   fail_first=2, fail_status=429))
    flaky = _encoded(Image.new("RGB", (200, 150), (160, 90, 30)), "JPEG")
    fake.add_result(fake.add_route("/img/flaky.jpg", body=flaky, fail_first=1, fail_status=503))
    # what labelImg cannot open, or shows wrongly: converted
    base = Image.new("RGB", (240, 160), (200, 60, 60))
    exif = base.getexif()
    exif[0x0112] = 6  # rotate 90: a phone photo
    converted = {
        "/img/cmyk.jpg": _encoded(Image.new("RGB", (240, 160), (20, 200, 60)).convert("CMYK"), "JPEG"),
        "/img/photo.webp": _encoded(Image.new("RGB", (240, 160), (20, 60, 200)), "WEBP"),
        "/img/anim.gif": _encoded(_palette((90, 20, 140)), "GIF", save_all=True,
                                  append_images=[_palette((20, 140, 90))]),
        "/img/rotated.jpg": _encoded(base, "JPEG", exif=exif),
        "/img/deep.png": _encoded(Image.new("I;16", (240, 160), 40000), "PNG"),
        "/img/palette-alpha.png": _encoded(_palette((230, 200, 20)), "PNG", transparency=1),
    }
    for path, body in converted.items():
        fake.add_result(fake.add_route(path, body=body, content_type="application/octet-stream"))
    return {"accepted": good + 4 + len(converted), "duplicates": 1, "converted": len(converted),
            "rejected": {"http-404": 1, "html": 1, "truncated": 1, "too-small": 1, "timeout": 2,
                         "bad-scheme": 2, "decompression-bomb": 1}}
