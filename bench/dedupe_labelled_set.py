"""A labelled near-duplicate set built from the seed images, for choosing and checking THRESHOLD.

Originals: one image from each group of the seed data's own duplicates (so two originals are two
different pictures), split into two disjoint halves: "tune" (choose thresholds on it) and "test"
(report on it). Each original gets `variants` copies, each made by one realistic
transformation of the kind scraped copies show: resized, re-encoded harder, cropped, brighter or
darker, watermarked, framed with a border, or several of these at once. Ground truth: two files
are duplicates exactly when they come from the same original.

    python -m bench.dedupe_labelled_set OUT_FOLDER [--originals 200 --variants 4 --seed 0 --part tune|test]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dataset import atomic, neighbours
from dataset.layout import IMAGE_SUFFIXES

SEED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-voc" / "images"
ORIGINALS_THRESHOLD = 10  # imagehash pHash bits: seed images this close are one picture
PARTS = ("tune", "test")
# Seed files that are one picture to the eye though imagehash's pHash puts them apart. Found by
# looking at every pair of "different" originals that either tool called duplicates (maskset up
# to pHash 16 / dHash 40, imagededup at its default; 18 pairs): all others are different photos.
# 536/556: one product photo with the mask recoloured (imagehash pHash 18 bits apart); 370/609:
# one photo cropped tighter. As two originals they would count a tool that pairs them (as it
# should: across train and val they are a leak) as wrong.
SAME_PICTURE = [("536.jpg", "556.jpg"), ("370.jpg", "609.jpg")]


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def resize(image, rng):
    f = rng.uniform(0.3, 0.7)
    return image.resize((max(16, int(image.width * f)), max(16, int(image.height * f))), Image.LANCZOS)


def reencode(image, rng):
    return Image.open(io.BytesIO(_jpeg(image, rng.randint(15, 40))))


def crop(image, rng):
    w, h = image.size
    left, right = (int(w * rng.uniform(0.02, 0.10)) for _ in range(2))
    top, bottom = (int(h * rng.uniform(0.02, 0.10)) for _ in range(2))
    return image.crop((left, top, w - right, h - bottom))


def brightness(image, rng):
    factor = rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.35)])
    return ImageEnhance.Brightness(image).enhance(factor)


def watermark(image, rng):
    marked = image.convert("RGBA")
    layer = Image.new("RGBA", marked.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = marked.size
    # A site's logo box in a corner and its name across the picture, half transparent.
    box_w, box_h = int(w * 0.28), int(h * 0.09)
    x = rng.choice([int(w * 0.03), w - box_w - int(w * 0.03)])
    y = rng.choice([int(h * 0.03), h - box_h - int(h * 0.03)])
    draw.rectangle([x, y, x + box_w, y + box_h], fill=(255, 255, 255, 150))
    step = max(12, h // 6)
    for row in range(0, h, step):
        draw.text((rng.randint(0, max(1, w // 4)), row), "www.stockfaces.example  " * 3,
                  fill=(255, 255, 255, 90))
    return Image.alpha_composite(marked, layer).convert("RGB")


def border(image, rng):
    pad = int(min(image.size) * rng.uniform(0.04, 0.10))
    colour = rng.choice([(255, 255, 255), (0, 0, 0), (rng.randint(0, 255),) * 3])
    return ImageOps.expand(image.convert("RGB"), border=pad, fill=colour)


def combined(image, rng):
    for step in rng.sample([resize, crop, brightness, border], 2):
        image = step(image, rng)
    return reencode(image, rng)


TRANSFORMS = {f.__name__: f for f in (resize, reencode, crop, brightness, watermark, border, combined)}


def originals(seed_images: Path = SEED_IMAGES, threshold: int = ORIGINALS_THRESHOLD) -> list[Path]:
    """One file per group of the seed images' own duplicates (same bytes, or imagehash pHash within
    threshold, or listed in SAME_PICTURE). imagehash's full-resolution pHash, not maskset's: the
    ground truth must not move when maskset's hashing changes."""
    import imagehash

    paths = sorted(p for p in seed_images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    hashes, digests = {}, {}
    for path in paths:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            hashes[path.name] = int(str(imagehash.phash(ImageOps.exif_transpose(image))), 16)
        digests[path.name] = hashlib.sha256(data).hexdigest()
    pairs = [(a, b) for a, b, _ in neighbours.near_pairs(hashes, threshold)]
    pairs += [(a, b) for a, b, _ in neighbours.same_bytes_pairs(digests)]
    pairs += [pair for pair in SAME_PICTURE if all(name in hashes for name in pair)]
    return [seed_images / g[0] for g in neighbours.groups(sorted(hashes), pairs)]


def _stable_key(*parts) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def split_originals(chosen: list[Path], part: str) -> list[Path]:
    """Two disjoint halves of the originals: PARTS[0] to choose thresholds on, PARTS[1] to report
    precision and recall on pictures the choice never saw. By a hash of each file's name, so a
    change to the seed data (or to SAME_PICTURE) moves only the files it touches."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    return [p for p in chosen if int(_stable_key("part", p.name), 16) % 2 == PARTS.index(part)]


def build(out: Path, count: int = 200, variants: int = 4, seed: int = 0,
          seed_images: Path = SEED_IMAGES, part: str = "test") -> dict:
    """Write the set into out/ and return its truth: {file: original id} (also in out/truth.json)."""
    rng = random.Random(seed)
    chosen = split_originals(originals(seed_images), part)
    chosen = sorted(sorted(chosen, key=lambda p: _stable_key(seed, p.name))[:count])
    out.mkdir(parents=True, exist_ok=True)
    truth, how = {}, {}
    for number, source in enumerate(chosen):
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        name = f"o{number:04d}.jpg"
        atomic.write_bytes(out / name, _jpeg(image, 90))
        truth[name], how[name] = number, "original"
        for k, kind in enumerate(rng.sample(sorted(TRANSFORMS), variants)):
            name = f"o{number:04d}_v{k}_{kind}.jpg"
            atomic.write_bytes(out / name, _jpeg(TRANSFORMS[kind](image, rng), 85))
            truth[name], how[name] = number, kind
    atomic.write_json(out / "truth.json", {"truth": truth, "transform": how, "part": part,
                                           "originals": [p.name for p in chosen],
                                           "source": str(seed_images), "seed": seed})
    return truth


def true_pairs(truth: dict) -> set[tuple[str, str]]:
    by_original: dict[int, list[str]] = {}
    for name, original in truth.items():
        by_original.setdefault(original, []).append(name)
    return {tuple(sorted(p)) for names in by_original.values() for p in itertools.combinations(names, 2)}


def precision_recall(found: set, truth_pairs: set) -> tuple[float, float]:
    hits = len(found & truth_pairs)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth_pairs) if truth_pairs else 1.0
    return precision, recall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--originals", type=int, default=200)
    p.add_argument("--variants", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=PARTS, default="test")
    args = p.parse_args(argv)
    truth = build(args.out, args.originals, args.variants, args.seed, part=args.part)
    print(json.dumps({"images": len(truth), "true_pairs": len(true_pairs(truth))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
