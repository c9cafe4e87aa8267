"""Write points, for the kill tests: every place a stage changes the dataset calls point().

MASKSET_KILL_AT=N kills the process (SIGKILL, as kill -9 does; MASKSET_KILL_SIGNAL=INT sends
Ctrl-C's SIGINT instead) when it reaches its N-th write point; MASKSET_WRITE_POINTS=<file> appends the name of each point reached to that file, so a
test can count them and then kill a run at every one (tests/test_kill.py). With neither set,
which is always the case outside the tests, point() returns at once.
"""
from __future__ import annotations

import os
import signal
import threading

_KILL_AT = int(os.environ.get("MASKSET_KILL_AT") or 0)
_LOG = os.environ.get("MASKSET_WRITE_POINTS") or None
_SIGNAL = getattr(signal, "SIG" + os.environ.get("MASKSET_KILL_SIGNAL", "KILL").upper(), signal.SIGKILL)
_reached = 0
ACTIVE = bool(_KILL_AT or _LOG)  # hot paths skip even naming a point when False
_COUNTING = threading.Lock()


def point(name: str) -> None:
    global _reached
    if not ACTIVE:
        return
    with _COUNTING:  # stages write from a few threads at once (import): each point counts once
        _reached += 1
        reached = _reached
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as handle:
                handle.write(f"{reached} {name}\n")
    if reached == _KILL_AT:
        os.kill(os.getpid(), _SIGNAL)
