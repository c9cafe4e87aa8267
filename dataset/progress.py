"""Progress bars: shown in a terminal, silent in a log.

A non-interactive run (CI, `make ... | tee log`, cron) gets no bar at all: tqdm's carriage-return
updates pile up on one line of a log file. The stage's summary lines are printed as always.
MASKSET_PROGRESS=1 forces bars on, =0 off.
"""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def wanted(enabled: bool = True) -> bool:
    """Whether a bar should show: the caller allows it and stderr is a terminal."""
    forced = os.environ.get("MASKSET_PROGRESS", "").strip().lower()
    if forced in ("0", "no", "false", "off"):
        return False
    if forced in ("1", "yes", "true", "on"):
        return enabled
    return enabled and sys.stderr.isatty()


def bar(iterable=None, *, desc: str, total=None, unit: str = "img", enabled: bool = True, **options):
    """A tqdm bar on stderr, disabled unless wanted(enabled)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not wanted(enabled),
                file=sys.stderr, dynamic_ncols=True, **options)
