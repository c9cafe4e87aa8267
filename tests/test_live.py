"""make detect SOURCE=...: live input read by OpenCV, as a user runs it.

The source is a real MJPEG stream over HTTP on 127.0.0.1 (dataset/fixtures/mjpeg.py) serving the
val images of conftest's deploy_run, the model that run's ONNX export (so a run starts in a
second: no TensorFlow), the window a real one under Xvfb. A recording is checked by decoding it.
The tiny model's scores are low (0.05-0.1 after 3 epochs), so SCORE=0.05 keeps its boxes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dataset.fixtures.mjpeg import MjpegServer
from helpers import REPO, make

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def onnx_model(exported):
    return exported("onnx")[0]


@pytest.fixture(scope="module")
def frames(deploy_run):
    """The run's val images (160x128 scenes with one face) as BGR frames."""
    import csv
    import cv2
    dataset = deploy_run[0]
    names = sorted({row[0] for row in csv.reader(open(dataset.export / "val.csv"))})
    return [cv2.imread(str(dataset.export / name)) for name in names]


def detect(model, source, *, check=False, timeout=300, **env):
    return make("detect", MODEL=model, SOURCE=source, THREADS=1, SCORE=0.05, check=check, timeout=timeout, **env)


def start_detect(model, source, env=None, **values) -> subprocess.Popen:
    """`make detect` in its own process group, as a terminal runs it (Ctrl-C goes to the group)."""
    command = ["make", "--no-print-directory", "-C", str(REPO), "detect"]
    environ = {**(env or os.environ), "MODEL": str(model), "SOURCE": str(source), "THREADS": "1", "SCORE": "0.05",
               **{k: str(v) for k, v in values.items()}}
    return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def decoded_frames(path: Path) -> int:
    import cv2
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def wait_for_lines(path: Path, count: int, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(lines(path)) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"make detect ended ({process.returncode}) early:\n{process.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} JSON lines in {path} after {timeout}s")


def test_mjpeg_stream_newest_frame_only_stale_frames_dropped(onnx_model, frames, tmp_path):
    """A 30 fps stream, a detector slower than that: frames are dropped and counted, never queued."""
    out = tmp_path / "live.mp4"
    with MjpegServer(frames, fps=30) as server:
        result = detect(onnx_model, server.url, OUT=out, MAX_FRAMES=8, check=True)
    found = lines(tmp_path / "live.jsonl")
    print(result.stdout)
    assert "detect: 8 frames from http://127.0.0.1:" in result.stdout and "ended: MAX_FRAMES=8" in result.stdout
    assert [line["frame"] for line in found] == list(range(8))
    assert decoded_frames(out) == 8                       # the recording holds every processed frame
    indices = [line["source_frame"] for line in found]
    assert indices == sorted(indices) and len(set(indices)) == 8
    assert indices[-1] - indices[0] > 7 and found[-1]["dropped"] > 0   # gaps: the frames dropped
    assert all(line["latency_ms"] < 2000 for line in found)            # never a queue of stale frames
    assert sum(len(line["detections"]) for line in found) > 0
    for d in (d for line in found for d in line["detections"]):
        assert d["class"] in ("mask", "no_mask") and d["score"] >= 0.05 and len(d["box"]) == 4
    assert not list(tmp_path.glob(".*tmp*"))              # the temp recording became OUT


def test_a_stream_that_stops_halfway_ends_the_run_cleanly(onnx_model, frames, tmp_path):
    out = tmp_path / "cut.mp4"
    with MjpegServer(frames, fps=10, stop_after=15) as server:
        result = detect(onnx_model, server.url, OUT=out, check=True)
    processed = len(lines(tmp_path / "cut.jsonl"))
    assert "ended: the stream stopped (no more frames)" in result.stdout
    assert 1 <= processed <= 15 and f"detect: {processed} frames" in result.stdout
    assert decoded_frames(out) == processed


def test_ctrl_c_stops_cleanly_and_the_recording_plays(onnx_model, frames, tmp_path):
    out = tmp_path / "stopped.mp4"
    with MjpegServer(frames, fps=15) as server:
        process = start_detect(onnx_model, server.url, OUT=out)
        wait_for_lines(tmp_path / "stopped.jsonl", 6, process)
        os.killpg(process.pid, signal.SIGINT)   # what Ctrl-C in the terminal does
        stdout, stderr = process.communicate(timeout=120)
    processed = len(lines(tmp_path / "stopped.jsonl"))
    assert "ended: Ctrl-C" in stdout, stdout + stderr
    assert processed >= 6 and f"recorded {processed} annotated frames" in stdout
    assert decoded_frames(out) == processed
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_file_source_gives_every_frame(onnx_model, frames, tmp_path):
    import cv2
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 128))
    for frame in frames[:6]:
        writer.write(frame)
    writer.release()
    result = detect(onnx_model, video, OUT=tmp_path / "annotated.mp4", check=True)
    found = lines(tmp_path / "annotated.jsonl")
    assert [line["source_frame"] for line in found] == list(range(6))
    assert all(line["dropped"] == 0 for line in found) and "ended: end of the file" in result.stdout
    assert decoded_frames(tmp_path / "annotated.mp4") == 6


