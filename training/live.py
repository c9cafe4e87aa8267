"""`make detect SOURCE=0|/dev/videoN|rtsp://..|http://../stream.mjpg|file.mp4 [SHOW=1] [OUT=file.mp4]`:
detection on a camera, a stream or a video, frame by frame, as it comes.

* OpenCV reads the frames (V4L2 for cameras, FFmpeg for streams and files).
* A live source (a camera, /dev/videoN, a URL) never falls behind: a reader thread keeps only
  the newest frame, and frames the detector had no time for are dropped (and counted), never
  queued. A file is read in order, every frame.
* Each frame: the model's detections (any runtime: InferenceModel.predict), boxes drawn with
  class and score, an FPS overlay; one JSON line (`frame, source_frame, time, latency_ms, dropped,
  detections`), flushed as it is written.
* OUT=file.mp4 records the annotated frames into a temp file beside it (the name keeps .mp4:
  OpenCV picks the container from it) that becomes OUT when the run ends, also on Ctrl-C or
  SIGTERM, so the recorded file plays. (A kill -9 leaves only the temp file.)
* SHOW=1 with a display: a live window; `q` (or Esc, or closing the window) quits. Without a
  display the run is headless, with a warning.
* The source stopping (camera unplugged, stream gone, end of file) ends the run cleanly with what
  was processed. A source that cannot be opened is an error saying what was tried.

The core never prints: run_live returns a LiveResult; warnings go through logging.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataset import atomic, jsonl
from dataset.errors import MasksetError
from dataset.results import Result

log = logging.getLogger(__name__)

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")
OPEN_TIMEOUT_MS = 10000   # a server that never answers cannot hang the run
READ_TIMEOUT_MS = 10000
WINDOW = "maskset detect"
FPS_WINDOW = 30           # frames the FPS overlay averages over
RATE_FRAMES = 5           # a live recording's frame rate is measured over the first frames
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


# -- sources ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSpec:
    text: str
    kind: str          # camera, device, stream, file
    target: object     # an index, a device path, a URL, a file path
    live: bool


def parse_source(text: str) -> SourceSpec:
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return SourceSpec(text, "camera", int(text), True)
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec(text, "device", text, True)
    if text.lower().startswith(LIVE_SCHEMES):
        return SourceSpec(text, "stream", text, True)
    return SourceSpec(text, "file", text, False)


def open_capture(spec: SourceSpec):
    """A cv2.VideoCapture reading the source, or a MasksetError naming every way tried and why."""
    import cv2
    tried = []

    def attempt(target, backend, label, params=()):
        capture = cv2.VideoCapture(target, backend, list(params)) if params else cv2.VideoCapture(target, backend)
        if capture.isOpened():
            return capture
        capture.release()
        tried.append(label)
        return None

    if spec.kind == "camera":
        device = f"/dev/video{spec.target}"
        capture = (attempt(spec.target, cv2.CAP_V4L2, f"V4L2 camera index {spec.target} ({device})")
                   or attempt(spec.target, cv2.CAP_ANY, f"any OpenCV backend, camera index {spec.target}"))
        why = (f"{device} does not exist: no camera is attached (or it is not passed into this container)"
               if not os.path.exists(device) else
               f"{device} exists but cannot be opened: another program may be using it, or this user is not "
               f"in the 'video' group")
    elif spec.kind == "device":
        capture = attempt(spec.target, cv2.CAP_V4L2, f"V4L2 {spec.target}")
        why = (f"{spec.target} does not exist" if not os.path.exists(spec.target) else
               f"{spec.target} exists but V4L2 cannot open it (in use, no permission, or not a capture device)")
    elif spec.kind == "stream":
        timeouts = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS)
        capture = attempt(spec.target, cv2.CAP_FFMPEG,
                          f"FFmpeg {spec.target} (open timeout {OPEN_TIMEOUT_MS // 1000} s)", timeouts)
        why = ("the server did not answer, refused the connection, or did not serve a video stream FFmpeg "
               "reads (an MJPEG stream over HTTP, RTSP, ...); check the URL in a browser or VLC")
    else:
        path = Path(spec.target)
        if not path.is_file():
            raise MasksetError(f"SOURCE={spec.text}: no such file, and not a camera index (0, 1, ...), "
                               f"/dev/videoN or a stream URL (rtsp://, http://, https://).")
        capture = (attempt(str(path), cv2.CAP_FFMPEG, f"FFmpeg {path}")
                   or attempt(str(path), cv2.CAP_ANY, f"any OpenCV backend, {path}"))
        why = "OpenCV cannot decode it; convert it to .mp4 (H.264) and retry"
    if capture is None:
        raise MasksetError(f"SOURCE={spec.text}: cannot open it. Tried: {'; '.join(tried)}. {why}.")
    return capture


@dataclass
class Frame:
    image: np.ndarray
    index: int        # the source's frame number; gaps are the frames dropped
    captured: float   # time.monotonic() when it was read


class FrameSource:
    """Frames of a SOURCE. Live ones come through a reader thread that keeps only the newest."""

    def __init__(self, text: str, capture=None, live: bool | None = None):
        self.spec = parse_source(text)
        self.live = self.spec.live if live is None else live
        self.capture = capture if capture is not None else open_capture(self.spec)
        fps = self.capture.get(5)  # cv2.CAP_PROP_FPS
        self.fps = fps if fps and 0 < fps < 1000 else None
        self.opened = time.monotonic()
        self.read_count = 0      # frames read from the source
        self.delivered = 0       # frames handed to the loop
        self.ended = False
        self.end_reason = ""
        self._latest: Frame | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        if self.live:
            self._thread = threading.Thread(target=self._read_newest, name="frame-reader", daemon=True)
            self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames read but replaced by a newer one before the loop took them."""
        with self._changed:
            return self.read_count - self.delivered - (1 if self._latest is not None else 0)

    def _read_newest(self) -> None:
        while not self._stop.is_set():
            ok, image = self.capture.read()
            with self._changed:
                if not ok:
                    self.ended, self.end_reason = True, "the stream stopped (no more frames)"
                    self._changed.notify_all()
                    return
                self._latest = Frame(image, self.read_count, time.monotonic())
                self.read_count += 1
                self._changed.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame (live: the newest not yet taken); None once the source has ended, or
        when no frame came within `timeout` seconds (then `ended` is still False)."""
        if not self.live:
            ok, image = self.capture.read()
            if not ok:
                self.ended, self.end_reason = True, "end of the file"
                return None
            frame = Frame(image, self.read_count, time.monotonic())
            self.read_count += 1
            self.delivered += 1
            return frame
        with self._changed:
            self._changed.wait_for(lambda: self._latest is not None or self.ended or self._stop.is_set(), timeout)
            frame, self._latest = self._latest, None
            if frame is not None:
                self.delivered += 1
            return frame

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                # blocked in read() on a stalled stream: releasing the capture under it crashes
                # OpenCV; the daemon thread ends with the process
                return
        self.capture.release()


# -- recording -------------------------------------------------------------------------------------
class Recorder:
    """cv2.VideoWriter into atomic.writing(OUT)'s temp file (it keeps OUT's extension); OUT appears
    when the run ends. A live source's frame rate is measured over the first frames, so the file
    plays at about the speed things happened; a file keeps its own rate."""

    def __init__(self, path: Path, tmp: Path, fps: float | None):
        self.path, self.tmp, self.fps = Path(path), Path(tmp), fps
        self.pending: list[tuple[np.ndarray, float]] = []
        self.writer = None
        self.frames = 0

    def write(self, image: np.ndarray, stamp: float) -> None:
        if self.writer is not None:
            self.writer.write(image)
            self.frames += 1
            return
        self.pending.append((image, stamp))
        if self.fps is not None or len(self.pending) >= RATE_FRAMES:
            self._open()

    def _open(self) -> None:
        import cv2
        fps = self.fps
        if fps is None:
            span = self.pending[-1][1] - self.pending[0][1]
            fps = (len(self.pending) - 1) / span if span > 0 else 10.0
        self.fps = fps = float(min(60.0, max(1.0, fps)))
        height, width = self.pending[0][0].shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.path.suffix.lower(), "mp4v"))
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, fps, (width, height))
        if not self.writer.isOpened():
            kind = self.path.suffix or "file without an extension"
            raise MasksetError(f"OUT={self.path}: OpenCV cannot write a {kind} video here; use .mp4 or .avi.")
        for image, _ in self.pending:
            self.writer.write(image)
            self.frames += 1
        self.pending = []

    def finish(self) -> int:
        """Write what is held back and close the file; the frames it holds."""
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()
        return self.frames


class _NothingRecorded(Exception):
    """Leaves atomic.writing without renaming: no frame, no file."""


# -- the loop --------------------------------------------------------------------------------------
def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def overlay(canvas: np.ndarray, text: str) -> np.ndarray:
    """The FPS line in the top-left corner, white on a black outline (readable on any picture)."""
    import cv2
    scale = max(0.4, canvas.shape[1] / 800)
    origin = (8, int(24 * scale) + 4)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def default_paths(model, out: Path | None) -> tuple[Path | None, Path]:
    """(the recording, the detections' JSON Lines): beside OUT (same name, .jsonl), or in a new
    <run>/detect/<time>/ folder."""
    from .detect import new_output_folder
    if out is not None:
        out = Path(out)
        if out.suffix.lower() not in FOURCC:
            raise MasksetError(f"OUT={out}: with SOURCE=, OUT is the video to record: a .mp4 (or .avi, .mkv, "
                               f".mov) file.")
        if out.is_dir():
            raise MasksetError(f"OUT={out}: is a folder; with SOURCE=, OUT is the video file to record.")
        return out, out.with_suffix(".jsonl")
    folder = new_output_folder(model)
    return None, folder / "detections.jsonl"


def run_live(model, source: FrameSource, out: Path | None = None, show: bool = False,
             detections: Path | None = None, score: float = 0.5, max_frames: int | None = None,
             on_frame=None) -> "LiveResult":
    """Detect on every frame the source hands over until it ends, q, Ctrl-C/SIGTERM or max_frames."""
    from .detect import detect_array, draw
    out, default_jsonl = default_paths(model, out)
    detections = Path(detections) if detections else default_jsonl
    if show and not display_available():
        log.warning("SHOW=1 but there is no display (DISPLAY is not set): running headless, without a window.")
        show = False
    result = LiveResult(source=source.spec.text, model=model.source, live=source.live,
                        out=None, detections=detections)
    stop = {"why": ""}
    on_main_thread = threading.current_thread() is threading.main_thread()

    def on_signal(signum, _frame):  # finish this frame, keep the recording
        stop["why"] = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"

    # Ctrl-C and SIGTERM end the loop after the frame in hand (installed explicitly: a process
    # started in the background by a script inherits SIGINT ignored)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if on_main_thread else {}
    stamps: deque = deque(maxlen=FPS_WINDOW)
    started = time.monotonic()
    import cv2
    recording = atomic.writing(out) if out is not None else None  # a temp name keeping OUT's extension
    recorder = Recorder(out, recording.__enter__(), None if source.live else source.fps) if recording else None
    lines = None
    try:
        detections.parent.mkdir(parents=True, exist_ok=True)
        lines = open(detections, "w", encoding="utf-8")
        while not stop["why"]:
            if max_frames is not None and result.processed >= max_frames:
                stop["why"] = f"MAX_FRAMES={max_frames}"
                break
            frame = source.read(timeout=0.25)  # a stalled stream: look at Ctrl-C 4 times a second
            if frame is None:
                if source.ended:
                    stop["why"] = source.end_reason or "the source ended"
                continue
            began = time.perf_counter()
            found = detect_array(model, frame.image, score=score)
            detected = time.perf_counter()
            stamps.append(time.monotonic())
            fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
            dropped = source.dropped if source.live else 0
            text = (f"{fps:.1f} FPS" if fps else "-- FPS") + (f"  dropped {dropped}" if source.live else "")
            annotated = overlay(draw(frame.image, found, model.classes), text)
            if recorder is not None:
                recorder.write(annotated, time.monotonic())
            lines.write(jsonl.dumps({
                "frame": result.processed, "source_frame": frame.index,
                "time": round(frame.captured - source.opened, 3) if source.live else round(
                    frame.index / (source.fps or 25.0), 3),
                "latency_ms": round((time.monotonic() - frame.captured) * 1000, 1),
                "dropped": dropped, "detections": found}) + "\n")
            lines.flush()
            if show:
                cv2.imshow(WINDOW, annotated)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), ord("Q"), 27):
                    stop["why"] = "q pressed"
                elif cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    stop["why"] = "the window was closed"
            result.processed += 1
            result.detections_count += len(found)
            result.detect_ms.append((detected - began) * 1000)
            result.frame_ms.append((time.perf_counter() - began) * 1000)
            if on_frame is not None:
                on_frame(result, annotated)
    except KeyboardInterrupt:
        stop["why"] = "Ctrl-C"
    finally:
        # a second Ctrl-C while the recording is closed must not cut the rename short
        if on_main_thread:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            result.seconds = time.monotonic() - started
            result.end = stop["why"] or "stopped by an error"
            source.close()
            result.read = source.read_count
            result.dropped = max(0, source.read_count - result.processed) if source.live else 0
            if lines is not None:
                lines.close()
            if show:
                cv2.destroyAllWindows()
            if recorder is not None:
                result.recorded = recorder.finish()
                if result.recorded:           # what was recorded plays, whatever ended the run
                    recording.__exit__(None, None, None)
                    result.out = out
                else:                         # no frame: no file (the temp file goes)
                    nothing = _NothingRecorded()
                    recording.__exit__(_NothingRecorded, nothing, None)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return result


@dataclass
class LiveResult(Result):
    source: str
    model: str
    live: bool
    out: Path | None
    detections: Path
    processed: int = 0
    read: int = 0
    dropped: int = 0
    recorded: int = 0
    detections_count: int = 0
    seconds: float = 0.0
    end: str = ""
    detect_ms: list = field(default_factory=list)
    frame_ms: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def median(self, values: list) -> float | None:
        return float(np.median(values)) if values else None

    def summary(self) -> str:
        how = "live: the newest frame each time" if self.live else "every frame"
        lines = [f"detect: {self.processed} frames from {self.source} ({how}) with {self.model} in "
                 f"{self.seconds:.1f}s, {self.fps:.2f} FPS; ended: {self.end}"]
        if self.live:
            lines.append(f"  read {self.read} frames, dropped {self.dropped} stale ones (never queued)")
        if self.processed:
            lines.append(f"  per frame: detection {self.median(self.detect_ms):.0f} ms, the whole loop "
                         f"{self.median(self.frame_ms):.0f} ms (medians)")
        lines.append(f"  {self.detections_count} detections, one JSON line per frame: {self.detections}")
        if self.out is not None:
            lines.append(f"  recorded {self.recorded} annotated frames: {self.out}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"source": self.source, "model": self.model, "live": self.live, "out": str(self.out) if self.out else None,
                "detections": str(self.detections), "processed": self.processed, "read": self.read,
                "dropped": self.dropped, "recorded": self.recorded, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 3), "end": self.end, "median_detect_ms": self.median(self.detect_ms),
                "median_frame_ms": self.median(self.frame_ms)}
