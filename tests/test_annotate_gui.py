"""`make annotate` in a real labelImg window under Xvfb, driven with xdotool (issue 5).

The scenario draws a box, picks a class, saves, zooms and scrolls (the calls labelImg 1.8.6 crashes
on with Python 3.10+), moves to the next image and lets auto-save write the next box; then checks
the VOC files, the boxes' positions in image pixels, `make validate`, and that labelImg is alive.
The same scenario must fail with MASKSET_LABELIMG_UNPATCHED=1: that proves it catches the crash.
"""
from __future__ import annotations

import pickle
import subprocess
import time
from pathlib import Path

import pytest

from dataset import voc
from dataset.layout import Dataset
from dataset.validate import validate
from dataset.fixtures.display import (MARKER_C, GuiError, LabelImgWindow, VirtualDisplay, finish,
                 marker_image, output_shown_on_failure, start_make)
from helpers import make

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("gui_tools")]

SIZE = (640, 480)
TOLERANCE = 3  # image pixels between where the mouse drew and what labelImg saved
BOX_A = (100, 80, 250, 200)
BOX_B = (300, 150, 520, 400)


@pytest.fixture
def screen():
    with VirtualDisplay(size=(1280, 900)) as display:
        yield display


def start_annotate(screen, data: Path, *make_args, **env) -> subprocess.Popen:
    return start_make(screen, "annotate", data, *make_args, **env)


def boxes(xml: Path) -> list[tuple[str, tuple[float, ...]]]:
    return [(o.name, o.box) for o in voc.parse(xml).objects]


def assert_box_near(actual, expected, what):
    # labelImg writes 1-based corners, clamped to >= 1: compare within a few pixels
    assert all(abs(a - e) <= TOLERANCE for a, e in zip(actual, expected)), \
        f"{what}: saved box {actual} is not where the mouse drew {expected} (±{TOLERANCE} px)"


def new_dataset(root: Path, names) -> Dataset:
    dataset = Dataset.at(root).ensure()
    dataset.write_classes(["mask", "no_mask"])
    for name in names:
        marker_image(dataset.images / name, SIZE)
    return dataset


def draw_save_zoom_scroll_next(screen, dataset: Dataset, artifacts: Path, shot: str, **env):
    """The issue's scenario; returns make's output. Raises GuiError when labelImg dies."""
    process = start_annotate(screen, dataset.root, **env)
    with output_shown_on_failure(process):
        window = LabelImgWindow.wait(screen, process=process)
        window.fit()
        # every image is still to do here: labelImg counts them all
        assert f"a.jpg [1 / {len(dataset.image_files())}]" in window.title()
        to_screen = window.locate_image(SIZE)
        window.draw_box(to_screen, BOX_A[:2], BOX_A[2:])
        window.pick_class("no_mask")
        window.save()
        xml_a = dataset.annotation_for("a.jpg")
        screen.wait_until(xml_a.exists, timeout=10, what="Ctrl+S to save a.xml")

        # zoom in around the centre marker (it stays in view), then scroll down
        fitted = screen.settled_marker(MARKER_C)
        screen.wheel(fitted.x, fitted.y, up=True, clicks=6, modifier="ctrl")  # set_zoom(float)
        window.require_alive("zooming with Ctrl+wheel")
        zoomed = screen.settled_marker(MARKER_C)
        assert zoomed.width > fitted.width * 1.3, f"Ctrl+wheel did not zoom in: {fitted} -> {zoomed}"
        screen.wheel(zoomed.x, zoomed.y, up=False, clicks=2)  # QScrollBar.setValue(float)
        window.require_alive("scrolling with the wheel")
        scrolled = screen.settled_marker(MARKER_C)
        assert scrolled.y < zoomed.y - 15, f"the wheel did not scroll down: {zoomed} -> {scrolled}"

        window.next_image()
        screen.wait_until(lambda: "b.jpg" in window.title(), timeout=10, what="the next image (d)")
        to_screen = window.locate_image(SIZE)
        window.draw_box(to_screen, BOX_B[:2], BOX_B[2:])
        window.pick_class("mask")
        window.key("ctrl+shift+p")  # "Display Labels": class names drawn (drawText(float))
        screen.move(*to_screen(400, 300))  # labelImg repaints on the next mouse move
        time.sleep(0.3)
        window.require_alive("showing the class labels")
        screen.screenshot(artifacts / shot)  # the box just drawn, with its class
        window.next_image()  # auto-save writes b.xml
        xml_b = dataset.annotation_for("b.jpg")
        screen.wait_until(xml_b.exists, timeout=10, what="auto-save to write b.xml on 'next image'")
        window.require_alive("moving to the next image")
        window.close()
        output = finish(process)
    return output


def test_draw_box_pick_class_save_zoom_scroll_next(screen, tmp_path, artifacts):
    dataset = new_dataset(tmp_path / "data", ["a.jpg", "b.jpg", "c.jpg"])
    output = draw_save_zoom_scroll_next(screen, dataset, artifacts, "annotate-labelimg.png")

    [(name_a, box_a)] = boxes(dataset.annotation_for("a.jpg"))
    [(name_b, box_b)] = boxes(dataset.annotation_for("b.jpg"))
    assert (name_a, name_b) == ("no_mask", "mask")
    assert_box_near(box_a, BOX_A, "a.xml")
    assert_box_near(box_b, BOX_B, "b.xml")
    assert not dataset.annotation_for("c.jpg").exists()

    report = validate(dataset, progress=False)
    assert report.errors == [], [f.line() for f in report.errors]
    assert sorted(report.annotated) == ["a.jpg", "b.jpg"] and report.pending == ["c.jpg"]
    make("validate", data=dataset.root)  # and as a user runs it: exit status 0

    assert "annotated this session: 2 new" in output, output
    assert "left to annotate: 1 of 3 images" in output, output
    assert "boxes per class (dataset): mask 1, no_mask 1" in output, output


def test_unadapted_labelimg_crash_is_caught(screen, tmp_path, artifacts):
    """The same scenario against labelImg 1.8.6 as released: it must fail, on the crash."""
    dataset = new_dataset(tmp_path / "data", ["a.jpg", "b.jpg"])
    with pytest.raises(GuiError, match="labelImg died during: drawing a box"):
        draw_save_zoom_scroll_next(screen, dataset, artifacts, "annotate-unadapted.png",
                                   MASKSET_LABELIMG_UNPATCHED=1)
    assert not dataset.annotation_for("a.jpg").exists()


def test_existing_annotation_edited_not_overwritten_and_draft_reviewed(screen, tmp_path):
    dataset = new_dataset(tmp_path / "data", ["a_kept.jpg", "b_edit.jpg", "c_draft.jpg"])
    kept = [voc.VocObject("mask", 50, 60, 150, 170), voc.VocObject("no_mask", 400, 100, 520, 260)]
    old_box = voc.VocObject("no_mask", 60, 300, 200, 440)
    for name, objects, draft in (("a_kept.jpg", kept, False), ("b_edit.jpg", [old_box], False),
                                 ("c_draft.jpg", [old_box], True)):
        voc.write(voc.VocAnnotation(filename=name, width=SIZE[0], height=SIZE[1], objects=objects,
                                    folder="images", path=str(dataset.images / name), draft=draft),
                  dataset.annotation_for(name))
    before = {name: dataset.annotation_for(name).read_bytes() for name in ("a_kept", "b_edit", "c_draft")}
    home = tmp_path / "home"  # the user's own labelImg settings must stay as they are
    home.mkdir()
    user_settings = home / ".labelImgSettings.pkl"
    user_settings.write_bytes(pickle.dumps({"autosave": False, "savedir": "/elsewhere", "mine": 1}))
    user_bytes = user_settings.read_bytes()

    process = start_annotate(screen, dataset.root, "ALL=1", HOME=home)
    with output_shown_on_failure(process):
        window = LabelImgWindow.wait(screen, process=process)
        window.fit()
        assert "a_kept.jpg" in window.title()
        window.next_image()  # opened, nothing changed: auto-save must not touch it
        screen.wait_until(lambda: "b_edit.jpg" in window.title(), timeout=10, what="b_edit.jpg")
        to_screen = window.locate_image(SIZE)
        window.draw_box(to_screen, BOX_A[:2], BOX_A[2:])
        window.pick_class("mask")
        window.next_image()  # auto-save: old box + the new one
        screen.wait_until(lambda: "c_draft.jpg" in window.title(), timeout=10, what="c_draft.jpg")
        window.verify()  # a person reviewed the draft: Space saves it
        xml_c = dataset.annotation_for("c_draft.jpg")
        screen.wait_until(lambda: xml_c.read_bytes() != before["c_draft"], timeout=10,
                          what="Space (verify) to save the draft")
        window.require_alive("reviewing the draft")
        window.close()
        output = finish(process)

    assert dataset.annotation_for("a_kept.jpg").read_bytes() == before["a_kept"]
    edited = boxes(dataset.annotation_for("b_edit.jpg"))
    assert len(edited) == 2 and edited[0] == ("no_mask", old_box.box), edited
    assert edited[1][0] == "mask"
    assert_box_near(edited[1][1], BOX_A, "b_edit.xml new box")
    reviewed = voc.parse(xml_c)
    assert not reviewed.draft and reviewed.verified
    assert [(o.name, o.box) for o in reviewed.objects] == [("no_mask", old_box.box)]

    history = list((dataset.quarantine / "annotate-history").glob("*/*.xml"))
    assert sorted(p.name for p in history) == ["b_edit.xml", "c_draft.xml"]
    assert {p.read_bytes() for p in history} == {before["b_edit"], before["c_draft"]}
    assert user_settings.read_bytes() == user_bytes
    assert validate(dataset, progress=False).errors == []
    assert "1 drafts reviewed, 1 edited" in output, output
    assert "left to annotate: 0 of 3 images" in output, output
