"""Bing's result pages: URLs, filters, market, and the two engines that read them.

Both engines yield lists of new `Result`s (new to this run), share parse.parse_page, and judge
every page they get with the one `classify` below, and every later page with `PageHistory`:
- results  the page has results (a page that repeats earlier ones is judged by PageHistory);
- end      Bing's genuine end: its "There are no results for ..." page, or its last page served
           again at the next offset;
- refused  a 429 or 403; a redirect to Bing's captcha (/turing/captcha/...), or a captcha or
           bot wall in the text; an empty answer or a bare page with neither results nor a "no
           results" message (tried again with bounded backoff first: Bing sends these when it
           throttles); the first page (or any earlier page) served again at a later offset.
A refusal raises BingBlocked (exit 3): never read as "the results ended". The generators return
a `Stop` (ended, or a page cap reached) when they end without one.

- requests: pages /images/async?q=&first=&count=35&mmasync=1, as Bing's own infinite scroll does.
- selenium: opens /images/search?q= in headless Chromium and scrolls (and clicks "see more") until
  nothing more loads; the async answers the page fetches are captured in the browser and judged
  like the requests engine's pages, and the browser's own URL and HTTP status are checked too.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from dataset.errors import MasksetError

from .parse import Page, Result, parse_page
from .stop import Stop

DEFAULT_BING = "https://www.bing.com"
PAGE_SIZE = 35
# A complete, current desktop Chrome string (Chrome's reduced User-Agent form, the version Debian
# ships in November 2026). Linux, as the Selenium engine's real Chromium reports in navigator.*.
DEFAULT_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/156.0.0.0 Safari/537.36")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Seconds to wait before each new try of a result page that came back empty (no results, no
# "no results" message): 3 more tries, 14 s in all, then the run stops as refused.
PAGE_WAITS = (2.0, 4.0, 8.0)

# FILTERS="type=photo,size=large,license=public,face=portrait,adult=strict" -> Bing's qft/adlt.
QFT = {
    "type": {"photo": "photo-photo", "clipart": "photo-clipart", "line": "photo-linedrawing",
             "gif": "photo-animatedgif", "transparent": "photo-transparent"},
    "size": {s: f"imagesize-{s}" for s in ("small", "medium", "large", "wallpaper")},
    "license": {"any": "licenseType-Any", "public": "license-L1",
                "share": "license-L2_L3_L4_L5_L6_L7", "share-commercial": "license-L2_L3_L4",
                "modify": "license-L2_L3_L5_L6", "modify-commercial": "license-L2_L3"},
    "face": {"face": "face-face", "portrait": "face-portrait"},
    "aspect": {a: f"aspect-{a}" for a in ("square", "wide", "tall")},
}
ADULT = ("strict", "moderate", "off")
# SafeSearch in Bing's SRCHHPGUSR cookie (as SearXNG sets it): ADLT=STRICT|DEMOTE|OFF
ADULT_COOKIE = {"strict": "STRICT", "moderate": "DEMOTE", "off": "OFF"}

# Bing's market codes (language-COUNTRY), as its search API documents them.
MARKETS = ("es-AR", "en-AU", "de-AT", "nl-BE", "fr-BE", "pt-BR", "en-CA", "fr-CA", "es-CL", "da-DK",
           "fi-FI", "fr-FR", "de-DE", "zh-HK", "en-IN", "en-ID", "it-IT", "ja-JP", "ko-KR", "en-MY",
           "es-MX", "nl-NL", "en-NZ", "no-NO", "zh-CN", "pl-PL", "en-PH", "ru-RU", "en-ZA", "es-ES",
           "sv-SE", "fr-CH", "de-CH", "zh-TW", "tr-TR", "en-GB", "en-US", "es-US")
DEFAULT_MARKET = "en-US"


class BingBlocked(MasksetError):
    """Bing refused a result page (429, 403, captcha, empty pages, page 1 served again ...):
    stop, keep what was saved, exit 3. `stop` says why, for the summary and scrape.json."""

    exit_code = 3

    def __init__(self, url: str, why: str, engine: str = "requests"):
        other = "selenium" if engine == "requests" else "requests"
        super().__init__(
            f"{url}: Bing refused the result page ({why}). The likely cause is throttling: Bing "
            f"limits how much one address may search. Images saved so far are kept. Wait (an hour "
            f"or more), lower the rate (a smaller LIMIT, fewer runs an hour, one query at a time), "
            f"or try ENGINE={other}; then run the same command again to continue.")
        self.url, self.why = url, why
        self.stop = Stop.refused(why)
        self.result = None  # the run's Summary, set by the pipeline after saving what came


# -- what to ask for ----------------------------------------------------------------------------
def parse_filters(text: str | None) -> dict[str, str]:
    """"type=photo,size=large" (commas or spaces) -> {"type": "photo", "size": "large"}, checked."""
    filters: dict[str, str] = {}
    for item in (text or "").replace(",", " ").split():
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "safe":
            key = "adult"
        if not sep or not value:
            raise MasksetError(f"FILTERS: {item!r} is not key=value. Example: "
                               f"FILTERS=\"type=photo,size=large,license=public,face=portrait,adult=strict\"")
        choices = ADULT if key == "adult" else tuple(QFT.get(key, {}))
        if not choices:
            raise MasksetError(f"FILTERS: unknown filter {key!r}. Known: {', '.join([*QFT, 'adult'])}.")
        if value not in choices:
            raise MasksetError(f"FILTERS: {key}={value!r} is not one of: {', '.join(choices)}.")
        filters[key] = value
    return filters


def parse_market(text: str | None) -> str:
    """"en-us" / "en_US" -> "en-US", checked against Bing's markets."""
    wanted = (text or DEFAULT_MARKET).strip().replace("_", "-").lower()
    for market in MARKETS:
        if market.lower() == wanted:
            return market
    raise MasksetError(f"MARKET={text!r} is not a Bing market. Use one of: {', '.join(sorted(MARKETS))} "
                       f"(default {DEFAULT_MARKET}).")


