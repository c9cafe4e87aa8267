"""A fake Bing on 127.0.0.1: result pages with Bing's markup, and the images they point to.

A real HTTP server (ThreadingHTTPServer on an ephemeral port) for the demo, the tests and the
bench. It serves
- /images/async?q=&first=&count=  a fragment of `li > a.iusc[m]` results, as Bing's infinite
  scroll loads them; past the end it re-serves the last page, as Bing does;
- /images/search?q=  a whole page with the first results, a script that loads more on scroll,
  and after every `see_more_every` loads a "See more images" button that must be clicked;
- with no results at all, Bing's genuine "There are no results for ..." page (both paths);
- video tiles among the results (add_result(..., video=True)), marked as Bing marks them: a
  `vrhdata[vrhm]` video block in the tile and an OVP.* (video) thumbnail id in `m`;
- any path added with add_route(): images, slow or failing answers, redirects, headers such as
  `X-Robots-Tag: noai`.
It refuses as the real Bing does, for result page requests from `block_from_page` on (the
`block_count` next ones, or all when 0), with `block`:
  "429"               429 Too Many Requests
  "403"               403 Forbidden
  "captcha"           200 with a captcha page (the polite kind: the text says captcha)
  "captcha-redirect"  302 to /turing/captcha/challenge, whose page never says "captcha"
  "empty"             200 with an empty body
  "shell"             200 with Bing's page chrome but no results and no "no results" message
  "replay"            the first page again, whatever offset was asked
"""
from __future__ import annotations

import html
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    delay: float = 0.0          # seconds before the answer starts
    trickle: float = 0.0        # seconds between 1 KB chunks of the body
    fail_first: int = 0         # answer `fail_status` this many times first
    fail_status: int = 503
    location: str = ""          # a redirect (status 30x)
    headers: dict = field(default_factory=dict)


BLOCKS = ("429", "403", "captcha", "captcha-redirect", "empty", "shell", "replay")
CAPTCHA_PATH = "/turing/captcha/challenge"

CAPTCHA_PAGE = b"""<!DOCTYPE html><html><head><title>Bing</title></head><body>
<div id="b_content"><h1>One last step</h1><p>Please solve the challenge below to continue.</p>
<form id="b_captcha" action="/challenge" method="post"><div class="captcha">Enter the characters you
see</div><input name="answer"></form></div></body></html>"""

# Where Bing's captcha redirect lands: a challenge widget; no "captcha" anywhere in its text.
TURING_PAGE = b"""<!DOCTYPE html><html><head><title>Bing</title></head><body><div id="b_content">
<h1>One last step</h1><p>Please solve the challenge below to continue.</p>
<div id="turing-widget"><iframe title="Widget containing a security challenge" src="about:blank"></iframe></div>
</div></body></html>"""

FORBIDDEN_PAGE = b"""<!DOCTYPE html><html><head><title>Access Denied</title></head><body><h1>Access Denied</h1>
<p>You don't have permission to access this server.</p></body></html>"""

# Bing's page around the results, with none in it and no "no results" message.
SHELL_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} - Search</title></head>
<body><header id="b_header"><form id="sb_form" action="/images/search"><input id="sb_form_q" name="q"
value="{title}"></form><nav><ul><li><a href="/search">All</a></li><li><a href="/images">Images</a></li>
<li><a href="/videos">Videos</a></li><li><a href="/maps">Maps</a></li><li><a href="/news">News</a></li></ul></nav>
</header><div id="b_content"><div id="mmComponent_images_1" class="dg_b"><ul class="dgControl_list"></ul></div>
</div><footer id="b_footer"><a href="/privacy">Privacy and Cookies</a> <a href="/terms">Terms of Use</a>
<span>&copy; 2026 Microsoft</span></footer></body></html>"""

NO_RESULTS_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} - Search</title></head>
<body><div id="b_content"><ol id="b_results"><li class="b_no"><h1>There are no results for
<strong>{title}</strong></h1><ul><li>Check your spelling or try different keywords</li></ul></li></ol></div>
</body></html>"""

