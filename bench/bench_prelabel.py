"""Benchmark `make prelabel` with the face detector on the real seed data.

Hold out part of seed-voc's annotated images (whole near-duplicate groups, so no copy of a held-out
face teaches the calibration), import the rest with their annotations, draft the held-out images
with prelabel() and score the drafts against the people's boxes at IoU 0.5:
  - baseline: the detector's boxes as they are (--no-calibration),
  - maskset:  the boxes calibrated on the imported annotations, the class from the face's look
    (and, to show what that adds, the same boxes with one default class).
Then the speed of the downscaled detection prelabel uses against MTCNN on the full-size image.
Prints ratios against the baselines measured in the same run.

    .venv/bin/python bench/bench_prelabel.py [--holdout 0.3] [--seed 0] [--speed-images 20]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from annotation import calibration as calib  # noqa: E402
from annotation.facedetect import FaceDetector, load_rgb  # noqa: E402
from annotation.prelabel import prelabel  # noqa: E402
from dataset import hashcache, neighbours, voc  # noqa: E402
from dataset.importer import import_folder  # noqa: E402
from dataset.layout import Dataset  # noqa: E402

SEED_VOC = Path(os.environ.get("MASKSET_SHARED", REPO.parent / "shared")) / "data" / "seed-voc"


def holdout_split(seed_voc: Path, fraction: float, seed: int):
    """(calibration images, held-out images: one per near-duplicate group) of annotated images."""
    images = sorted(p for p in (seed_voc / "images").iterdir()
                    if (seed_voc / "annotations" / (p.stem + ".xml")).exists())
    hashes = hashcache.hash_files(images)
    groups = neighbours.groups(sorted(hashes), neighbours.similar_pairs(hashes))
    random.Random(seed).shuffle(groups)
    held, kept, target = [], [], fraction * len(groups)
    for group in groups:
        (held if len(held) < target else kept).append(group)
    return [p for g in kept for p in g], [g[0] for g in held]


def make_dataset(work: Path, seed_voc: Path, calibration_images, held_out) -> Dataset:
    """A dataset with the calibration images annotated and the held-out ones not."""
    src = work / "src"
    (src / "images").mkdir(parents=True)
    (src / "annotations").mkdir()
    # copies, not links: import never follows a link out of SRC (a hostile-input rule), so linked
    # files would be skipped and the bench would measure an empty dataset
    for image in calibration_images:
        shutil.copyfile(image, src / "images" / image.name)
        shutil.copyfile(seed_voc / "annotations" / (image.stem + ".xml"), src / "annotations" / (image.stem + ".xml"))
    for image in held_out:
        shutil.copyfile(image, src / "images" / image.name)
    dataset = Dataset.at(work / "data")
    import_folder(dataset, src, progress=False)
    landed = len(dataset.image_files())
    if landed != len(calibration_images) + len(held_out):
        raise SystemExit(f"bench_prelabel: {landed} images imported of {len(calibration_images) + len(held_out)}")
    return dataset


def truth_for(seed_voc: Path, held_out):
    out = {}
    for image in held_out:
        annotation = voc.parse(seed_voc / "annotations" / (image.stem + ".xml"))
        out[image.name] = [(o.name, calib.voc_box(o)) for o in annotation.objects]
    return out


def drafts_for(dataset: Dataset, names):
    out = {}
    for name in names:
        xml = dataset.annotation_for(name)
        objects = voc.parse(xml).objects if xml.exists() else []
        out[name] = [(o.name, calib.voc_box(o)) for o in objects]
    return out


def scores(drafts: dict, truth: dict) -> dict:
    names = sorted(truth)
    boxes_only = calib.score([([b for _, b in drafts[n]], [b for _, b in truth[n]]) for n in names])
    with_class = calib.score([(drafts[n], truth[n]) for n in names])
    matched = []
    for n in names:
        predicted, people = [b for _, b in drafts[n]], [b for _, b in truth[n]]
        matched += [o for _, _, o in calib.match(predicted, people, 0.01)]
    return {"boxes": boxes_only, "with_class": with_class,
            "mean_iou_matched": sum(matched) / len(matched) if matched else 0.0}


def speed(detector_small: FaceDetector, detector_full: FaceDetector, images, calibration, truth):
    """Seconds per image and recall: prelabel's downscaled detection vs the full-size image."""
    results = {}
    for label, detector in (("full_size", detector_full), ("downscaled", detector_small)):
        started, examples = time.perf_counter(), []
        for image in images:
            pixels = load_rgb(image)
            h, w = pixels.shape[:2]
            boxes = [calibration.apply(f.box, w, h) for f in detector.detect_array(pixels)]
            examples.append((boxes, [b for _, b in truth[image.name]]))
        seconds = (time.perf_counter() - started) / len(images)
        results[label] = {"seconds_per_image": seconds, **calib.score(examples)}
    return results