def filter_params(filters: dict[str, str]) -> dict[str, str]:
    """Bing's query parameters for the filters: qft="+filterui:a+filterui:b", adlt=..."""
    params = {}
    codes = "".join(f"+filterui:{QFT[key][value]}" for key, value in sorted(filters.items())
                    if key in QFT)
    if codes:
        params["qft"] = codes
    if "adult" in filters:
        params["adlt"] = filters["adult"]
    return params


def market_params(market: str) -> dict[str, str]:
    """Bing's market parameters: cc (country) and setlang (interface language)."""
    return {"cc": market.split("-")[1], "setlang": market}


def accept_language(market: str) -> str:
    language = market.split("-")[0]
    return f"{market},{language};q=0.9"


def bing_cookies(market: str, filters: dict[str, str]) -> dict[str, str]:
    """The cookies a browser in this market carries (as SearXNG sets them): market and UI
    language in _EDGE_CD/_EDGE_S, search language and SafeSearch in SRCHHPGUSR."""
    language = market.split("-")[0]
    prefs = f"SRCHLANG={language}"
    if "adult" in filters:
        prefs += f"&ADLT={ADULT_COOKIE[filters['adult']]}"
    return {"_EDGE_CD": f"m={market.lower()}&u={language}", "_EDGE_S": f"mkt={market.lower()}&ui={language}",
            "SRCHHPGUSR": prefs}


def async_url(base: str, query: str, first: int, filters: dict[str, str], count: int = PAGE_SIZE,
              market: str = DEFAULT_MARKET) -> str:
    params = {"q": query, "first": first, "count": count, "mmasync": 1, **filter_params(filters),
              **market_params(market)}
    return f"{base.rstrip('/')}/images/async?{urlencode(params)}"


def search_url(base: str, query: str, filters: dict[str, str], market: str = DEFAULT_MARKET) -> str:
    params = {"q": query, "form": "HDRSC2", **filter_params(filters), **market_params(market)}
    return f"{base.rstrip('/')}/images/search?{urlencode(params)}"


