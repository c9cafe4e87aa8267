"""`make takedown URL=|HOST=|FILE=|QUERY= REASON=...`: take images out of the dataset on request.

A request names images by their image or page URL (URL=, exact), the host of either (HOST=, that
host and its subdomains), their file names (FILE=, several allowed) or the scrape query that
found them (QUERY=, any case). Every matching image, in images/ or already quarantined as a
duplicate (so that `make restore` cannot bring it back), moves with its VOC file to
quarantine/takedown/ as one crash-safe change (dataset/moves.py). Each gets a manifest record
(event "quarantined", reason "takedown", the request and REASON=) and a line in
quarantine/takedown/log.jsonl. A request that matches nothing says so and changes nothing.

Later exports, splits, cards and packages read images/, so they leave the images out; derived
copies (export/resized/) are removed at once. `make restore TAKEDOWN=1` (dataset/restore.py)
brings them back byte for byte.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest, moves, provenance
from . import progress as progress_bars
from .errors import MasksetError
from .layout import Dataset
from .results import Result

log = logging.getLogger(__name__)

TAKEDOWN = "takedown"
SELECTORS = ("URL", "HOST", "FILE", "QUERY")


def folder(dataset: Dataset) -> Path:
    return dataset.quarantine / "takedown"


def log_file(dataset: Dataset) -> Path:
    return folder(dataset) / "log.jsonl"


def _host_of(text: str) -> str:
    """HOST=example.org (or example.org:8080, or a URL pasted by mistake): the host name, lower case."""
    text = text.strip()
    return provenance.host(text if "://" in text else "//" + text).rstrip(".")


def _query(text) -> str:
    return " ".join(str(text).split()).casefold()


@dataclass
class Request:
    url: str = ""
    host: str = ""
    files: list[str] = field(default_factory=list)
    query: str = ""
    reason: str = ""

    @classmethod
    def make(cls, url=None, host=None, files=None, query=None, reason=None) -> "Request":
        request = cls((url or "").strip(), _host_of(host or ""), [f for f in files or [] if f.strip()],
                      (query or "").strip(), " ".join((reason or "").split()))
        given = [name for name, value in zip(SELECTORS, (request.url, request.host, request.files, request.query))
                 if value]
        if len(given) != 1:
            said = f"{' and '.join(n + '=' for n in given)} given" if given else "none given"
            raise MasksetError(f"takedown: name the images with exactly one of URL=, HOST=, FILE= or QUERY= "
                               f"({said}). Example: make takedown HOST=example.org REASON=\"the site "
                               f"owner's request of 2024-05-01\"")
        if host and not request.host:
            raise MasksetError(f"HOST={host!r}: not a host name. Example: HOST=example.org")
        if not request.reason:
            raise MasksetError(f"takedown {request.describe()}: say why with REASON=, e.g. REASON=\"the "
                               f"photographer's email of 2024-05-01\"; it is recorded with the request.")
        return request

    def describe(self) -> str:
        if self.url:
            return f"URL={self.url}"
        if self.host:
            return f"HOST={self.host}"
        if self.files:
            return f"FILE={' '.join(self.files)}"
        return f"QUERY={self.query}"

    def as_dict(self) -> dict:
        if self.files:
            return {"files": list(self.files)}
        return {k: v for k, v in (("url", self.url), ("host", self.host), ("query", self.query)) if v}

    def matches(self, name: str, row) -> bool:
        """Whether the image `name` (its provenance row) is one this request names."""
        if self.files:
            return name in self.files
        if self.url:
            return self.url in (row["murl"], row["purl"])
        if self.host:
            return any(h == self.host or h.endswith("." + self.host) for h in (row["image_host"], row["page_host"]) if h)
        return bool(row["query"]) and _query(row["query"]) == _query(self.query)


@dataclass
class TakedownResult(Result):
    request: Request
    taken: list[str] = field(default_factory=list)            # files now in quarantine/takedown/
    already: list[str] = field(default_factory=list)          # matched, but taken down before
    annotations: int = 0                                      # of them, with a VOC file
    from_quarantine: list[str] = field(default_factory=list)  # were quarantined duplicates
    derived_removed: list[str] = field(default_factory=list)  # export/resized/ copies removed
    stale_pages: list[str] = field(default_factory=list)      # pages in export/ that may show them
    folder: Path | None = None

    def summary(self) -> str:
        if not self.taken:
            return (f"takedown {self.request.describe()}: nothing more to do: the {len(self.already)} images it "
                    f"matches were taken down before (listed in {self.folder / 'log.jsonl'})")
        lines = [f"takedown {self.request.describe()}: {len(self.taken)} images moved to {self.folder} "
                 f"({self.annotations} with their annotation"
                 + (f", {len(self.from_quarantine)} of them quarantined duplicates" if self.from_quarantine else "")
                 + f"); reason: {self.request.reason}"]
        lines += [f"  {name}" for name in self.taken[:20]]
        if len(self.taken) > 20:
            lines.append(f"  ... and {len(self.taken) - 20} more (all in {self.folder / 'log.jsonl'})")
        for page in self.stale_pages:
            lines.append(f"warning: {page} was made before this takedown and may show them: rewrite it "
                         f"(make report; make dedupe DRY_RUN=1)")
        lines.append("next: make export split card package (they leave these images out); "
                     "make restore TAKEDOWN=1 brings them back")
        return "\n".join(lines)


def _nothing_matched(dataset: Dataset, request: Request, table, searched: int) -> str:
    message = (f"takedown {request.describe()}: matches no image of {dataset.root} ({searched} images "
               f"searched, in images/ and among the quarantined duplicates); nothing was changed.")
    if request.host:
        hosts = sorted({h for column in ("image_host", "page_host") for h in table[column] if h})
        close = difflib.get_close_matches(request.host, hosts, n=3)
        return message + (f" Did you mean HOST={close[0]}?" if close else
                          f" Hosts in the dataset: {', '.join(hosts[:10]) or 'none (no scraped images)'}.")
    if request.query:
        queries = sorted({q for q in table["query"] if q})
        return message + f" Queries in the dataset: {', '.join(queries) or 'none (no scraped images)'}."
    if request.url:
        return message + " URL= must be an image's or its page's URL exactly as ATTRIBUTION.csv lists it."
    return message


def takedown(dataset: Dataset, request: Request, progress: bool = True) -> TakedownResult:
    """Quarantine every image the request names (see the module docstring). The caller holds the lock."""
    from .dedupe import EXACT, NEAR
    from .restore import quarantined, recover_all
    recover_all(dataset)  # a killed quarantine or restore is finished first
    records = manifest.read_records(dataset)
    state = manifest.state(dataset, records)
    live = [p.name for p in dataset.image_files()]
    duplicates = {name: r for name, r in quarantined(dataset, (EXACT, NEAR), state).items()
                  if name not in set(live) and _in_quarantine(dataset, name, r.get("moved_to"))}
    taken_already = quarantined(dataset, (TAKEDOWN,), state)
    candidates = live + sorted(duplicates)
    if request.files:
        unknown = [f for f in request.files if f not in candidates and f not in taken_already]
        if unknown:
            raise MasksetError(f"takedown FILE=: {', '.join(unknown)}: not in images/ nor quarantined as a "
                               f"duplicate of {dataset.root}; nothing was changed. ATTRIBUTION.csv (make card) "
                               f"lists the dataset's files.")
    table = provenance.table(dataset, list(dict.fromkeys(candidates + sorted(taken_already))), records)
    matched = [name for name in candidates if request.matches(name, table.loc[name])]
    already = [name for name in sorted(taken_already) if request.matches(name, table.loc[name])]
    if not matched and not already:
        raise MasksetError(_nothing_matched(dataset, request, table.loc[candidates], len(candidates)))
    if not matched:  # the same request again (after a crash, say): done already, nothing to change
        return TakedownResult(request, already=already, folder=folder(dataset))

    target = folder(dataset)
    plans = []  # (name, image from, annotation from or None, where it was)
    for name in matched:
        if name in duplicates:
            record = duplicates[name]
            image_from = str(dataset.inside(record["moved_to"], "moved_to").relative_to(dataset.root))
            xml = record.get("annotation_moved_to")
            xml_from = str(dataset.inside(xml, "annotation_moved_to").relative_to(dataset.root)) \
                if xml and (dataset.root / xml).is_file() else None
            plans.append((name, image_from, xml_from, f"quarantine ({record.get('reason')})"))
        else:
            xml = dataset.annotation_for(name)
            plans.append((name, f"{dataset.images.name}/{name}",
                          str(xml.relative_to(dataset.root)) if xml.is_file() else None, "images"))
    wanted = []
    for name, _, xml_from, _ in plans:
        wanted.append(str((target / name).relative_to(dataset.root)))
        if xml_from:
            wanted.append(str((target / (Path(name).stem + ".xml")).relative_to(dataset.root)))
    destinations = iter(moves.free_destinations(dataset, wanted))
    details = {"request": request.as_dict(), "reason": request.reason}
    changes = []
    for name, image_from, xml_from, was in plans:
        image_to = next(destinations)
        files = [(image_from, image_to)]
        record = {"file": name, "event": manifest.QUARANTINED, "reason": TAKEDOWN, "takedown": details,
                  "was": was, "moved_to": image_to, "annotation": None, "annotation_moved_to": None}
        if xml_from:
            xml_to = next(destinations)
            files.append((xml_from, xml_to))
            record.update(annotation=xml_from, annotation_moved_to=xml_to)
        changes.append(moves.Move(files, record))
    bar = lambda items: progress_bars.bar(items, desc="takedown", enabled=progress)  # noqa: E731
    done = moves.carry_out(dataset, "takedown", changes, log_file(dataset), bar)
    result = TakedownResult(request, already=already, folder=target)
    for record in done:
        result.taken.append(record["file"])
        result.annotations += bool(record.get("annotation_moved_to"))
        if record["was"] != "images":
            result.from_quarantine.append(record["file"])
    result.derived_removed = _remove_derived(dataset, result.taken)
    result.stale_pages = [str(p) for p in (dataset.export / "report.html", dataset.export / "dedupe.html")
                          if p.exists()]
    log.info("takedown %s (%s): %d images quarantined", request.describe(), request.reason, len(result.taken))
    return result


def _in_quarantine(dataset: Dataset, name: str, moved_to) -> bool:
    """Whether a quarantine record names a plain file name and a file inside quarantine/ (a
    record is never trusted: a hand-edited one is left alone, with a warning)."""
    try:
        ok = (Path(name).name == name and isinstance(moved_to, str)
              and dataset.inside(moved_to, "moved_to").is_relative_to(dataset.quarantine)
              and (dataset.root / moved_to).is_file())
    except MasksetError:
        ok = False
    if not ok:
        log.warning("%s: the quarantine record of %r does not name a file in quarantine/; left alone",
                    dataset.manifest, name)
    return ok


def _remove_derived(dataset: Dataset, names: list[str]) -> list[str]:
    """The taken-down images' resized copies (export/resized/<sides>/<name>, made by `make export
    RESIZE=`): derived data, rebuilt by export, so removed rather than kept."""
    removed = []
    resized = dataset.export / "resized"
    if not resized.is_dir():
        return removed
    for sides in sorted(p for p in resized.iterdir() if p.is_dir() and not p.is_symlink()):
        for name in names:
            copy = sides / name
            if copy.is_file() and not copy.is_symlink():
                copy.unlink()
                removed.append(str(copy.relative_to(dataset.root)))
    return removed