def picture(path: Path, names, truth, plain, calibrated, height=260, columns=4) -> Path:
    """A contact sheet for people: people's boxes green, MTCNN as-is red, maskset's drafts blue."""
    from PIL import Image, ImageDraw
    tiles = []
    for name in names:
        with Image.open(SEED_VOC / "images" / name) as opened:
            image = opened.convert("RGB")
        scale = height / image.height
        image = image.resize((max(1, round(image.width * scale)), height))
        draw = ImageDraw.Draw(image)
        for boxes, colour, width in ((truth[name], (0, 200, 0), 4), (plain[name], (230, 30, 30), 2),
                                     (calibrated[name], (40, 110, 255), 2)):
            for label, box in boxes:
                draw.rectangle([v * scale for v in box], outline=colour, width=width)
                if colour[2] == 255:
                    draw.text((box[0] * scale + 3, box[1] * scale + 2), label, fill=colour)
        tiles.append(image)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    sheet = Image.new("RGB", (max(sum(t.width for t in row) for row in rows), height * len(rows)), "white")
    for r, row in enumerate(rows):
        x = 0
        for tile in row:
            sheet.paste(tile, (x, r * height))
            x += tile.width
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def line(label: str, s: dict) -> str:
    b, c = s["boxes"], s["with_class"]
    return (f"{label:<24} recall {b['recall']:.3f}  precision {b['precision']:.3f}  "
            f"(TP {b['true_positives']}, FP {b['false_positives']}, FN {b['false_negatives']})  "
            f"mean IoU {s['mean_iou_matched']:.3f}  | class too: recall {c['recall']:.3f} "
            f"precision {c['precision']:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--holdout", type=float, default=0.3, help="fraction of near-duplicate groups held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibration-images", type=int, default=60)
    p.add_argument("--speed-images", type=int, default=20)
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--picture", default=str(REPO / "bench" / "results" / "prelabel-drafts.png"),
                   help="contact sheet of 8 held-out photos with the three kinds of box")
    args, _ = p.parse_known_args(argv)  # make bench passes one BENCH_ARGS to every bench
    if not (SEED_VOC / "images").is_dir():
        print(f"{SEED_VOC} is missing", file=sys.stderr)
        return 2

    calibration_images, held_out = holdout_split(SEED_VOC, args.holdout, args.seed)
    truth = truth_for(SEED_VOC, held_out)
    print(f"seed-voc: {len(calibration_images)} annotated images to learn from, {len(held_out)} held out "
          f"(one per near-duplicate group), {sum(len(v) for v in truth.values())} people's boxes")
    with tempfile.TemporaryDirectory(prefix="bench-prelabel-") as tmp:
        dataset = make_dataset(Path(tmp), SEED_VOC, calibration_images, held_out)
        started = time.perf_counter()
        detector = FaceDetector()
        load_seconds = time.perf_counter() - started

        prelabel(dataset, run="face", calibrate=False, runs_dir=Path(tmp) / "runs", face_detector=detector)
        plain_drafts = drafts_for(dataset, truth)
        plain_scores = scores(plain_drafts, truth)
        calibrated = prelabel(dataset, run="face", replace_drafts=True, runs_dir=Path(tmp) / "runs",
                              face_detector=detector)
        calibrated_drafts = drafts_for(dataset, truth)
        calibrated_scores = scores(calibrated_drafts, truth)
        # the same boxes with one default class: what the appearance classifier adds
        one_class = {n: [(calibrated.default_class, b) for _, b in v] for n, v in calibrated_drafts.items()}
        one_class_scores = scores(one_class, truth)
        calibration = calib.Calibration(**calibrated.calibration)

        sheet = picture(Path(args.picture), [p.name for p in held_out[:8]], truth, plain_drafts,
                        calibrated_drafts)
        sample = held_out[:args.speed_images]
        timing = speed(detector, FaceDetector(max_side=100_000), [SEED_VOC / "images" / p.name for p in sample],
                       calibration, truth)

    print(f"\nface detector: MTCNN (mtcnn 1.0.0), loaded in {load_seconds:.1f}s; default class "
          f"{calibrated.default_class!r}")
    print(f"calibration: {calibration.describe()}")
    print(f"\ndrafts vs people's boxes on {len(held_out)} held-out images, IoU 0.5:")
    print(line("detector boxes as-is", plain_scores))
    print(line("calibrated, one class", one_class_scores))
    print(line("calibrated (maskset)", calibrated_scores))
    b0, b1 = plain_scores["boxes"], calibrated_scores["boxes"]
    ratio = lambda new, old: new / old if old else float("inf")  # noqa: E731
    print(f"\nRATIO recall calibrated/as-is: {ratio(b1['recall'], b0['recall']):.2f}x   "
          f"precision: {ratio(b1['precision'], b0['precision']):.2f}x")
    c0, c1 = one_class_scores["with_class"], calibrated_scores["with_class"]
    print(f"RATIO recall with class, class from appearance/one default class: "
          f"{ratio(c1['recall'], c0['recall']):.2f}x   precision: {ratio(c1['precision'], c0['precision']):.2f}x")
    print(f"prelabel time per image: {calibrated.seconds_per_image:.3f}s "
          f"({len(calibrated.drafted)} drafted, {len(calibrated.empty)} with no face found)")
    print(f"prelabel's own summary: {calibrated.summary()}")
    full, small = timing["full_size"], timing["downscaled"]
    print(f"\nspeed on {len(sample)} held-out images (calibrated): full-size {full['seconds_per_image']:.3f}s/img "
          f"recall {full['recall']:.3f}; downscaled to {detector.max_side}px {small['seconds_per_image']:.3f}s/img "
          f"recall {small['recall']:.3f}")
    print(f"picture (green: people, red: MTCNN as-is, blue: maskset drafts): {sheet}")
    print(f"RATIO speed-up downscaled vs full-size: {ratio(full['seconds_per_image'], small['seconds_per_image']):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "held_out": len(held_out), "calibration": calibrated.calibration, "as_is": plain_scores,
            "calibrated": calibrated_scores, "calibrated_one_class": one_class_scores, "seconds_per_image": calibrated.seconds_per_image,
            "speed": timing, "default_class": calibrated.default_class,
            "boxes": calibrated.boxes, "summary": calibrated.summary()}, indent=2))
    if b1["recall"] <= b0["recall"]:
        print("FAIL: the calibration did not improve recall", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
