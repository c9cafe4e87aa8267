"""make weights: download, check and cache the COCO weights; here against a local HTTP server."""
from __future__ import annotations

import hashlib
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset.errors import MasksetError
from helpers import make
from training import weights

SMALL = (1_000, 10_000_000)  # our stand-in file is small; the real range is checked separately


def retinanet_like_h5(path: Path, layers=weights.EXPECTED_LAYERS) -> Path:
    """An HDF5 file laid out like a saved keras-retinanet model (model_weights/<layer>/...)."""
    with h5py.File(path, "w") as h5:
        group = h5.create_group("model_weights")
        for name in layers:
            group.create_group(name).create_dataset("kernel", data=np.arange(2000, dtype=np.float32))
    return path


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 (ephemeral port) serving tmp_path/site; counts GETs."""
    site = tmp_path / "site"
    site.mkdir()
    hits = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_fetch_downloads_checks_caches_and_records_the_sha256(server, tmp_path):
    site, base, hits = server
    served = retinanet_like_h5(site / weights.FILENAME)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    path = weights.fetch(f"{base}/{weights.FILENAME}", cache, sha256=digest, size_range=SMALL)
    assert path == cache / weights.FILENAME and path.read_bytes() == served.read_bytes()
    assert (cache / (weights.FILENAME + ".sha256")).read_text().split()[0] == digest
    assert weights.cached_file(cache) == path
    weights.fetch(f"{base}/{weights.FILENAME}", cache, size_range=SMALL)
    assert len(hits) == 1  # cached: not downloaded twice
    assert not list(cache.glob(".*.part"))


def test_a_wrong_sha256_is_refused_and_the_file_kept_aside(server, tmp_path):
    site, base, _ = server
    retinanet_like_h5(site / weights.FILENAME)
    cache = tmp_path / "cache"
    with pytest.raises(MasksetError, match="does not match the expected 00ff"):
        weights.fetch(f"{base}/{weights.FILENAME}", cache, sha256="00ff" * 16, size_range=SMALL)
    assert weights.cached_file(cache) is None
    assert (cache / (weights.FILENAME + ".bad")).is_file()  # never deleted


def test_a_file_without_retinanet_layers_is_refused(server, tmp_path):
    site, base, _ = server
    retinanet_like_h5(site / weights.FILENAME, layers=("dense_1", "dense_2"))
    with pytest.raises(MasksetError, match="without RetinaNet layers"):
        weights.fetch(f"{base}/{weights.FILENAME}", tmp_path / "cache", size_range=SMALL)


def test_make_weights_refuses_a_truncated_download(server, tmp_path):
    site, base, _ = server
    retinanet_like_h5(site / weights.FILENAME)  # far below the real file's ~146 MB
    result = make("weights", WEIGHTS_URL=f"{base}/{weights.FILENAME}", WEIGHTS_CACHE=tmp_path / "c", check=False)
    assert result.returncode == 2
    assert "truncated" in result.stderr and weights.FILENAME in result.stderr


def test_make_weights_reports_http_errors(server, tmp_path):
    _, base, _ = server
    result = make("weights", WEIGHTS_URL=f"{base}/missing.h5", WEIGHTS_CACHE=tmp_path / "c", check=False)
    assert result.returncode == 2 and "HTTP 404" in result.stderr


def test_make_weights_fails_clearly_offline(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: what "offline" looks like to requests
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = make("weights", WEIGHTS_URL=f"http://127.0.0.1:{port}/{weights.FILENAME}",
                  WEIGHTS_CACHE=tmp_path / "c", check=False)
    assert result.returncode == 2
    assert "are you offline?" in result.stderr and "make weights" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "c" / weights.FILENAME).exists()


def test_the_default_url_is_keras_retinanets_051_release():
    assert weights.URL == ("https://github.com/fizyr/keras-retinanet/releases/download/0.5.1/"
                           "resnet50_coco_best_v2.1.0.h5")
