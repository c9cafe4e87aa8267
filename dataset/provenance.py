"""Where each image came from: the manifest's "added" records as a table (pandas), and the hosts
of its URLs. Read by the card (the collection numbers, ATTRIBUTION.csv), takedown (which images a
request matches) and package.

Scraped images' records carry query, engine, market, rank, murl (the image's URL), purl (the
page it was found on), title, filters (license=... among them) and time; imported ones
source_path, import_format and sha256. An image with no record (put into images/ by hand) has
origin "unknown" and empty sources.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from . import manifest
from .layout import Dataset

UNKNOWN = "unknown"
COLUMNS = ("origin", "query", "engine", "market", "murl", "purl", "title", "licence", "filters",
           "source_path", "import_format", "added", "image_host", "page_host")


def host(url) -> str:
    """The host name of a URL, lower case ("" for none or a malformed URL)."""
    if not isinstance(url, str) or not url.strip():
        return ""
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


def filters_text(filters) -> str:
    """{"type": "photo", "license": "public"} -> "license=public type=photo"."""
    if not isinstance(filters, dict) or not filters:
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(filters.items()))


def added_records(dataset: Dataset, records: list[dict] | None = None) -> dict[str, dict]:
    """file -> the first "added" record of it (where it came from)."""
    first: dict[str, dict] = {}
    for record in manifest.read_records(dataset) if records is None else records:
        if record.get("event") == manifest.ADDED:
            first.setdefault(record["file"], record)
    return first


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def row(record: dict | None) -> dict:
    """An image's provenance columns from its added record (None: no record)."""
    if record is None:
        return {**{c: "" for c in COLUMNS}, "origin": UNKNOWN}
    filters = record.get("filters") if isinstance(record.get("filters"), dict) else {}
    origin = _text(record.get("origin")) or ("scrape" if record.get("murl") else
                                             "import" if record.get("source_path") else UNKNOWN)
    return {
        "origin": origin, "query": _text(record.get("query")), "engine": _text(record.get("engine")),
        "market": _text(record.get("market")), "murl": _text(record.get("murl")),
        "purl": _text(record.get("purl")), "title": _text(record.get("title")),
        "licence": _text(filters.get("license")), "filters": filters_text(filters),
        "source_path": _text(record.get("source_path")), "import_format": _text(record.get("import_format")),
        "added": _text(record.get("time")), "image_host": host(record.get("murl")),
        "page_host": host(record.get("purl")),
    }


def table(dataset: Dataset, files, records: list[dict] | None = None):
    """A pandas DataFrame, one row per file in `files` (index: file name), columns COLUMNS."""
    import pandas as pd
    first = added_records(dataset, records)
    rows = {name: row(first.get(name)) for name in files}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    frame.index.name = "file"
    return frame.fillna("")


def source_folder(source_path: str) -> str:
    """The folder an imported image came from (its images/ or JPEGImages/ parent for a split
    labelImg folder)."""
    from .importer import IMAGE_FOLDER_NAMES
    parent = Path(source_path).parent
    if parent.name in IMAGE_FOLDER_NAMES:
        parent = parent.parent
    return str(parent)
