"""Helpers for tests that run stages the way a user does (through make)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(*args: str, data: Path | None = None, check: bool = True, timeout: int = 600, **env_extra):
    """Run a make target as a user would; returns the CompletedProcess (text output)."""
    command = ["make", "--no-print-directory", "-C", str(REPO), *args]
    if data is not None:
        command.append(f"DATA={data}")
    env = {**os.environ, **{k: str(v) for k, v in env_extra.items()}}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result
