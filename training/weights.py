"""`make weights`: download the COCO-pretrained ResNet50 RetinaNet weights keras-retinanet published
(release 0.5.1, resnet50_coco_best_v2.1.0.h5), check them, and cache them for WEIGHTS=coco/auto.

No checksum for this file is published (not in the release, keras-retinanet's README or code),
so the check is: the size is in the known range, the file is HDF5 with keras-retinanet's
layers in it, and, with --sha256 (or a sha256 recorded beside the cached file on its first
download), its sha256 matches.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from dataset import atomic
from dataset.manifest import sha256_file
from dataset.errors import MasksetError

log = logging.getLogger(__name__)

URL = "https://github.com/fizyr/keras-retinanet/releases/download/0.5.1/resnet50_coco_best_v2.1.0.h5"
FILENAME = "resnet50_coco_best_v2.1.0.h5"
# GitHub lists the asset as 146 MB; allow a margin, since the exact byte count is not published.
SIZE_RANGE = (140_000_000, 160_000_000)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
EXPECTED_LAYERS = ("classification_submodel", "regression_submodel", "P3", "res5c_branch2c")


def default_cache() -> Path:
    """MASKSET_WEIGHTS_CACHE, else $XDG_CACHE_HOME/maskset, else ~/.cache/maskset."""
    if os.environ.get("MASKSET_WEIGHTS_CACHE"):
        return Path(os.environ["MASKSET_WEIGHTS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "maskset"


def cached_file(cache: Path | None = None) -> Path | None:
    path = Path(cache or default_cache()) / FILENAME
    return path if path.is_file() else None


def check_file(path: Path, sha256: str | None, size_range=SIZE_RANGE) -> str:
    """Raise MasksetError naming what is wrong with a weights file; returns its sha256."""
    size = path.stat().st_size
    if not size_range[0] <= size <= size_range[1]:
        raise MasksetError(f"{path}: {size} bytes, expected {size_range[0]}-{size_range[1]} for {FILENAME}: "
                           f"the download is truncated or not the weights. Run `make weights` again.")
    with open(path, "rb") as handle:
        if handle.read(8) != HDF5_SIGNATURE:
            raise MasksetError(f"{path}: not an HDF5 file (an error page?). Check WEIGHTS_URL and retry.")
    import h5py
    with h5py.File(path, "r") as h5:
        names = set(h5.get("model_weights", h5).keys())
    missing = [n for n in EXPECTED_LAYERS if n not in names]
    if missing:
        raise MasksetError(f"{path}: HDF5 but without RetinaNet layers {missing}: not {FILENAME}.")
    digest = sha256_file(path)
    if sha256 and digest.lower() != sha256.lower():
        raise MasksetError(f"{path}: sha256 {digest} does not match the expected {sha256}. "
                           f"The file is corrupt or not the published weights; delete it and retry.")
    return digest


def download(url: str, destination: Path, timeout: float = 30.0) -> None:
    """Stream url to destination through a temp file (renamed only when complete), with progress."""
    import requests
    from dataset import progress as progress_bars
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = requests.get(url, stream=True, timeout=timeout, allow_redirects=True)
    except requests.RequestException as error:
        raise MasksetError(f"cannot reach {url} ({type(error).__name__}): are you offline? Connect and "
                           f"run `make weights` again, or copy {FILENAME} to {destination} by hand.") from None
    with response:
        if response.status_code != 200:
            raise MasksetError(f"{url}: HTTP {response.status_code}. Check WEIGHTS_URL= or try again later.")
        total = int(response.headers.get("content-length") or 0) or None
        try:
            with atomic.writing(destination) as tmp, open(tmp, "wb") as out, progress_bars.bar(
                    total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                for block in response.iter_content(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        except requests.RequestException as error:
            raise MasksetError(f"{url}: download broke off ({type(error).__name__}); run `make weights` "
                               f"again.") from None


def fetch(url: str = URL, cache: Path | None = None, sha256: str | None = None,
          size_range=SIZE_RANGE) -> Path:
    """The checked weights file in the cache, downloading it if needed."""
    cache = Path(cache or default_cache())
    path = cache / FILENAME
    recorded = path.with_name(FILENAME + ".sha256")
    expected = sha256 or (recorded.read_text().split()[0] if recorded.is_file() else None)
    if path.is_file():
        try:
            check_file(path, expected, size_range)
            return path
        except MasksetError as error:
            log.warning("cached file fails its check (%s); downloading again", error)
            atomic.move_file(path, path.with_name(path.name + ".bad"))  # kept, never deleted
    download(url, path)
    try:
        digest = check_file(path, expected, size_range)
    except MasksetError:
        atomic.move_file(path, path.with_name(path.name + ".bad"))
        raise
    atomic.write_text(recorded, f"{digest}  {FILENAME}\n")
    return path