SEARCH_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} - Bing images</title>
<style>li{{display:block;height:300px;list-style:none}} .mm_seemore{{display:none;padding:40px}}</style>
</head><body><div id="b_content"><div id="mmComponent_images_1" class="dg_b">
<ul class="dgControl_list" id="results">{items}</ul></div>
<div class="mm_seemore" id="seemore"><a class="btn_seemore" href="javascript:void(0)" role="button">See more images</a></div>
</div><script>
const state = {{first: {next_first}, loads: 0, busy: false, done: false, waiting: false}};
const seen = new Set(Array.from(document.querySelectorAll('a.iusc')).map(a => JSON.parse(a.getAttribute('m')).murl));
const seeMore = document.getElementById('seemore');
async function more() {{
  if (state.busy || state.done) return;
  state.busy = true;
  const response = await fetch('/images/async?q={q}&first=' + state.first + '&count={count}&mmasync=1{extra}');
  const holder = document.createElement('ul');
  holder.innerHTML = await response.text();
  let added = 0;
  const anchors = holder.querySelectorAll('a.iusc');
  for (const a of anchors) {{
    const murl = JSON.parse(a.getAttribute('m')).murl;
    if (seen.has(murl)) continue;
    seen.add(murl); added += 1;
    document.getElementById('results').appendChild(a.closest('li'));
  }}
  state.first += anchors.length; state.busy = false;
  if (!anchors.length) return;  // nothing at all came back: the next scroll asks again
  state.loads += 1;
  if (!added) state.done = true;
  else if (state.loads % {see_more_every} === 0) {{ state.waiting = true; seeMore.style.display = 'block'; }}
}}
window.addEventListener('scroll', () => {{
  if (state.waiting) return;
  if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 100) more();
}});
seeMore.querySelector('a').addEventListener('click', () => {{
  state.waiting = false; seeMore.style.display = 'none'; more();
}});
</script></body></html>"""


class FakeBing:
    def __init__(self, page_size: int = 35, see_more_every: int = 2, block: str = "",
                 block_from_page: int = 1, block_count: int = 0, seed: int = 0):
        if block and block not in BLOCKS:
            raise ValueError(f"block={block!r}: one of {BLOCKS}")
        self.results: list[dict] = []       # the `m` JSON of each result, in rank order
        self.routes: dict[str, Route] = {}  # raw request path -> answer
        self.hits: Counter = Counter()      # raw request path -> requests seen
        self.page_size = page_size
        self.see_more_every = see_more_every
        self.block = block                  # "" or one of BLOCKS
        self.block_from_page = block_from_page
        self.block_count = block_count      # refuse this many result pages, then answer again (0: all)
        self.refused = 0                    # result pages refused so far
        self.videos: set[str] = set()       # cids of results that are video tiles
        self.queries: list[dict] = []       # query parameters of each result page request
        self.page_headers: list[dict] = []  # User-Agent, Accept-Language, Cookie of each result page request
        self.agents: Counter = Counter()    # User-Agent headers seen
        self.active = 0                     # image requests being answered right now
        self.max_active = 0                 # ... and the most at once
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- content -------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add_route(self, path: str, route: Route | None = None, **kwargs) -> str:
        self.routes[path] = route or Route(**kwargs)
        return self.url(path)

    def add_result(self, murl: str, title: str = "", purl: str = "", video: bool = False, **extra) -> dict:
        """One result; its m JSON has Bing's keys in a shuffled order (parsers must not care).
        video=True makes it a video tile (murl: the video's page), marked as Bing marks them."""
        n = len(self.results) + 1
        kind = "OVP" if video else "OIP"   # Bing's thumbnail ids: OVP.* for videos, OIP.* for images
        meta = {"cid": f"c{n:05d}", "purl": purl or f"https://example.org/page/{n}?a=1&b=2",
                "murl": murl, "turl": f"https://tse{n % 4}.mm.bing.net/th?id={kind}.{n}&pid=Api",
                "md5": f"{n:032x}", "t": title or f"result {n} & friends", "desc": "", **extra}
        keys = list(meta)
        self._rng.shuffle(keys)
        meta = {k: meta[k] for k in keys}
        self.results.append(meta)
        if video:
            self.videos.add(meta["cid"])
        return meta

    # -- markup --------------------------------------------------------------------------------
    def items_html(self, start: int, count: int) -> str:
        items = []
        for index, meta in enumerate(self.results[start:start + count], start + 1):
            m = html.escape(json.dumps(meta), quote=True)
            video = ""
            if meta["cid"] in self.videos:
                vrhm = html.escape(json.dumps({"murl": meta["murl"], "du": "2:31", "vt": meta["t"]}), quote=True)
                video = (f'<div class="vrhdata" vrhm="{vrhm}"></div><div class="mc_vtvc_meta">'
                         f'<span class="mc_vtvc_du">2:31</span></div>')
            items.append(
                f'<li data-idx="{index}"><div class="iuscp isv"><div class="imgpt">'
                f'<a class="iusc" style="height:180px;width:240px" m="{m}" '
                f'mad="{{&quot;turl&quot;:&quot;x&quot;}}" href="/images/search?view=detailV2&amp;'
                f'ccid={meta["cid"]}&amp;idx={index}"><div class="img_cont hoff"><img class="mimg" '
                f'height="180" width="240" alt="{html.escape(meta["t"])}"></div></a>{video}'
                f'<div class="infnmpt"><div class="infopt"><a class="inflnk" href="#">'
                f'{html.escape(meta["t"])}</a></div></div></div></div></li>')
        return "".join(items)

    def _page_start(self, first: int) -> int:
        start = max(0, first - 1)
        if start >= len(self.results) and self.results:
            # past the end Bing re-serves its last page
            start = ((len(self.results) - 1) // self.page_size) * self.page_size
        return start

    # -- the server ----------------------------------------------------------------------------
    def start(self) -> "FakeBing":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: tests read hits instead
                pass

            def do_GET(self):
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fakebing").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        with self._lock:
            self.hits[parts.path] += 1
            hits = self.hits[parts.path]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path in ("/images/async", "/images/search"):
            self._result_page(request, parts.path, query)
            return
        if parts.path == CAPTCHA_PATH:
            _send(request, 200, TURING_PAGE, "text/html; charset=utf-8")
            return
        with self._lock:
            self.agents[request.headers.get("User-Agent", "")] += 1
        route = self.routes.get(parts.path)
        if route is None:
            _send(request, 404, b"<html><body>404 Not Found</body></html>", "text/html")
            return
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self._answer(request, route, hits)
        finally:
            with self._lock:
                self.active -= 1

    def _answer(self, request, route: Route, hits: int) -> None:
        if route.delay:
            time.sleep(route.delay)
        if hits <= route.fail_first:
            _send(request, route.fail_status, b"busy", "text/plain", {"Retry-After": "0"})
            return
        if route.location:
            _send(request, route.status if route.status in (301, 302, 303, 307, 308) else 302, b"",
                  "text/plain", {"Location": route.location})
            return
        _send(request, route.status, route.body, route.content_type, route.headers, route.trickle)

    def _refusing(self, page_number: int) -> str:
        """The refusal for this result page request ("" to answer it)."""
        with self._lock:
            if not self.block or page_number < self.block_from_page:
                return ""
            if self.block_count and self.refused >= self.block_count:
                return ""
            self.refused += 1
            return self.block

    def _result_page(self, request, path: str, query: dict) -> None:
        with self._lock:
            self.queries.append({"path": path, **query})
            self.page_headers.append({k: request.headers.get(k, "") for k in ("User-Agent", "Accept-Language",
                                                                                "Cookie")})
            page_number = len(self.queries)
        block = self._refusing(page_number)
        title = html.escape(query.get("q", ""))
        if block == "429":
            _send(request, 429, b"<html><head><title>429 Too Many Requests</title></head><body>"
                  b"<h1>Too Many Requests</h1></body></html>", "text/html", {"Retry-After": "3600"})
        elif block == "403":
            _send(request, 403, FORBIDDEN_PAGE, "text/html")
        elif block == "captcha":
            _send(request, 200, CAPTCHA_PAGE, "text/html; charset=utf-8")
        elif block == "captcha-redirect":
            _send(request, 302, b"", "text/html", {"Location": f"{CAPTCHA_PATH}?q={_js_quote(query.get('q', ''))}"})
        elif block == "empty":
            _send(request, 200, b"", "text/html; charset=utf-8")
        elif block == "shell":
            _send(request, 200, SHELL_PAGE.format(title=title).encode(), "text/html; charset=utf-8")
        elif not self.results:
            _send(request, 200, NO_RESULTS_PAGE.format(title=title).encode(), "text/html; charset=utf-8")
        elif path == "/images/async":
            first = 1 if block == "replay" else int(query.get("first", "1") or 1)
            start = self._page_start(first)
            count = min(int(query.get("count") or self.page_size), self.page_size)
            _send(request, 200, self.items_html(start, count).encode(), "text/html; charset=utf-8")
        else:
            self._search_page(request, query)

    def _search_page(self, request, query: dict) -> None:
        extra = "".join(f"&{k}={_js_quote(query[k])}" for k in ("qft", "adlt", "cc", "setlang") if k in query)
        page = SEARCH_PAGE.format(title=html.escape(query.get("q", "")), items=self.items_html(0, self.page_size),
                                  next_first=min(len(self.results), self.page_size) + 1,
                                  q=_js_quote(query.get("q", "")), count=self.page_size, extra=extra,
                                  see_more_every=max(1, self.see_more_every))
        _send(request, 200, page.encode(), "text/html; charset=utf-8")


def _js_quote(text: str) -> str:
    from urllib.parse import quote
    return quote(text, safe="")


def _send(request, status: int, body: bytes, content_type: str, headers: dict | None = None,
          trickle: float = 0.0) -> None:
    try:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        if trickle:
            for offset in range(0, len(body), 1024):
                request.wfile.write(body[offset:offset + 1024])
                request.wfile.flush()
                time.sleep(trickle)
        else:
            request.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a timeout test): fine


# -- a hostile result list, as the tests use it ------------------------------------------------
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

    from dataset.sample import jpeg_bytes, render_scene

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
