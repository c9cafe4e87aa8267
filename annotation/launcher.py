"""Start labelImg 1.8.6 so that it works on Python 3.10+, without editing the installed package.

labelImg 1.8.6 (its last release) passes floats where PyQt5 wants ints. Python 3.10 stopped
converting floats to ints implicitly, so PyQt5 raises TypeError inside a Qt slot or paint event,
and PyQt5 turns that into a fatal abort: the window vanishes the moment a box is drawn, zoomed or
scrolled. The calls are:

  libs/canvas.py       QPainter.drawRect / drawLine with float coordinates (while drawing a box)
  libs/shape.py        QPainter.drawText with float coordinates (with "display labels" on)
  labelImg.py          QScrollBar.setValue(float) (scroll, zoom), QSpinBox.setValue(float) (zoom)

`adapt_qt()` wraps exactly those PyQt5 methods, class-wide, before labelImg builds a window:
float arguments are passed on as the F (floating point) overloads where Qt has them (drawing
keeps its sub-pixel position) and rounded to int where it does not (slider values).
MASKSET_LABELIMG_UNPATCHED=1 turns the adaptation off, which is how the GUI test proves that it
catches the crash.

The launcher also gives labelImg what `make annotate` needs:
  * a private settings file per dataset (DATA/.cache/labelImg/settings.pkl, first seeded from the
    user's ~/.labelImgSettings.pkl so window size and colours carry over, which is never written),
    with auto-save on, Pascal VOC format, the save folder and the image folder forced;
  * `--image-list FILE`: only the images listed (one path a line) instead of the whole folder;
  * labelImg's XML writes made atomic (temp file + rename) through dataset.atomic.

Run:  python -m annotation.launcher IMAGE_DIR CLASSES_FILE SAVE_DIR [--image-list F] [--settings F]
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

UNPATCHED_ENV = "MASKSET_LABELIMG_UNPATCHED"
USER_SETTINGS = Path("~/.labelImgSettings.pkl")

_adapted = False


def adaptation_disabled() -> bool:
    return os.environ.get(UNPATCHED_ENV, "").strip().lower() in ("1", "yes", "true")


def _is_float(value) -> bool:
    return isinstance(value, float)


def adapt_qt() -> bool:
    """Wrap the PyQt5 methods labelImg 1.8.6 calls with floats. Idempotent; returns whether applied."""
    global _adapted
    if _adapted:
        return True
    if adaptation_disabled():
        return False
    from PyQt5.QtCore import QLineF, QPointF, QRectF
    from PyQt5.QtGui import QPainter
    from PyQt5.QtWidgets import QAbstractSlider, QSpinBox

    draw_rect, draw_line, draw_text = QPainter.drawRect, QPainter.drawLine, QPainter.drawText

    def drawRect(self, *args):
        if len(args) == 4 and any(map(_is_float, args)):
            return draw_rect(self, QRectF(*args))
        return draw_rect(self, *args)

    def drawLine(self, *args):
        if len(args) == 4 and any(map(_is_float, args)):
            return draw_line(self, QLineF(*args))
        return draw_line(self, *args)

    def drawText(self, *args):
        if len(args) == 3 and (_is_float(args[0]) or _is_float(args[1])):
            return draw_text(self, QPointF(args[0], args[1]), args[2])
        return draw_text(self, *args)

    def integer_setter(original):
        def setValue(self, value):
            return original(self, int(round(value)) if _is_float(value) else value)
        setValue.__doc__ = original.__doc__
        return setValue

    QPainter.drawRect, QPainter.drawLine, QPainter.drawText = drawRect, drawLine, drawText
    QAbstractSlider.setValue = integer_setter(QAbstractSlider.setValue)  # QScrollBar's
    QSpinBox.setValue = integer_setter(QSpinBox.setValue)  # labelImg's ZoomWidget
    _adapted = True
    return True


# -- labelImg's settings --------------------------------------------------------------------------
def _seed_settings(private: Path) -> dict:
    """The private settings if they exist, else a copy of the user's (never modified)."""
    for path in (private, USER_SETTINGS.expanduser()):
        try:
            with open(path, "rb") as handle:
                data = pickle.load(handle)
            if isinstance(data, dict):
                return data
        except Exception:  # missing or from another labelImg/Qt version: start clean
            continue
    return {}


