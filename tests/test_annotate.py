"""`make annotate` without a window: which images open, the session summary, history, errors,
and the launcher's Qt adaptation (exercised on Qt's offscreen platform in a child process)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from annotation import launcher
from annotation.annotate import (annotation_states, explain_exit,
                                 images_to_annotate, keep_previous, session_summary,
                                 drop_unchanged)
from dataset import voc
from dataset.layout import Dataset
from helpers import REPO, make


def write_voc(dataset, image_name, names, draft=False):
    objects = [voc.VocObject(n, 10 + 20 * i, 10, 25 + 20 * i, 30) for i, n in enumerate(names)]
    return voc.write(voc.VocAnnotation(filename=image_name, width=320, height=240, objects=objects,
                                       draft=draft), dataset.annotation_for(image_name))


@pytest.fixture
def dataset(tmp_path):
    """a: nothing yet, b: annotated, c: machine draft, d: unreadable XML."""
    from PIL import Image
    dataset = Dataset.at(tmp_path / "data").ensure()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        Image.new("RGB", (320, 240), (90, 90, 90)).save(dataset.images / name)
    write_voc(dataset, "b.jpg", ["mask", "no_mask"])
    write_voc(dataset, "c.jpg", ["mask"], draft=True)
    dataset.annotation_for("d.jpg").write_text("<annotation><filename>d.jpg</filen")
    return dataset


def test_opens_pending_drafts_and_unreadable_or_everything_with_all(dataset):
    states = annotation_states(dataset)
    assert states["b.jpg"].done and states["b.jpg"].boxes == ("mask", "no_mask")
    assert states["c.jpg"].draft and not states["c.jpg"].done
    assert states["d.jpg"].error and "malformed XML" in states["d.jpg"].error
    assert [p.name for p in images_to_annotate(dataset, states)] == ["a.jpg", "c.jpg", "d.jpg"]
    assert [p.name for p in images_to_annotate(dataset, states, all_images=True)] == \
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [p.name for p in images_to_annotate(dataset, {}, all_images=True)] == \
        ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]  # --all needs no states


def test_images_open_in_natural_order(tmp_path):
    dataset = Dataset.at(tmp_path / "data").ensure()
    for name in ("img10.png", "img2.png", "Img1.png"):
        (dataset.images / name).write_bytes(b"")
    assert [p.name for p in images_to_annotate(dataset, {}, all_images=True)] == \
        ["Img1.png", "img2.png", "img10.png"]


def test_summary_counts_new_reviewed_edited_emptied_and_unknown_classes(dataset):
    before = annotation_states(dataset)
    write_voc(dataset, "a.jpg", ["no_mask", "hat"])              # new, with a class not listed
    dataset.annotation_for("b.jpg").unlink()
    write_voc(dataset, "b.jpg", [])                              # edited: every box removed
    dataset.annotation_for("c.jpg").unlink()
    write_voc(dataset, "c.jpg", ["mask"])                        # the draft, saved by a person
    after = annotation_states(dataset)
    summary = session_summary(before, after, ["mask", "no_mask"])
    assert (summary.annotated, summary.reviewed_drafts, summary.edited) == (["a.jpg"], ["c.jpg"], ["b.jpg"])
    assert summary.emptied == ["b.jpg"]
    assert (summary.left, summary.images, summary.unreadable) == (1, 4, ["d.jpg"])
    assert summary.boxes == {"mask": 1, "no_mask": 1, "hat": 1}  # classes.txt order, then others
    assert summary.unknown_classes == ["hat"]
    text = "\n".join(summary.lines())
    assert "annotated this session: 1 new, 1 drafts reviewed, 1 edited" in text
    assert "left to annotate: 1 of 4 images" in text
    assert "b.jpg: its annotation had boxes and now has none" in text
    assert "classes not in classes.txt: hat" in text


def test_previous_versions_are_kept_before_the_session_and_only_changed_ones_stay(dataset):
    before = annotation_states(dataset)
    opened = images_to_annotate(dataset, before, all_images=True)
    old_b = dataset.annotation_for("b.jpg").read_bytes()
    folder = keep_previous(dataset, before, opened, "20260101T000000")
    # saved before labelImg runs: a session killed now still has every previous version
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{name.rsplit('.', 1)[0]}.xml" for name, state in before.items() if state.exists)
    dataset.annotation_for("b.jpg").unlink()
    write_voc(dataset, "b.jpg", ["mask"])  # edited in the session
    assert drop_unchanged(folder, before, annotation_states(dataset)) == folder
    assert [p.name for p in folder.iterdir()] == ["b.xml"]
    assert (folder / "b.xml").read_bytes() == old_b
    again = keep_previous(dataset, before, opened, "20260101T000001")
    assert drop_unchanged(again, before, before) is None and not again.exists()


def test_no_display_is_a_clear_error_through_make(dataset):
    result = make("annotate", data=dataset.root, check=False, DISPLAY="", WAYLAND_DISPLAY="")
    assert result.returncode == 2
    assert "error: no display" in result.stderr and "xvfb-run -a make annotate" in result.stderr
    assert not dataset.annotation_for("a.jpg").exists()


def test_nothing_to_annotate_says_so_without_a_window(tmp_path):
    dataset = Dataset.at(tmp_path / "data").ensure()
    from PIL import Image
    Image.new("RGB", (64, 48)).save(dataset.images / "x.png")
    write_voc(dataset, "x.png", ["mask"])
    # a display that does not exist: labelImg must not even be started
    result = make("annotate", data=dataset.root, DISPLAY=":4242")
    assert "nothing to annotate: all 1 images have an annotation; use ALL=1" in result.stdout
    assert dataset.classes_file.read_text() == "mask\nno_mask\n"  # labelImg's predefined classes


def test_unreachable_display_and_crash_are_explained():
    assert "could not open the display" in explain_exit(1, "qt.qpa.xcb: could not connect to display :9")
    assert "crashed (killed by signal 6)" in explain_exit(-6, "TypeError: arguments did not match")
    assert "run `make setup`" in explain_exit(1, "ModuleNotFoundError: No module named 'PyQt5'")
    assert explain_exit(0, "") is None


def test_opencv_qt_paths_are_dropped_before_qt_starts():
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": "/v/site-packages/cv2/qt/plugins", "QT_QPA_FONTDIR": "/usr/fonts"}
    assert launcher.drop_opencv_qt_paths(env) == ["QT_QPA_PLATFORM_PLUGIN_PATH"]
    assert env == {"QT_QPA_FONTDIR": "/usr/fonts"}


QT_FLOAT_CALLS = textwrap.dedent("""
    import sys
    from annotation import launcher
    print("adapted" if launcher.adapt_qt() else "unadapted")
    from PyQt5.QtGui import QImage, QPainter
    from PyQt5.QtWidgets import QApplication, QScrollBar, QSpinBox
    app = QApplication([])
    image = QImage(40, 30, QImage.Format_RGB32)
    image.fill(0)
    painter = QPainter(image)
    results = []
    for name, call in [
        ("drawRect", lambda: painter.drawRect(2.4, 3.6, 10.5, 8.25)),   # libs/canvas.py
        ("drawLine", lambda: painter.drawLine(5.5, 0, 5.5, 30)),        # libs/canvas.py
        ("drawText", lambda: painter.drawText(3.7, 12.2, "mask")),      # libs/shape.py
        ("drawRect-int", lambda: painter.drawRect(1, 1, 5, 5)),         # int calls still work
    ]:
        try:
            call()
            results.append(name + ":ok")
        except TypeError:
            results.append(name + ":TypeError")
    painter.end()
    bar, spin = QScrollBar(), QSpinBox()
    bar.setRange(0, 100); spin.setRange(0, 500)
    for name, widget, value in [("QScrollBar", bar, 41.6), ("QSpinBox", spin, 118.4)]:
        try:
            widget.setValue(value)                                       # labelImg.py scroll/zoom
            results.append(f"{name}:{widget.value()}")
        except TypeError:
            results.append(name + ":TypeError")
    print(" ".join(results))
""")


@pytest.mark.parametrize("unpatched", ["", "1"])
def test_adaptation_turns_labelimgs_float_calls_into_valid_qt_calls(unpatched):
    env = {"PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen", launcher.UNPATCHED_ENV: unpatched,
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", QT_FLOAT_CALLS], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    mode, calls = result.stdout.split("\n")[:2]
    if unpatched:
        assert mode == "unadapted"
        assert calls == ("drawRect:TypeError drawLine:TypeError drawText:TypeError drawRect-int:ok "
                         "QScrollBar:TypeError QSpinBox:TypeError")
    else:
        assert mode == "adapted"
        assert calls == "drawRect:ok drawLine:ok drawText:ok drawRect-int:ok QScrollBar:42 QSpinBox:118"
