"""Helpers for tests that run stages the way a user does (through make)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from dataset import manifest
from dataset.layout import Dataset

REPO = Path(__file__).resolve().parents[1]
MASKSET = str(Path(sys.executable).parent / "maskset")  # the venv's `maskset` command


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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_by_digest(dataset: Dataset) -> Counter:
    """Every image file in images/ and quarantine/ by content."""
    found = [p for folder in (dataset.images, dataset.quarantine) if folder.is_dir()
             for p in folder.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png")]
    return Counter(digest(p) for p in found)


def assert_consistent(dataset: Dataset, expected: Counter) -> None:
    leftovers = [p for p in dataset.root.rglob(".*.tmp*")]
    assert leftovers == [], leftovers
    state = manifest.state(dataset)
    images = {p.name for p in dataset.image_files()}
    live = {name for name, record in state.items() if record["event"] != manifest.QUARANTINED}
    assert images == live, (sorted(images ^ live))                 # one live record per image
    for name, record in state.items():                            # every record points at its file
        if record["event"] == manifest.QUARANTINED:
            assert (dataset.root / record["moved_to"]).is_file() and name not in images, name
            if record.get("annotation_moved_to"):
                assert (dataset.root / record["annotation_moved_to"]).is_file(), name
    assert files_by_digest(dataset) == expected                    # nothing lost, nothing twice
    stems = {Path(n).stem for n in images}
    assert all(p.stem in stems for p in dataset.annotation_files())  # no VOC file without its image
    assert not dataset.journal.is_dir() or not any(dataset.journal.iterdir())
    from dataset.validate import validate
    report = validate(dataset, progress=False, write_report=False)
    assert report.errors == [], [f.line() for f in report.errors]


def maskset(*args, **env) -> subprocess.CompletedProcess:
    """The venv's `maskset` command, without progress bars; env adds variables (MASKSET_KILL_AT ...)."""
    return subprocess.run([MASKSET, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MASKSET_PROGRESS": "0", **{k: str(v) for k, v in env.items()}})


def write_points(tmp_path: Path, *args) -> list[str]:
    """The write points (dataset.faults) a run of `maskset *args` passes, in order."""
    log = tmp_path / "points.txt"
    log.unlink(missing_ok=True)
    done = maskset(*args, MASKSET_WRITE_POINTS=log)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()
