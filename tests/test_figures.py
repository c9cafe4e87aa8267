"""The evaluation figures on a case small enough to work by hand: keras-retinanet's AP at 0.5,
pycocotools' COCO figures, precision/recall/F1, the best-F1 threshold and the confusion matrix.

Two images, two classes (0 mask, 1 no_mask), boxes [x1, y1, x2, y2]:
  image A: true mask [0,0,10,10], true no_mask [20,20,30,30]
           detected mask [0,0,10,10] 0.9 (right), mask [20,20,30,30] 0.8 (the no_mask read as mask),
           no_mask [50,50,60,60] 0.7 (nothing there)
  image B: true mask [0,0,20,20], true no_mask [40,40,50,50]
           detected mask [0,0,20,10] 0.6 (IoU exactly 0.5), no_mask [40,40,50,50] 0.3 (right, low score)
"""
from fractions import Fraction as F

import numpy as np
import pytest
from PIL import Image

from training.evaluate import markdown_table, summary_of
from training.evaluate_page import render
from training.figures import figures

NAMES = ["mask", "no_mask"]


def _d(*rows):
    return np.array(rows, float).reshape(-1, 5)


def _t(*rows):
    return np.array(rows, float).reshape(-1, 4)


DETECTIONS = [{0: _d([0, 0, 10, 10, .9], [20, 20, 30, 30, .8]), 1: _d([50, 50, 60, 60, .7])},
              {0: _d([0, 0, 20, 10, .6]), 1: _d([40, 40, 50, 50, .3])}]
TRUTH = [{0: _t([0, 0, 10, 10]), 1: _t([20, 20, 30, 30])}, {0: _t([0, 0, 20, 20]), 1: _t([40, 40, 50, 50])}]


@pytest.fixture(scope="module")
def result():
    return figures(DETECTIONS, TRUTH, NAMES, iou=0.5, at=0.5)


def test_ap_at_05_is_keras_retinanets(result):
    # mask, best score first: hit, miss, hit (IoU 0.5 counts) -> recall .5 .5 1, precision 1 .5 2/3;
    # all-point AP = .5 * 1 + .5 * 2/3
    assert result["classes"]["mask"]["ap"] == pytest.approx(float(F(1, 2) + F(1, 2) * F(2, 3)), abs=1e-12)
    # no_mask: miss (0.7), hit (0.3) -> recall 0 .5, precision 0 .5; AP = .5 * .5
    assert result["classes"]["no_mask"]["ap"] == pytest.approx(0.25, abs=1e-12)
    assert result["mAP"] == pytest.approx((5 / 6 + 0.25) / 2, abs=1e-12)
    assert [result["classes"][n]["instances"] for n in NAMES] == [2, 2]


def test_coco_figures_are_pycocotools_and_match_the_hand_count(result):
    # COCO samples the precision envelope at 101 recall points, at IoU .50, .55 ... .95.
    # mask at IoU .5: recall <= .5 (51 points) precision 1, recall .51..1 (50 points) 2/3;
    # above .5 B's box (IoU .5) no longer counts: only the 51 points at precision 1.
    mask_50, mask_above = (51 + 50 * F(2, 3)) / 101, F(51, 101)
    mask = (mask_50 + 9 * mask_above) / 10
    no_mask = 51 * F(1, 2) / 101   # envelope .5 up to recall .5 at every IoU (its hit is IoU 1)
    coco = result["coco"]
    assert coco["classes"]["mask"] == pytest.approx(float(mask), abs=1e-9)
    assert coco["classes"]["no_mask"] == pytest.approx(float(no_mask), abs=1e-9)
    assert coco["mAP"] == pytest.approx(float((mask + no_mask) / 2), abs=1e-9)
    assert coco["AP50"] == pytest.approx(float((mask_50 + no_mask) / 2), abs=1e-9)
    assert coco["AP75"] == pytest.approx(float((mask_above + no_mask) / 2), abs=1e-9)


def test_precision_recall_f1_at_the_threshold_and_the_best_threshold(result):
    # at score >= 0.5: mask 0.9 hit, 0.8 miss, 0.6 hit; no_mask 0.7 miss (0.3 is below)
    assert result["at"] == {"score": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 2, "fp": 2, "fn": 2}
    mask = result["classes"]["mask"]["at"]
    assert (mask["precision"], mask["recall"], mask["tp"], mask["fp"]) == (pytest.approx(2 / 3), 1.0, 2, 1)
    assert mask["f1"] == pytest.approx(0.8)
    assert result["classes"]["no_mask"]["at"]["f1"] == 0.0
    # F1 by threshold: .9 -> 2*1*.25/1.25=.4; .8 -> 1/3; .7 -> .2857; .6 -> .5; .3 -> 2*.6*.75/1.35=.6667
    best = result["best_f1"]
    assert best["score"] == pytest.approx(0.3) and best["f1"] == pytest.approx(2 / 3)
    assert (best["precision"], best["recall"]) == (pytest.approx(0.6), pytest.approx(0.75))


def test_confusion_matrix_counts_swaps_misses_and_false_alarms(result):
    confusion = result["confusion"]
    assert confusion["classes"] == NAMES
    assert confusion["matrix"] == [[2, 0],   # both masks found
                                   [1, 0]]   # A's no_mask read as mask
    assert confusion["missed"] == [0, 1]     # B's no_mask: its only detection scores 0.3
    assert confusion["false_alarms"] == [0, 1]  # the no_mask detection on A's empty corner
    trace = sum(confusion["matrix"][i][i] for i in range(2))
    assert trace == result["at"]["tp"]          # the diagonal is the true positives at the threshold
    a, b = result["images"]
    assert len(a["swapped"]) == 1 and a["swapped"][0][1:4:2] == ("no_mask", "mask")
    assert len(a["false_alarms"]) == 1 and not a["missed"]
    assert [name for _, name in b["missed"]] == ["no_mask"] and not b["swapped"]


def test_a_second_detection_of_a_found_box_is_a_false_alarm_not_a_swap():
    detections = [{0: _d([0, 0, 10, 10, .9]), 1: _d([0, 0, 10, 10, .6])}]
    truth = [{0: _t([0, 0, 10, 10]), 1: _t()}]
    confusion = figures(detections, truth, NAMES)["confusion"]
    assert confusion["matrix"] == [[1, 0], [0, 0]] and confusion["false_alarms"] == [0, 1]


def test_no_detections_at_all():
    result = figures([{0: _d(), 1: _d()}], [{0: _t([0, 0, 5, 5]), 1: _t()}], NAMES)
    assert result["mAP"] == 0.0 and result["coco"]["mAP"] == 0.0 and result["coco"]["classes"]["no_mask"] is None
    assert result["confusion"]["missed"] == [1, 0] and result["best_f1"] is None


def test_the_table_and_the_error_page(result, tmp_path):
    paths = []
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (64, 64), (200, 200, 200)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    summary = summary_of(result, {"part": "test", "csv": "test.csv", "images": 2, "warnings": []})
    assert summary["errors"] == {"missed": 1, "swapped": 1, "false_alarms": 1}
    table = markdown_table(summary)
    assert "| mask | 2 | 0.8333 |" in table and "| no_mask | 1 | 0 | 1 |" in table
    assert "| background (false alarms) | 0 | 1 | |" in table and "the test part" in table
    page = render(summary, result["images"], paths)
    assert page.count("<figure") == 3  # A under false alarms and swaps, B under misses
    assert page.count("data:image/jpeg;base64,") == 3
    assert "no_mask as mask (0.80)" in page and "missed: no_mask" in page
