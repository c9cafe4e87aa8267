"""The downloader: a thread pool with a per-host limit, timeouts, a byte cap and retries.

Only http(s) URLs are fetched (also after redirects). A body is read in chunks so the byte cap
and the total time cap per image hold even against a server that trickles. 5xx and 429 are
retried with exponential backoff (honouring a short Retry-After); 4xx are not.

Publishers' opt-out is respected as img2dataset does by default: an image whose response carries
`X-Robots-Tag: noai`, `noimageai`, `noindex` or `noimageindex` (for every crawler, or for ours:
`maskset: noai`) is refused from its headers, before its body is read ("opted-out"). With
optout="ignore" it is downloaded and the directives travel with it, for the manifest.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .bing import DEFAULT_USER_AGENT

CHUNK = 64 * 1024
# img2dataset's default disallowed directives: the two AI ones the web adopted (noai, noimageai)
# and the two indexing ones (noindex, noimageindex), since a dataset is an index of images too.
OPTOUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
ROBOTS_TOKEN = "maskset"   # `X-Robots-Tag: maskset: noai` addresses us; `otherbot: noai` does not
OPTOUT_MODES = ("respect", "ignore")


@dataclass
class DownloadSettings:
    threads: int = 16             # downloads in flight at once
    per_host: int = 12            # at most this many at once from one host (politeness)
    connect_timeout: float = 5.0  # seconds to connect
    read_timeout: float = 10.0    # seconds of silence allowed while reading
    total_timeout: float = 30.0   # seconds for one image, all chunks together
    max_bytes: int = 20 * 1024 * 1024
    retries: int = 3              # extra attempts after a 5xx / 429 / dropped connection
    backoff: float = 0.5          # first wait; doubles each retry
    max_retry_after: float = 10.0
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    optout: str = "respect"       # "ignore": keep images whose X-Robots-Tag opts out (recorded)


@dataclass
class Fetched:
    data: bytes
    optout: list[str] = field(default_factory=list)  # opt-out directives it was served with


class DownloadFailed(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.lower()


def optout_directives(values: list[str]) -> list[str]:
    """The opt-out directives among X-Robots-Tag header values that apply to us, as img2dataset
    reads them: "noai, noimageai" for every crawler, or "<token>: noai" for one crawler."""
    found = []
    for value in values:
        token, sep, directives = value.partition(":")
        if not sep:
            token, directives = "", value
        if token.strip() and token.strip().lower() != ROBOTS_TOKEN:
            continue
        for directive in directives.split(","):
            directive = directive.strip().lower()
            if directive in OPTOUT_DIRECTIVES and directive not in found:
                found.append(directive)
    return found


def check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadFailed("bad-scheme", f"only http(s) URLs are fetched, not {scheme or 'no scheme'}:")


class Downloader:
    def __init__(self, settings: DownloadSettings | None = None):
        self.settings = settings or DownloadSettings()
        self._local = threading.local()
        self._hosts: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self.settings.per_host))
        self._hosts_lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=32, pool_maxsize=self.settings.per_host, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.max_redirects = self.settings.max_redirects
            session.headers.update({"User-Agent": self.settings.user_agent,
                                    "Accept": "image/avif,image/webp,image/*,*/*;q=0.8"})
            self._local.session = session
        return session

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        with self._hosts_lock:
            return self._hosts[host_of(url)]

    def fetch(self, url: str) -> bytes:
        """The body of url, or DownloadFailed(reason) after the retries."""
        return self.get(url).data

    def get(self, url: str) -> Fetched:
        """The body of url with the opt-out it was served with, or DownloadFailed(reason)."""
        check_scheme(url)
        s = self.settings
        for attempt in range(s.retries + 1):
            last = attempt == s.retries
            with self._host_slot(url):
                try:
                    return self._fetch_once(url)
                except _Retry as retry:
                    if last:
                        raise DownloadFailed(retry.reason, retry.detail) from None
                    wait = retry.retry_after if retry.retry_after is not None else s.backoff * 2 ** attempt
            time.sleep(min(wait, s.max_retry_after))  # outside the host slot: others may go on
        raise AssertionError("unreachable")

    def _fetch_once(self, url: str) -> Fetched:
        s = self.settings
        started = time.monotonic()
        try:
            with self._session().get(url, stream=True, timeout=(s.connect_timeout, s.read_timeout)) as response:
                check_scheme(response.url)
                status = response.status_code
                if status == 429 or status >= 500:
                    raise _Retry(f"http-{status}", response.reason or "", _retry_after(response))
                if status != 200:
                    raise DownloadFailed(f"http-{status}", response.reason or "")
                # separate header lines, not requests' comma-joined value: "a: noai, b: x" is ambiguous
                optout = optout_directives(response.raw.headers.getlist("X-Robots-Tag"))
                if optout and s.optout != "ignore":
                    raise DownloadFailed("opted-out", f"X-Robots-Tag: {', '.join(optout)} (OPTOUT=ignore "
                                                      f"to keep such images)")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > s.max_bytes:
                    raise DownloadFailed("too-large", f"Content-Length {declared} > {s.max_bytes} bytes")
                body = bytearray()
                # read1 returns what has arrived, so the time cap holds against a trickling server
                while chunk := response.raw.read1(CHUNK, decode_content=True):
                    body += chunk
                    if len(body) > s.max_bytes:
                        raise DownloadFailed("too-large", f"more than {s.max_bytes} bytes")
                    if time.monotonic() - started > s.total_timeout:
                        raise DownloadFailed("timeout", f"over {s.total_timeout:g} s in all")
                return Fetched(bytes(body), optout)
        except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidURL) as error:
            raise DownloadFailed("bad-scheme", str(error)) from None
        except requests.exceptions.TooManyRedirects:
            raise DownloadFailed("redirect-loop", f"more than {s.max_redirects} redirects") from None
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as error:
            raise DownloadFailed("timeout", type(error).__name__) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError) as error:
            if "timed out" in str(error):  # a read timeout while streaming comes wrapped like this
                raise DownloadFailed("timeout", "the server stopped sending") from None
            raise _Retry("connection", str(error)[:200], None) from None
        except requests.exceptions.RequestException as error:
            raise DownloadFailed("request-error", f"{type(error).__name__}: {error}"[:300]) from None


class _Retry(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None):
        super().__init__(reason)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
