"""A small labelled sample dataset rendered from scratch: scenes of face-like figures with and
without masks, as a labelImg folder (images + Pascal VOC side by side).

It lets `make demo` and the tests run every stage with no network and no data of the user's.
A few exact and near duplicates are added on purpose, as scraped data always has them.
"""
from __future__ import annotations

import argparse
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from . import atomic, voc

CLASSES = ("mask", "no_mask")
SKIN = [(255, 224, 189), (234, 192, 134), (198, 134, 66), (141, 85, 36), (241, 194, 125)]
MASK_COLOURS = [(225, 235, 245), (120, 170, 220), (40, 40, 48), (235, 235, 235), (90, 160, 140)]
HAIR = [(30, 20, 10), (80, 50, 20), (150, 110, 60), (20, 20, 20), (200, 170, 100)]


@dataclass
class Face:
    name: str
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax in 1-based VOC pixels


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top = tuple(rng.randint(60, 220) for _ in range(3))
    bottom = tuple(rng.randint(30, 200) for _ in range(3))
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(rng.randint(2, 6)):  # distractors: furniture, windows, signs
        x0, y0 = rng.randint(0, width), rng.randint(0, height)
        x1, y1 = x0 + rng.randint(10, width // 3), y0 + rng.randint(10, height // 3)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.rectangle if rng.random() < 0.7 else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    return image


def _draw_body(draw: ImageDraw.ImageDraw, rng: random.Random, cx: int, cy: int, r: int, skin):
    shirt = tuple(rng.randint(0, 255) for _ in range(3))
    draw.ellipse([cx - 2 * r, cy + int(1.1 * r), cx + 2 * r, cy + 4 * r], fill=shirt)
    draw.rectangle([cx - r // 3, cy + int(0.8 * r), cx + r // 3, cy + int(1.4 * r)], fill=skin)


def _draw_head(draw: ImageDraw.ImageDraw, rng: random.Random, cx: int, cy: int, r: int, masked: bool, skin):
    hair = rng.choice(HAIR)
    draw.ellipse([cx - int(1.05 * r), cy - int(1.35 * r), cx + int(1.05 * r), cy + int(0.4 * r)], fill=hair)
    draw.ellipse([cx - int(0.85 * r), cy - int(1.1 * r), cx + int(0.85 * r), cy + int(1.1 * r)], fill=skin)
    eye_y, eye_dx, eye_r = cy - int(0.3 * r), int(0.35 * r), max(1, r // 9)
    for ex in (cx - eye_dx, cx + eye_dx):
        draw.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=(25, 25, 25))
    if masked:
        colour = rng.choice(MASK_COLOURS)
        mask = [(cx - int(0.9 * r), cy - int(0.05 * r)), (cx + int(0.9 * r), cy - int(0.05 * r)),
                (cx + int(0.7 * r), cy + int(0.85 * r)), (cx, cy + int(1.0 * r)),
                (cx - int(0.7 * r), cy + int(0.85 * r))]
        draw.polygon(mask, fill=colour)
        for side in (-1, 1):  # ear loops
            draw.line([(cx + side * int(0.9 * r), cy), (cx + side * int(0.85 * r), cy - int(0.3 * r))],
                      fill=colour, width=max(1, r // 12))
        for k in (1, 2):  # pleats
            y = cy + int(k * 0.28 * r)
            draw.line([(cx - int(0.6 * r), y), (cx + int(0.6 * r), y)],
                      fill=tuple(max(0, c - 40) for c in colour), width=max(1, r // 14))
    else:
        draw.line([(cx, cy - int(0.15 * r)), (cx - r // 8, cy + int(0.2 * r))], fill=(120, 70, 50),
                  width=max(1, r // 12))
        draw.chord([cx - int(0.35 * r), cy + int(0.3 * r), cx + int(0.35 * r), cy + int(0.7 * r)],
                   0, 180, fill=(170, 40, 50))


def render_scene(rng: random.Random, size=(320, 240), max_faces=3, min_face=0.12, max_face=0.28):
    """One scene and its faces. Faces do not overlap; boxes follow labelImg's 1-based pixels."""
    width, height = size
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    faces: list[Face] = []
    figures = []
    for _ in range(rng.randint(1, max_faces)):
        for _attempt in range(30):
            r = int(rng.uniform(min_face, max_face) * min(width, height) / 2) + 4
            cx = rng.randint(r + 2, width - r - 3)
            cy = rng.randint(int(1.3 * r) + 2, max(int(1.3 * r) + 3, height - int(1.2 * r) - 3))
            box = (cx - int(0.85 * r), cy - int(1.1 * r), cx + int(0.85 * r), cy + int(1.1 * r))
            if all(box[2] < f.box[0] - 2 or box[0] > f.box[2] + 2 or box[3] < f.box[1] - 2
                   or box[1] > f.box[3] + 2 for f in faces):
                break
        else:
            continue
        masked = rng.random() < 0.5
        figures.append((cx, cy, r, masked, rng.choice(SKIN)))
        xmin, ymin = max(1, box[0] + 1), max(1, box[1] + 1)
        xmax, ymax = min(width, box[2] + 1), min(height, box[3] + 1)
        faces.append(Face("mask" if masked else "no_mask", (xmin, ymin, xmax, ymax)))
    # bodies first, then heads: no shoulder ever hides a labelled face
    for cx, cy, r, _masked, skin in figures:
        _draw_body(draw, rng, cx, cy, r, skin)
    for cx, cy, r, masked, skin in figures:
        _draw_head(draw, rng, cx, cy, r, masked, skin)
    image = image.filter(ImageFilter.GaussianBlur(radius=0.6))
    return image, faces


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def annotation_for(name: str, image: Image.Image, faces, folder: str) -> voc.VocAnnotation:
    return voc.VocAnnotation(
        filename=name, width=image.width, height=image.height, depth=3, folder=Path(folder).name,
        path=str(Path(folder) / name),
        objects=[voc.VocObject(f.name, *f.box) for f in faces],
    )


def make_sample(folder: Path | str, count: int = 40, size=(320, 240), seed: int = 0,
                duplicates: int = 4, annotate: bool = True, prefix: str = "scene") -> list[Path]:
    """Write `count` scenes (plus `duplicates` exact and `duplicates` near copies) into folder.

    Near copies are resized to 80% and re-encoded, with their boxes scaled, as the same photo
    found on two sites would be. Returns the image paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    originals = []
    for index in range(count):
        image, faces = render_scene(rng, size)
        name = f"{prefix}_{index:04d}.jpg"
        atomic.write_bytes(folder / name, jpeg_bytes(image))
        if annotate:
            voc.write(annotation_for(name, image, faces, folder), folder / f"{Path(name).stem}.xml",
                      overwrite=True)
        written.append(folder / name)
        originals.append((name, image, faces))
    for k in range(min(duplicates, count)):
        name, image, faces = originals[(k * 7) % count]
        exact = f"{prefix}_{count + k:04d}_copy.jpg"
        atomic.copy_file(folder / name, folder / exact)
        near = f"{prefix}_{count + duplicates + k:04d}_resized.jpg"
        small = image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.LANCZOS)
        atomic.write_bytes(folder / near, jpeg_bytes(small, quality=70))
        if annotate:
            voc.write(annotation_for(exact, image, faces, folder), folder / f"{Path(exact).stem}.xml",
                      overwrite=True)
            scaled = [Face(f.name, tuple(max(1, int(round(v * 0.8))) for v in f.box)) for f in faces]
            voc.write(annotation_for(near, small, scaled, folder), folder / f"{Path(near).stem}.xml",
                      overwrite=True)
        written += [folder / exact, folder / near]
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render a small labelled sample dataset (labelImg folder).")
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duplicates", type=int, default=4)
    parser.add_argument("--no-annotations", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    paths = make_sample(args.folder, args.count, (width, height), args.seed, args.duplicates,
                        annotate=not args.no_annotations)
    print(f"sample: {len(paths)} images written to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
