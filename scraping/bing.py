"""Bing's result pages: URLs, filters, and the two engines that read them.

Both engines yield lists of new `Result`s (new to this run) and share parse.parse_page.
- requests: pages /images/async?q=&first=&count=35, stops when a page brings nothing new
  (Bing re-serves its last page) or after max_pages.
- selenium: opens /images/search?q= in headless Chromium, scrolls (and clicks "see more") until
  no new a.iusc elements appear.
A 429 or a captcha page raises BingBlocked: never read as "no results".
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Iterator
from urllib.parse import urlencode

import requests

from dataset.errors import MasksetError

from .parse import Result, parse_page

DEFAULT_BING = "https://www.bing.com"
PAGE_SIZE = 35
DEFAULT_USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/131.0 Safari/537.36")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

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


class BingBlocked(MasksetError):
    """Bing answered 429 or a captcha: stop, keep what was saved, exit non-zero."""

    exit_code = 3


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


def async_url(base: str, query: str, first: int, filters: dict[str, str], count: int = PAGE_SIZE) -> str:
    params = {"q": query, "first": first, "count": count, **filter_params(filters)}
    return f"{base.rstrip('/')}/images/async?{urlencode(params)}"


def search_url(base: str, query: str, filters: dict[str, str]) -> str:
    params = {"q": query, "form": "HDRSC2", **filter_params(filters)}
    return f"{base.rstrip('/')}/images/search?{urlencode(params)}"


def _blocked(url: str, why: str) -> BingBlocked:
    return BingBlocked(f"{url}: Bing refused the result page ({why}). Images saved so far are kept. "
                       f"Wait (an hour or more), use another network, or lower LIMIT; then run the "
                       f"same command again to continue.")


# -- requests + BeautifulSoup --------------------------------------------------------------------
def requests_pages(base: str, query: str, filters: dict[str, str], user_agent: str = DEFAULT_USER_AGENT,
                   max_pages: int = 30, timeout=(5, 20), session: requests.Session | None = None,
                   ) -> Iterator[list[Result]]:
    session = session or requests.Session()
    session.headers.update({"User-Agent": user_agent, "Accept-Language": "en-US,en;q=0.8"})
    seen: set[str] = set()
    first = 1
    for _ in range(max_pages):
        url = async_url(base, query, first, filters)
        response = _get_page(session, url, timeout)
        if response.status_code == 429:
            raise _blocked(url, "HTTP 429 Too Many Requests")
        page = parse_page(response.text)
        if page.blocked:
            raise _blocked(url, page.blocked)
        if response.status_code != 200:
            raise MasksetError(f"{url}: Bing answered HTTP {response.status_code}. Check BING_URL, or "
                               f"try again later with the same command.")
        new = [r for r in page.results if r.murl not in seen]
        if not new:
            return  # Bing re-serves its last page once the results have ended
        seen.update(r.murl for r in new)
        yield new
        first += len(page.results)


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
def make_driver(user_agent: str = DEFAULT_USER_AGENT, profile: str | None = None):
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
                     f"--user-agent={user_agent}", f"--user-data-dir={profile}"):
        options.add_argument(argument)
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
SEE_MORE_JS = """
for (const selector of ['a.btn_seemore', '.btn_seemore', 'input[value*="See more" i]', '.mm_seemore a']) {
  const button = document.querySelector(selector);
  if (button && button.offsetParent !== null) { button.click(); return true; }
}
return false;"""


def selenium_pages(base: str, query: str, filters: dict[str, str], user_agent: str = DEFAULT_USER_AGENT,
                   max_scrolls: int = 60, wait: float = 3.0) -> Iterator[list[Result]]:
    profile = tempfile.mkdtemp(prefix="maskset-chromium-")
    driver = None
    try:
        driver = make_driver(user_agent, profile)
        url = search_url(base, query, filters)
        driver.get(url)
        driver.execute_script(CONSENT_JS)
        seen: set[str] = set()
        for _ in range(max_scrolls):
            page = parse_page(driver.page_source)
            if page.blocked:
                raise _blocked(url, page.blocked)
            new = [r for r in page.results if r.murl not in seen]
            seen.update(r.murl for r in new)
            if new:
                yield new
            count = driver.execute_script(COUNT_JS)
            # a page shorter than the window cannot scroll, so also send the event itself
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight);"
                                  "window.dispatchEvent(new Event('scroll'));")
            if not _grows(driver, count, wait):
                # Bing stops infinite scrolling after a while and shows "see more images"
                if not driver.execute_script(SEE_MORE_JS) or not _grows(driver, count, wait):
                    return
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:  # after Ctrl-C chromedriver may already be gone: nothing to quit
                pass
        shutil.rmtree(profile, ignore_errors=True)  # our own throw-away profile


def _grows(driver, count: int, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if driver.execute_script(COUNT_JS) > count:
            return True
        time.sleep(0.1)
    return False


ENGINES = {"requests": requests_pages, "selenium": selenium_pages}
