"""Drive real GUI programs in tests: a private Xvfb display, xdotool input, screenshots.

Small API (used by tests/test_annotate_gui.py; reuse it for any other labelImg test):

    from gui import (VirtualDisplay, LabelImgWindow, start_make, finish, marker_image,
                     find_marker)                           # tests/ is on sys.path under pytest

    with VirtualDisplay(size=(1280, 900)) as screen:        # Xvfb -displayfd: a free display number
        proc = start_make(screen, "annotate", data, "ALL=1")  # or Popen([...], env=screen.env())
        window = screen.wait_for_window(name="labelImg", timeout=30, process=proc)
        screen.resize(window, 1200, 850)
        shot = screen.screenshot(path)                      # PNG of the whole screen -> Path
        pixels = screen.grab()                              # the same as an RGB numpy array
        marker = find_marker(pixels, (255, 0, 255))         # .x .y .width .height of a colour patch
        marker = screen.settled_marker((255, 0, 255))       # the same, once painting has settled
        screen.drag((x0, y0), (x1, y1))                     # press, move in steps, release
        screen.click(x, y); screen.key("ctrl+s"); screen.type("no_mask")
        screen.wheel(x, y, up=True, clicks=2, modifier="ctrl")   # scroll / ctrl+wheel zoom
        screen.wait_until(lambda: path.exists(), timeout=10, what="the XML to be saved")
        output = finish(proc)                               # make's output once it has ended

labelImg itself, as a person drives it (see LabelImgWindow for the whole list):

        marker_image(dataset.images / "a.jpg", (640, 480))  # test images with colour markers
        window = LabelImgWindow.wait(screen, process=proc)
        window.fit(); to_screen = window.locate_image((640, 480))
        window.draw_box(to_screen, (100, 80), (250, 200)); window.pick_class("mask")
        window.next_image(); window.require_alive("next image"); window.close()

Everything runs on the test's own display (never the user's), so tests can run in parallel.
There is no window manager: pass `window=` to `key`/`type` (or call `focus`) to give a window the
keyboard focus first; a dialog a program opens takes the focus itself.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED = ("Xvfb", "xdotool")  # screenshots: Pillow's ImageGrab over XCB
# scripts/check_system.py is the one list of system packages; `make test` installs from it
INSTALL_HINT = "they come from scripts/check_system.py's list: `make test` installs them as root, " \
               "or run `make check-system` for the apt-get line"


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED if shutil.which(tool) is None]


class GuiError(AssertionError):
    """A GUI step did not happen (window never appeared, file never saved ...)."""


class VirtualDisplay:
    """A private Xvfb server; a context manager that stops it on exit."""

    def __init__(self, size=(1280, 900), depth=24):
        self.size, self.depth = size, depth
        self.display: str | None = None
        self._server: subprocess.Popen | None = None

    # -- lifetime -------------------------------------------------------------------------------
    def start(self) -> "VirtualDisplay":
        missing = missing_tools()
        if missing:
            raise GuiError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        read_fd, write_fd = os.pipe()
        width, height = self.size
        self._server = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{self.depth}",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:  # Xvfb writes the display number once it is ready
            number = pipe.readline().strip()
        if not number:
            self.stop()
            raise GuiError("Xvfb did not start (no display number on -displayfd)")
        self.display = f":{number}"
        return self

    def stop(self) -> None:
        if self._server and self._server.poll() is None:
            self._server.terminate()
            try:
                self._server.wait(5)
            except subprocess.TimeoutExpired:
                self._server.kill()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self, **extra) -> dict:
        """The environment for a program on this display."""
        return {**os.environ, "DISPLAY": self.display, **{k: str(v) for k, v in extra.items()}}

    # -- input ----------------------------------------------------------------------------------
    def xdotool(self, *args) -> str:
        result = subprocess.run(["xdotool", *map(str, args)], env=self.env(),
                                capture_output=True, text=True, timeout=30)
        if result.returncode != 0 and "search" not in args[:1]:
            raise GuiError(f"xdotool {' '.join(map(str, args))}: {result.stderr.strip()}")
        return result.stdout.strip()

    def move(self, x, y) -> None:
        self.xdotool("mousemove", "--sync", int(x), int(y))

    def click(self, x, y, button=1, repeat=1) -> None:
        self.move(x, y)
        self.xdotool("click", "--repeat", repeat, button)

    def drag(self, start, end, steps=12, pause=0.02) -> None:
        """Press at start, move to end in steps (so the program sees motion), release."""
        self.move(*start)
        self.xdotool("mousedown", 1)
        for i in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * i / steps
            y = start[1] + (end[1] - start[1]) * i / steps
            self.move(round(x), round(y))
            time.sleep(pause)
        self.xdotool("mouseup", 1)

    def wheel(self, x, y, up=True, clicks=1, modifier: str | None = None) -> None:
        """Mouse wheel at (x, y): buttons 4 (up) / 5 (down), optionally with a key held (ctrl)."""
        self.move(x, y)
        if modifier:
            self.xdotool("keydown", modifier)
        try:
            self.xdotool("click", "--repeat", clicks, "--delay", 80, 4 if up else 5)
        finally:
            if modifier:
                self.xdotool("keyup", modifier)

    def key(self, *keys, window: str | None = None) -> None:
        """Key presses in xdotool names: "ctrl+s", "Return", "d"."""
        if window:
            self.focus(window)
        self.xdotool("key", "--delay", 60, *keys)

    def type(self, text: str, window: str | None = None) -> None:
        if window:
            self.focus(window)
        self.xdotool("type", "--delay", 40, text)

    # -- windows --------------------------------------------------------------------------------
    def windows(self, pid: int | None = None, name: str | None = None) -> list[str]:
        args = ["search", "--onlyvisible"]
        if pid is not None:
            args += ["--pid", pid]
        args += ["--name", name or "."]
        out = self.xdotool(*args)
        return out.split() if out else []

    def wait_for_window(self, pid=None, name=None, timeout=30.0, process=None) -> str:
        """The id of the first visible window matching pid/name; fails if `process` dies first."""
        found: list[str] = []

        def ready():
            if process is not None and process.poll() is not None:
                raise GuiError(f"the program exited ({process.returncode}) before its window showed")
            found[:] = self.windows(pid=pid, name=name)
            return bool(found)

        self.wait_until(ready, timeout=timeout, what=f"a window (pid={pid}, name={name!r})")
        return found[-1]

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        """(x, y, width, height) of a window on the screen."""
        values = {}
        for line in self.xdotool("getwindowgeometry", "--shell", window).splitlines():
            key, _, value = line.partition("=")
            values[key] = int(value) if value.lstrip("-").isdigit() else value
        return values["X"], values["Y"], values["WIDTH"], values["HEIGHT"]

    def resize(self, window: str, width: int, height: int, x: int = 0, y: int = 0) -> None:
        self.xdotool("windowmove", "--sync", window, x, y)
        self.xdotool("windowsize", "--sync", window, width, height)

    def focus(self, window: str) -> None:
        """Give the window the keyboard focus (there is no window manager to do it)."""
        self.xdotool("windowfocus", "--sync", window)

    # -- pictures -------------------------------------------------------------------------------
    def _image(self):
        """The whole screen as a Pillow image, read over the X connection (Pillow's XCB
        support): no screenshot program to install."""
        from PIL import ImageGrab
        return ImageGrab.grab(xdisplay=self.display).convert("RGB")

    def screenshot(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._image().save(path)
        return path

    def grab(self) -> np.ndarray:
        """The screen now, as an H x W x 3 uint8 RGB array."""
        return np.asarray(self._image())

    def settled_marker(self, rgb, timeout=10.0) -> "Marker":
        """find_marker on the screen, once two screenshots in a row agree (painting is done)."""
        seen: list = []

        def settled():
            try:
                marker = find_marker(self.grab(), rgb)
            except GuiError:
                seen.clear()
                return False
            seen.append(marker)
            return len(seen) > 1 and seen[-2] == marker

        self.wait_until(settled, timeout=timeout, what=f"marker {rgb} to show, settled")
        return seen[-1]

    # -- waiting --------------------------------------------------------------------------------
    @staticmethod
    def wait_until(condition, timeout=10.0, interval=0.1, what="the condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise GuiError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)


# magenta top-left, cyan bottom-right, yellow centre: colours no labelImg widget is made of
MARKER_A, MARKER_B, MARKER_C = (255, 0, 255), (0, 255, 255), (255, 255, 0)
MARKER_SIDE = 20


def marker_centres(size) -> tuple[tuple[int, int], ...]:
    """Centres of the markers A, B, C in image coordinates (pixel edges: 30 = between 29 and 30)."""
    width, height = size
    return (30, 30), (width - 30, height - 30), (width // 2, height // 2)


def marker_image(path: Path | str, size=(640, 480), background=(128, 128, 128)) -> Path:
    """An image with three square colour markers (see marker_centres) on a grey background.

    Finding A and B on the screen gives the image-to-screen mapping (`LabelImgWindow.locate_image`);
    C, in the middle, stays in view when the image is zoomed and scrolled around its centre.
    """
    from PIL import Image, ImageDraw
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    half = MARKER_SIDE // 2
    for (x, y), colour in zip(marker_centres(size), (MARKER_A, MARKER_B, MARKER_C)):
        draw.rectangle([x - half, y - half, x + half - 1, y + half - 1], fill=colour)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95)
    return path


@dataclass(frozen=True)
class Marker:
    x: float       # centre, screen coordinates
    y: float
    width: int     # extent on the screen, in screen pixels
    height: int


def find_marker(pixels: np.ndarray, rgb, tolerance=60, min_pixels=4) -> Marker:
    """The largest patch of colour `rgb` on the screen: its centre and size."""
    import cv2
    distance = np.abs(pixels.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=2)
    mask = (distance <= tolerance).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        raise GuiError(f"marker colour {rgb} is not on the screen")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < min_pixels:
        raise GuiError(f"marker colour {rgb}: only {stats[largest, cv2.CC_STAT_AREA]} pixels")
    x, y = centroids[largest]
    # + 0.5: from a pixel's index to the centre of that screen pixel
    return Marker(float(x) + 0.5, float(y) + 0.5,
                  int(stats[largest, cv2.CC_STAT_WIDTH]), int(stats[largest, cv2.CC_STAT_HEIGHT]))


def start_make(screen: VirtualDisplay, target: str, data: Path, *make_args, **env) -> subprocess.Popen:
    """`make TARGET DATA=data ARGS..` as a user runs it, on this display, in the background.

    Its own session, so `finish` can stop make and everything it started as one group."""
    repo = Path(__file__).resolve().parents[1]
    command = ["make", "--no-print-directory", "-C", str(repo), target, f"DATA={data}", *make_args]
    return subprocess.Popen(command, env=screen.env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process: subprocess.Popen, timeout=30) -> str:
    """The output of a `start_make` process once it has ended (stopping what is left after timeout)."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    return output