def test_video_and_the_keras_model_take_the_same_paths(onnx_model, deploy_run, frames, tmp_path):
    """VIDEO= (the batch path) with the export, and SOURCE= with the run's Keras model (RUN=)."""
    import cv2
    dataset, runs_dir, run_dir, _ = deploy_run
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 128))
    for frame in frames[:3]:
        writer.write(frame)
    writer.release()
    make("detect", MODEL=onnx_model, VIDEO=video, SCORE=0.05, OUT=tmp_path / "batch")
    batch = json.loads((tmp_path / "batch" / "detections.json").read_text())["inputs"][str(video)]["frames"]
    assert len(batch) == 3 and decoded_frames(tmp_path / "batch" / "clip.mp4") == 3
    result = make("detect", RUNS=runs_dir, RUN=run_dir, SOURCE=video, SCORE=0.05, OUT=tmp_path / "keras.mp4")
    live = lines(tmp_path / "keras.jsonl")
    assert "inference.h5 (keras)" in result.stdout and len(live) == 3
    for one, other in zip(batch, live):  # the same frames, the same detections, either path
        order = lambda found: sorted(found, key=lambda d: (d["class"], d["box"]))  # noqa: E731
        assert len(one["detections"]) == len(other["detections"])
        for a, b in zip(order(one["detections"]), order(other["detections"])):
            assert a["class"] == b["class"]
            assert abs(a["score"] - b["score"]) <= 1e-3
            assert max(abs(x - y) for x, y in zip(a["box"], b["box"])) <= 1.0


def test_without_out_the_detections_go_to_a_new_detect_folder(onnx_model, deploy_run, frames):
    _, _, run_dir, _ = deploy_run
    before = set((run_dir / "detect").glob("*")) if (run_dir / "detect").exists() else set()
    with MjpegServer(frames, fps=15) as server:
        result = detect(onnx_model, server.url, MAX_FRAMES=2, check=True)
    (folder,) = set((run_dir / "detect").glob("*")) - before
    assert len(lines(folder / "detections.jsonl")) == 2 and str(folder) in result.stdout
    assert "recorded" not in result.stdout


@pytest.mark.parametrize("source, said", [
    ("http://127.0.0.1:9/stream.mjpg", "Tried: FFmpeg http://127.0.0.1:9/stream.mjpg (open timeout 10 s). the server"),
    ("rtsp://127.0.0.1:9/cam", "Tried: FFmpeg rtsp://127.0.0.1:9/cam"),
    ("7", "Tried: V4L2 camera index 7 (/dev/video7); any OpenCV backend, camera index 7. /dev/video7 does not exist"),
    ("/dev/video9", "Tried: V4L2 /dev/video9. /dev/video9 does not exist"),
    ("nothing.mp4", "SOURCE=nothing.mp4: no such file, and not a camera index"),
])
def test_a_source_that_cannot_be_opened_says_what_was_tried(onnx_model, source, said):
    result = detect(onnx_model, source, timeout=120)
    assert result.returncode == 2 and said in result.stderr, result.stderr[-1500:]


def test_a_stream_url_that_serves_no_stream_is_an_error_not_a_hang(onnx_model, frames):
    with MjpegServer(frames) as server:
        result = detect(onnx_model, server.url.replace("stream.mjpg", "nope"), timeout=120)
    assert result.returncode == 2 and "cannot open it" in result.stderr


def test_show_without_a_display_runs_headless(onnx_model, frames, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    with MjpegServer(frames, fps=15) as server:
        process = start_detect(onnx_model, server.url, env=env, SHOW=1, MAX_FRAMES=2, OUT=tmp_path / "h.mp4")
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "no display (DISPLAY is not set): running headless" in stderr and "detect: 2 frames" in stdout


def test_show_under_xvfb_opens_the_live_window_and_q_quits(onnx_model, frames, tmp_path, artifacts, gui_tools):
    from dataset.fixtures.display import VirtualDisplay
    with VirtualDisplay(size=(800, 600)) as screen, MjpegServer(frames, fps=15) as server:
        process = start_detect(onnx_model, server.url, env=screen.env(), SHOW=1, OUT=tmp_path / "shown.mp4")
        try:
            window = screen.wait_for_window(name="maskset detect", timeout=120, process=process)
            wait_for_lines(tmp_path / "shown.jsonl", 4, process)
            x, y, width, height = screen.geometry(window)
            shot = screen.screenshot(artifacts / "live" / "detect_show_xvfb.png")
            pixels = screen.grab()
            screen.key("q", window=window)
            stdout, stderr = process.communicate(timeout=60)
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            raise
    assert process.returncode == 0, stderr
    assert "ended: q pressed" in stdout
    # the window (OpenCV's Qt window: a tool bar above the picture) shows the annotated frames
    assert width >= 160 and height >= 128, (x, y, width, height)
    assert shot.is_file() and pixels[y:y + height, x:x + width].std() > 20
    assert decoded_frames(tmp_path / "shown.mp4") == len(lines(tmp_path / "shown.jsonl"))
