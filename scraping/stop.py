"""How a scrape run stopped: one small typed value, never a free string compared around the code.

Three kinds, as the summary and export/scrape.json say them:
- limit    "limit reached (...)":  LIMIT images from the query are in the dataset (or a page cap was hit)
- ended    "results ended (...)":  Bing showed its genuine end (the "no results" page, its last page
                                    served again, nothing more when scrolling)
- refused  "refused (...)":        Bing refused us (429, 403, a captcha, empty pages, the first page
                                    served again ...). Exit code 3; what came before is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class StopKind(str, Enum):
    LIMIT = "limit"
    ENDED = "ended"
    REFUSED = "refused"


LABELS = {StopKind.LIMIT: "limit reached", StopKind.ENDED: "results ended", StopKind.REFUSED: "refused"}


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    why: str = ""

    @classmethod
    def limit(cls, why: str) -> "Stop":
        return cls(StopKind.LIMIT, why)

    @classmethod
    def ended(cls, why: str) -> "Stop":
        return cls(StopKind.ENDED, why)

    @classmethod
    def refused(cls, why: str) -> "Stop":
        return cls(StopKind.REFUSED, why)

    def text(self) -> str:
        """"refused (HTTP 429 Too Many Requests)", "results ended (...)", "limit reached (...)"."""
        label = LABELS[self.kind]
        return f"{label} ({self.why})" if self.why else label

    def as_json(self) -> dict:
        return {"kind": self.kind.value, "why": self.why, "text": self.text()}
