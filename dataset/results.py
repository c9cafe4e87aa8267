"""What a stage's core returns: a result with one way to print and one way to serialise.

Cores never print. The CLI prints `summary()` and exits with `exit_code`; files and programs
take `to_json()`. Warnings travel on the result or through `logging`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path


def jsonable(value):
    """value with Paths, sets, Counters, tuples and numpy scalars turned into JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, dict):  # Counter included
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Result:
    """Mixin for a stage's result dataclass."""

    exit_code: int = 0

    def summary(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict:
        return jsonable(self)


@dataclass
class Message(Result):
    """The result of a stage whose whole outcome is one sentence (sample, weights)."""
    text: str

    def summary(self) -> str:
        return self.text