@contextmanager
def output_shown_on_failure(process: subprocess.Popen):
    """Drive the window inside this block. If anything in it fails, make's output (labelImg's own
    traceback, if it died) is printed and make is stopped before the failure goes on."""
    try:
        yield
    except BaseException:
        print(finish(process, timeout=5))
        raise


class LabelImgWindow:
    """labelImg's main window on a VirtualDisplay, driven as a person would (keys and mouse).

        window = LabelImgWindow.wait(screen, process=proc)   # process: the Popen running it
        window.fit(1200, 850)                                 # resize, Ctrl+F: fit the image
        to_screen = window.locate_image((640, 480))           # needs a marker_image on screen
        window.draw_box(to_screen, (100, 80), (250, 200))     # 'w' then drag (image pixels)
        window.pick_class("mask")                             # type the class in the dialog
        window.save(); window.next_image(); window.verify()   # Ctrl+S, 'd', Space
        window.title(); window.alive(); window.close()
    """

    def __init__(self, screen: VirtualDisplay, window_id: str, process=None):
        self.screen, self.id, self.process = screen, window_id, process
        self.pid = int(screen.xdotool("getwindowpid", window_id))

    @classmethod
    def wait(cls, screen: VirtualDisplay, process=None, timeout=60.0) -> "LabelImgWindow":
        window_id = screen.wait_for_window(name="labelImg", timeout=timeout, process=process)
        return cls(screen, window_id, process)

    def alive(self) -> bool:
        """The process runs (not a zombie) and its main window exists.

        (Not a window search by pid: that races with windows being created, e.g. the dialog.)"""
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        probe = subprocess.run(["xdotool", "getwindowname", self.id], env=self.screen.env(),
                               capture_output=True, timeout=30)
        return probe.returncode == 0

    def require_alive(self, step: str) -> None:
        if not self.alive():
            raise GuiError(f"labelImg died during: {step}")

    def title(self) -> str:
        return self.screen.xdotool("getwindowname", self.id)

    def fit(self, width=1200, height=850) -> None:
        self.screen.resize(self.id, width, height)
        self.key("ctrl+f")  # labelImg's "Fit Window"
        time.sleep(0.5)

    def key(self, *keys) -> None:
        self.screen.key(*keys, window=self.id)

    def locate_image(self, image_size, timeout=10.0) -> "callable":
        """A function image (x, y) -> screen (x, y), from markers A and B on the screen.

        Waits until two screenshots in a row agree: labelImg paints a new image (or zoom)
        some time after its title changes."""
        (ax, ay), (bx, by), _ = marker_centres(image_size)
        seen: list = []

        def settled():
            pixels = self.screen.grab()
            try:
                markers = (find_marker(pixels, MARKER_A), find_marker(pixels, MARKER_B))
            except GuiError:
                seen.clear()
                return False
            previous = seen[-1] if seen else None
            seen.append(markers)
            return previous is not None and all(
                abs(p.x - m.x) < 0.5 and abs(p.y - m.y) < 0.5 for p, m in zip(previous, markers))

        self.screen.wait_until(settled, timeout=timeout, interval=0.1,
                               what="the image's markers A and B to show, settled, on the screen")
        sa, sb = seen[-1]
        scale_x, scale_y = (sb.x - sa.x) / (bx - ax), (sb.y - sa.y) / (by - ay)

        def to_screen(x, y):
            return sa.x + (x - ax) * scale_x, sa.y + (y - ay) * scale_y
        return to_screen

    def draw_box(self, to_screen, top_left, bottom_right) -> None:
        """'w' (Create RectBox), then drag from corner to corner given in image pixels."""
        self.key("w")
        start, end = to_screen(*top_left), to_screen(*bottom_right)
        self.screen.drag((round(start[0]), round(start[1])), (round(end[0]), round(end[1])))
        self.require_alive("drawing a box")
        self.screen.wait_until(lambda: len(self.screen.windows(pid=self.pid)) > 1 or not self.alive(),
                               timeout=10, what="the class dialog after drawing a box")
        self.require_alive("drawing a box")

    def pick_class(self, name: str) -> None:
        """Type the class into labelImg's label dialog and press Return until it closes.

        (The first Return may only accept the completer's suggestion.)"""
        time.sleep(0.3)  # the dialog's line edit takes the focus just after the window maps
        self.screen.type(name)
        for _ in range(4):
            self.screen.key("Return")
            try:
                self.screen.wait_until(lambda: len(self.screen.windows(pid=self.pid)) <= 1,
                                       timeout=1.0, what="the class dialog to close")
                break
            except GuiError:
                self.require_alive("picking a class")
        else:
            raise GuiError("the class dialog did not close after Return")
        self.require_alive("picking a class")

    def save(self) -> None:
        self.key("ctrl+s")

    def next_image(self) -> None:
        self.key("d")

    def verify(self) -> None:
        self.key("space")  # "Verify Image": marks the file verified and saves it

    def close(self, timeout=20.0) -> None:
        self.key("ctrl+q")
        if self.process is not None:
            self.process.wait(timeout)
