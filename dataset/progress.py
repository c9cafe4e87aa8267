"""Progress bars: shown in a terminal, silent in a log.

A non-interactive run (CI, `make ... | tee log`, cron) gets no bar at all: tqdm's carriage-return
updates pile up on one line of a log file. The stage's summary lines are printed as always.
MASKSET_PROGRESS=1 forces bars on, =0 off.
"""
from __future__ import annotations

import os
import sys


def wanted(enabled: bool = True) -> bool:
    """Whether a bar should show: the caller allows it and stderr is a terminal."""
    forced = os.environ.get("MASKSET_PROGRESS", "").strip().lower()
    if forced in ("0", "no", "false", "off"):
        return False
    if forced in ("1", "yes", "true", "on"):
        return enabled
    return enabled and sys.stderr.isatty()


class _Silent:
    """What bar() gives when no bar shows: it iterates and counts like tqdm and ignores the rest,
    so a run in a log (or over unchanged files) does not even import tqdm."""

    def __init__(self, iterable=None, total=None):
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        self.n += n

    def __getattr__(self, name):  # set_postfix, refresh, close ...: nothing to draw
        return lambda *args, **kwargs: None


def bar(iterable=None, *, desc: str, total=None, unit: str = "img", enabled: bool = True, **options):
    """A tqdm bar on stderr, or a silent stand-in unless wanted(enabled)."""
    if not wanted(enabled):
        return _Silent(iterable, total)
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, **options)