def configure_settings(private: Path, image_dir: str, save_dir: str) -> None:
    """Point labelImg's Settings at `private`, with auto-save, Pascal VOC and our folders forced."""
    from libs import constants as c
    from libs import settings as settings_module
    from libs.labelFile import LabelFileFormat

    private.parent.mkdir(parents=True, exist_ok=True)
    forced = {
        c.SETTING_AUTO_SAVE: True,
        c.SETTING_LABEL_FILE_FORMAT: LabelFileFormat.PASCAL_VOC,
        c.SETTING_SAVE_DIR: save_dir,
        c.SETTING_LAST_OPEN_DIR: image_dir,
        c.SETTING_FILENAME: "",
    }
    seed = _seed_settings(private)
    base = settings_module.Settings

    class DatasetSettings(base):
        def __init__(self):
            super().__init__()
            self.path = str(private)

        def load(self):
            self.data = {**seed, **forced}
            return True

    # labelImg.labelImg did `from libs.settings import Settings`: replace that name too.
    import labelImg.labelImg as app_module
    settings_module.Settings = DatasetSettings
    app_module.Settings = DatasetSettings


def restrict_images(image_dir: str, image_list: Path) -> list[str]:
    """Make labelImg's scan of image_dir return only the listed images (in the listed order).

    Another folder opened from labelImg's menu is scanned as usual."""
    import labelImg.labelImg as app_module

    paths = [os.path.abspath(line.strip())
             for line in image_list.read_text(encoding="utf-8").splitlines() if line.strip()]
    scan_folder = app_module.MainWindow.scan_all_images
    ours = os.path.abspath(image_dir)

    def scan_all_images(self, folder_path):
        if os.path.abspath(folder_path) == ours:
            return list(paths)
        return scan_folder(self, folder_path)

    app_module.MainWindow.scan_all_images = scan_all_images
    return paths


def atomic_voc_writes() -> None:
    """labelImg writes its XML with a plain open(); write it atomically instead."""
    from libs import pascal_voc_io
    from dataset import atomic

    def save(self, target_file=None):
        root = self.gen_xml()
        self.append_objects(root)
        target = target_file if target_file is not None else self.filename + pascal_voc_io.XML_EXT
        atomic.write_bytes(target, self.prettify(root))

    pascal_voc_io.PascalVocWriter.save = save


def drop_opencv_qt_paths(env=os.environ) -> list[str]:
    """Undo what `import cv2` (opencv-python) puts in the environment for its own bundled Qt.

    A process that imported cv2 (prelabel, the tests) hands these to its children; PyQt5 then
    loads cv2's xcb plugin and fails with "Could not load the Qt platform plugin xcb".
    """
    dropped = []
    for key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if f"cv2{os.sep}qt" in env.get(key, ""):
            dropped.append(key)
            del env[key]
    return dropped


def parse_args(argv):
    p = argparse.ArgumentParser(description="labelImg 1.8.6, adapted to Python 3.10+ for maskset")
    p.add_argument("image_dir")
    p.add_argument("class_file")
    p.add_argument("save_dir")
    p.add_argument("--image-list", type=Path, help="open only these images (one path a line)")
    p.add_argument("--settings", type=Path, help="private labelImg settings file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    drop_opencv_qt_paths()
    applied = adapt_qt()
    if not applied:
        print(f"labelImg: {UNPATCHED_ENV}=1: running labelImg 1.8.6 unadapted (it will crash on "
              f"Python 3.10+ when a box is drawn)", file=sys.stderr, flush=True)
    import labelImg.labelImg as app_module

    if args.settings:
        configure_settings(args.settings, os.path.abspath(args.image_dir), os.path.abspath(args.save_dir))
    if args.image_list:
        restrict_images(args.image_dir, args.image_list)
    atomic_voc_writes()
    app, window = app_module.get_main_app(
        [sys.argv[0], args.image_dir, args.class_file, args.save_dir])
    print(f"labelImg: window open (pid {os.getpid()})", flush=True)
    return app.exec_()


if __name__ == "__main__":
    raise SystemExit(main())