# -- judging a page -----------------------------------------------------------------------------
class PageKind(str, Enum):
    RESULTS = "results"
    END = "end"            # Bing's genuine end
    REFUSED = "refused"    # throttling, a block, a captcha
    ERROR = "error"        # an HTTP error that is not a refusal (404 ...): BING_URL is wrong


@dataclass(frozen=True)
class Verdict:
    kind: PageKind
    why: str = ""
    retry: bool = False    # a refusal worth trying again after a wait (an empty page)


def captcha_location(url: str) -> str:
    """Where a redirect to a captcha landed (Bing's is /turing/captcha/challenge), else ""."""
    parts = urlsplit(url or "")
    path = parts.path.lower()
    if "/turing/" in path or "captcha" in path or "captcha" in parts.netloc.lower():
        return parts.path or url
    return ""


def classify(page: Page, final_url: str, status: int = 200) -> Verdict:
    """One result page, judged from its parsed content, where it landed (the URL after redirects,
    or the browser's current URL) and its HTTP status (0: unknown, as a browser may not say)."""
    if status == 429:
        return Verdict(PageKind.REFUSED, "HTTP 429 Too Many Requests")
    if status == 403:
        return Verdict(PageKind.REFUSED, "HTTP 403 Forbidden")
    landed = captcha_location(final_url)
    if landed:
        return Verdict(PageKind.REFUSED, f"redirected to Bing's captcha at {landed}")
    if page.blocked:
        return Verdict(PageKind.REFUSED, page.blocked)
    if status not in (0, 200) and not page.results:
        return Verdict(PageKind.ERROR, f"HTTP {status}")
    if page.results:
        return Verdict(PageKind.RESULTS)
    if page.no_results:
        return Verdict(PageKind.END, f"Bing says: {page.no_results}")
    if page.empty:
        return Verdict(PageKind.REFUSED, "an empty answer: no results and nothing else", retry=True)
    return Verdict(PageKind.REFUSED, "a page with no results and no \"no results\" message", retry=True)


@dataclass
class PageHistory:
    """The result pages of one run, in order, to tell Bing's end from its throttling. A page
    that brings nothing new is the end only when it is the previous page served again (Bing
    re-serves its last page past the end). The first page served again at a later offset, a
    page identical to another earlier one, or one made of results already seen on several
    pages is probable throttling (SearXNG #3402, #4546; bing_image_downloader #14)."""
    pages: list[tuple[str, frozenset]] = field(default_factory=list)
    seen: set = field(default_factory=set)

    def add(self, label: str, results: list[Result]) -> tuple[Verdict, list[Result]]:
        """Judge a page with results (label: where it was asked, e.g. "first=36"); returns the
        verdict and the results new to this run."""
        murls = frozenset(r.murl for r in results)
        new, fresh = [], set()
        for result in results:
            if result.murl not in self.seen and result.murl not in fresh:
                new.append(result)
                fresh.add(result.murl)
        if new or not self.pages:
            self.pages.append((label, murls))
            self.seen |= murls
            return Verdict(PageKind.RESULTS), new
        if len(self.pages) >= 2 and murls == self.pages[-1][1]:
            return Verdict(PageKind.END, f"Bing served its last page again at {label}"), []
        if murls == self.pages[0][1]:
            # also right after it: Bing past the end of a one-page list looks the same, but a
            # throttled Bing is far likelier than an image query with one page of results
            alone = "" if len(self.pages) > 1 else f", unless these {len(murls)} are all this query has"
            return Verdict(PageKind.REFUSED, f"{label} answered with the first page again "
                                             f"({len(murls)} results): probable throttling{alone}"), []
        for earlier, page in self.pages:
            if murls == page:
                return Verdict(PageKind.REFUSED, f"{label} repeats the page at {earlier}: probable "
                                                 f"throttling"), []
        return Verdict(PageKind.REFUSED, f"{label} brings only results already seen on earlier "
                                         f"pages: probable throttling"), []


def _after_tries(why: str, waits, tries: int) -> str:
    if tries == 1:
        return why
    return f"{why}; {tries} tries over {sum(waits[:tries - 1]):g} s"


def _label(url: str) -> str:
    first = parse_qs(urlsplit(url).query).get("first")
    return f"first={first[-1]}" if first else url


