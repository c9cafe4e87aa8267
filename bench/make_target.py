"""`make <stage>` timed as a whole process, as a user runs it: what the benches that time stages share.

The benches import it as a sibling (bench/ is sys.path[0] when a bench runs as a script)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(target: str, data: Path, *variables: str) -> tuple[float, str]:
    """(seconds, stdout) of `make <target> DATA=<data> <variables>` run from this checkout (its
    code first on PYTHONPATH), progress bars off; a failure ends the bench with make's output."""
    env = {**os.environ, "MASKSET_PROGRESS": "0", "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), target, f"DATA={data}", *variables],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"make {target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout
