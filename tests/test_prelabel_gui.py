"""A prelabel draft opened and saved in a real labelImg window counts as reviewed (issue 8).

`make annotate PRELABEL=face` drafts the unannotated photos with the face detector, then opens
labelImg on them under Xvfb. Pressing Space ("Verify Image") on the first draft saves it as a
person would: the draft mark is gone, the boxes are kept, validate counts it as annotated, while
the draft nobody saved stays pending and byte-for-byte as prelabel wrote it.
"""
from __future__ import annotations

import json

import pytest

from dataset import voc
from dataset.validate import validate
from dataset.fixtures.display import LabelImgWindow, VirtualDisplay, output_shown_on_failure, start_make
from test_prelabel import _seed_dataset

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("gui_tools")]

ANNOTATED = ["106", "108", "114", "117", "119", "120"]
DRAFTED = ["116", "118"]


def test_a_draft_saved_in_labelimg_counts_as_reviewed(tmp_path, seed_voc, artifacts):
    dataset = _seed_dataset(tmp_path, seed_voc, annotated=ANNOTATED, unannotated=DRAFTED)
    first, second = (dataset.annotation_for(f"{s}.jpg") for s in DRAFTED)
    with VirtualDisplay(size=(1280, 900)) as screen:
        process = start_make(screen, "annotate", dataset.root, "PRELABEL=face")
        with output_shown_on_failure(process):
            window = LabelImgWindow.wait(screen, process=process, timeout=120)
            # prelabel ran before labelImg opened: both photos have drafts now
            draft = voc.parse(first)
            assert draft.draft and draft.objects and voc.parse(second).draft
            second_bytes = second.read_bytes()
            window.fit(1200, 850)
            screen.screenshot(artifacts / "prelabel-draft-in-labelimg.png")
            window.verify()  # Space: labelImg saves the draft as the person's file
            screen.wait_until(lambda: not voc.parse(first).draft, timeout=15,
                              what=f"labelImg to save {first.name}")
            window.require_alive("saving the draft")
            window.close()
            output, _ = process.communicate(timeout=30)

    assert "prelabel: drafted 2 images" in output, output
    saved = voc.parse(first)
    assert not saved.draft and saved.verified
    assert len(saved.objects) == len(draft.objects)
    for kept, drafted in zip(saved.objects, draft.objects):
        assert kept.name == drafted.name
        assert kept.box == pytest.approx(drafted.box, abs=1)
    assert second.read_bytes() == second_bytes  # not saved by a person: still the draft

    report = validate(dataset, progress=False)
    assert report.drafts == [f"{DRAFTED[1]}.jpg"]
    assert f"{DRAFTED[0]}.jpg" not in report.pending and f"{DRAFTED[1]}.jpg" in report.pending
    session = json.loads((dataset.export / "annotate.json").read_text())
    assert session["reviewed_drafts"] == [f"{DRAFTED[0]}.jpg"], session