# -- requests + BeautifulSoup --------------------------------------------------------------------
def requests_pages(base: str, query: str, filters: dict[str, str], user_agent: str = DEFAULT_USER_AGENT,
                   max_pages: int = 30, timeout=(5, 20), session: requests.Session | None = None,
                   market: str = DEFAULT_MARKET, page_waits=PAGE_WAITS, count: int = PAGE_SIZE,
                   ) -> Iterator[list[Result]]:
    session = session or requests.Session()
    session.headers.update({"User-Agent": user_agent, "Accept-Language": accept_language(market),
                            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    host = urlsplit(base).hostname or ""
    for name, value in bing_cookies(market, filters).items():
        session.cookies.set(name, value, domain=host, path="/")
    history = PageHistory()
    first = 1
    for _ in range(max_pages):
        url = async_url(base, query, first, filters, count, market)
        tries = 0
        while True:
            tries += 1
            response = _get_page(session, url, timeout)
            page = parse_page(response.text)
            verdict = classify(page, response.url, response.status_code)
            if verdict.kind is PageKind.REFUSED and verdict.retry and tries <= len(page_waits):
                time.sleep(page_waits[tries - 1])  # Bing's empty answers often pass: ask again
                continue
            break
        if verdict.kind is PageKind.REFUSED:
            raise BingBlocked(url, _after_tries(verdict.why, page_waits, tries) if verdict.retry else verdict.why)
        if verdict.kind is PageKind.ERROR:
            raise MasksetError(f"{url}: Bing answered {verdict.why}. Check BING_URL, or try again later "
                               f"with the same command.")
        if verdict.kind is PageKind.END:
            return Stop.ended(verdict.why)
        verdict, new = history.add(_label(url), page.results)
        if verdict.kind is PageKind.REFUSED:
            raise BingBlocked(url, verdict.why)
        if verdict.kind is PageKind.END:
            return Stop.ended(verdict.why)
        yield new
        first += len(page.results)
    return Stop.limit(f"--max-pages: {max_pages} result pages read; raise it for more")


def _get_page(session: requests.Session, url: str, timeout, attempts: int = 3) -> requests.Response:
    """One result page; a dropped connection or a 5xx is tried again (a 429 is not: it is a block)."""
    for attempt in range(attempts):
        try:
            response = session.get(url, timeout=timeout)
        except requests.RequestException as error:
            if attempt + 1 == attempts:
                raise MasksetError(f"{url}: cannot reach Bing ({type(error).__name__}: {error}). Check "
                                   f"the network or BING_URL, then run the same command again.") from None
        else:
            if response.status_code < 500 or attempt + 1 == attempts:
                return response
        time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


# -- Selenium + headless Chromium ----------------------------------------------------------------
def make_driver(user_agent: str = DEFAULT_USER_AGENT, profile: str | None = None,
                market: str = DEFAULT_MARKET):
    """Headless Debian Chromium through chromedriver; both paths explicit (Selenium Manager
    cannot download here), overridable by MASKSET_CHROMIUM / MASKSET_CHROMEDRIVER."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    chromium = os.environ.get("MASKSET_CHROMIUM", CHROMIUM)
    driver_path = os.environ.get("MASKSET_CHROMEDRIVER", CHROMEDRIVER)
    for path, variable in ((chromium, "MASKSET_CHROMIUM"), (driver_path, "MASKSET_CHROMEDRIVER")):
        if not os.access(path, os.X_OK):
            raise MasksetError(f"{path}: not found or not executable. Install Debian's chromium and "
                               f"chromium-driver (apt-get install chromium chromium-driver) or set "
                               f"{variable} to its path.")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1600",
                     f"--user-agent={user_agent}", f"--user-data-dir={profile}", f"--lang={market}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": accept_language(market).split(";")[0]})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as error:
        raise MasksetError(f"{driver_path}: cannot start headless {chromium} ({error.msg or error}). "
                           f"chromium and chromium-driver must be the same version (apt-get install "
                           f"--reinstall chromium chromium-driver).") from None
    driver.set_page_load_timeout(60)
    return driver


COUNT_JS = "return document.querySelectorAll('a.iusc').length"
# Bing's cookie banner (EU): accept it, or it may cover the results
CONSENT_JS = "const b = document.querySelector('#bnp_btn_accept'); if (b) b.click();"
SEE_MORE = """
for (const selector of ['a.btn_seemore', '.btn_seemore', 'input[value*="See more" i]', '.mm_seemore a']) {
  const button = document.querySelector(selector);
  if (button && button.offsetParent !== null) { %s return true; }
}
return false;"""
SEE_MORE_JS = SEE_MORE % "button.click();"
SEE_MORE_SHOWN_JS = SEE_MORE % ""
SCROLL_JS = ("window.scrollTo(0, document.body.scrollHeight);"  # a short page cannot scroll:
             "window.dispatchEvent(new Event('scroll'));")        # so send the event itself too
STATUS_JS = ("const e = performance.getEntriesByType('navigation')[0];"
             "return e && e.responseStatus ? e.responseStatus : 0;")
# Installed in every document before Bing's own scripts: keeps each answer of the infinite-scroll
# endpoint (fetch or XHR) with its final URL and status, so the engine judges what Bing sent.
CAPTURE_JS = r"""
(() => {
  if (window.__masksetLoads) return;
  const loads = window.__masksetLoads = [];
  const wanted = (url) => /\/images\/async/.test(String(url || ''));
  const nativeFetch = window.fetch;
  if (nativeFetch) window.fetch = function (...args) {
    const asked = String(args[0] && args[0].url ? args[0].url : args[0]);
    return nativeFetch.apply(this, args).then(response => {
      if (wanted(asked)) response.clone().text().then(
        text => loads.push({asked, url: response.url, status: response.status, text}),
        () => loads.push({asked, url: response.url, status: response.status, text: null}));
      return response;
    }, error => {
      if (wanted(asked)) loads.push({asked, url: asked, status: 0, text: ''});
      throw error;
    });
  };
  const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.__masksetUrl = String(url);
    return open.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.send = function (...args) {
    if (wanted(this.__masksetUrl)) this.addEventListener('loadend', () => {
      let text = null;  // null: could not be read (another responseType), so not judged
      try { text = this.responseText; } catch (e) {}
      loads.push({asked: this.__masksetUrl, url: this.responseURL || this.__masksetUrl, status: this.status, text});
    });
    return send.apply(this, args);
  };
})();"""
DRAIN_JS = "return (window.__masksetLoads || []).splice(0);"
PENDING_JS = "return (window.__masksetLoads || []).length;"


def selenium_pages(base: str, query: str, filters: dict[str, str], user_agent: str = DEFAULT_USER_AGENT,
                   max_scrolls: int = 60, wait: float = 3.0, market: str = DEFAULT_MARKET,
                   page_waits=PAGE_WAITS) -> Iterator[list[Result]]:
    profile = tempfile.mkdtemp(prefix="maskset-chromium-")
    driver = None
    try:
        driver = make_driver(user_agent, profile, market)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE_JS})
        for name, value in bing_cookies(market, filters).items():
            driver.execute_cdp_cmd("Network.setCookie", {"name": name, "value": value, "url": base})
        url = search_url(base, query, filters, market)
        page, verdict = _open_search(driver, url, page_waits)
        if verdict.kind is PageKind.END:
            return Stop.ended(verdict.why)
        history = PageHistory()
        history.add("the first page", page.results)
        seen: set[str] = set()
        empty_tries = 0
        for _ in range(max_scrolls):
            _check_location(driver)
            page = parse_page(driver.page_source)
            new = [r for r in page.results if r.murl not in seen]
            seen.update(r.murl for r in new)
            if new:
                yield new
            count = driver.execute_script(COUNT_JS)
            driver.execute_script(SCROLL_JS)
            step = _step(driver, count, wait, history)
            if step.kind == "nothing" and driver.execute_script(SEE_MORE_JS):
                # Bing stops infinite scrolling after a while and shows "see more images"
                step = _step(driver, count, wait, history)
            if step.kind == "progress":
                empty_tries = 0
                continue
            if step.kind == "ended":
                return Stop.ended(step.why)
            if step.kind == "empty":
                empty_tries += 1
                if empty_tries <= len(page_waits):
                    time.sleep(page_waits[empty_tries - 1])  # then scroll again: the page asks again
                    continue
                raise BingBlocked(step.url, _after_tries(step.why, page_waits, empty_tries), "selenium")
            return Stop.ended("no more results appeared when scrolling")
        return Stop.limit(f"{max_scrolls} scrolls read; raise --max-scrolls for more")
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # after Ctrl-C chromedriver may already be gone: nothing to quit
                pass
        shutil.rmtree(profile, ignore_errors=True)  # our own throw-away profile


def _open_search(driver, url: str, page_waits) -> tuple[Page, Verdict]:
    """Open the search page, judged by where the browser landed, its status and its content;
    an empty page is opened again after each of page_waits."""
    tries = 0
    while True:
        tries += 1
        driver.get(url)
        driver.execute_script(CONSENT_JS)
        page = parse_page(driver.page_source)
        verdict = classify(page, driver.current_url, int(driver.execute_script(STATUS_JS) or 0))
        if verdict.kind is PageKind.REFUSED and verdict.retry and tries <= len(page_waits):
            time.sleep(page_waits[tries - 1])
            continue
        break
    if verdict.kind is PageKind.REFUSED:
        raise BingBlocked(url, _after_tries(verdict.why, page_waits, tries) if verdict.retry else verdict.why,
                          "selenium")
    if verdict.kind is PageKind.ERROR:
        raise MasksetError(f"{url}: Bing answered {verdict.why}. Check BING_URL, or try again later "
                           f"with the same command.")
    return page, verdict


def _check_location(driver) -> None:
    landed = captcha_location(driver.current_url)
    if landed:
        raise BingBlocked(driver.current_url, f"the browser was sent to Bing's captcha at {landed}", "selenium")


@dataclass
class _Step:
    kind: str = "nothing"   # progress | ended | empty | nothing
    why: str = ""
    url: str = ""


def _step(driver, count: int, wait: float, history: PageHistory) -> _Step:
    """After a scroll or a click: wait for more results or an answer from Bing, then judge every
    answer the page received (raising BingBlocked on a refusal)."""
    grew = _wait_for_change(driver, count, wait)
    step = _Step("progress" if grew else "nothing")
    for load in driver.execute_script(DRAIN_JS) or []:
        asked = str(load.get("asked") or "")
        final = str(load.get("url") or asked)
        if load.get("text") is None and captcha_location(final) == "" and load.get("status") not in (403, 429):
            continue  # an answer the page read in a form we cannot: nothing to judge
        page = parse_page(str(load.get("text") or ""))
        verdict = classify(page, final, int(load.get("status") or 0))
        if verdict.kind is PageKind.RESULTS:
            verdict, new = history.add(_label(asked), page.results)
        if verdict.kind is PageKind.REFUSED and not verdict.retry:
            raise BingBlocked(asked, verdict.why, "selenium")
        if verdict.kind is PageKind.ERROR:
            raise MasksetError(f"{asked}: Bing answered {verdict.why}. Check BING_URL, or try again "
                               f"later with the same command.")
        if verdict.kind is PageKind.RESULTS:
            step = _Step("progress")
        elif verdict.kind is PageKind.END and step.kind != "progress":
            step = _Step("ended", verdict.why, asked)
        elif verdict.kind is PageKind.REFUSED and step.kind == "nothing":
            step = _Step("empty", verdict.why, asked)
    return step


def _wait_for_change(driver, count: int, wait: float) -> bool:
    """True when more results appeared within `wait` seconds; returns early (False) when an
    answer from Bing arrived that added none, or when "See more images" waits to be clicked."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if driver.execute_script(COUNT_JS) > count:
            return True
        if driver.execute_script(PENDING_JS):
            time.sleep(0.2)  # the page may still be adding what came
            return driver.execute_script(COUNT_JS) > count
        if driver.execute_script(SEE_MORE_SHOWN_JS):
            return False
        time.sleep(0.1)
    return False


ENGINES = {"requests": requests_pages, "selenium": selenium_pages}
