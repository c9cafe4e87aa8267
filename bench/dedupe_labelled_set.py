"""A labelled near-duplicate set built from the seed images, for choosing and checking THRESHOLD.

Originals: one image from each group of the seed data's own duplicates (so two originals are two
different pictures). Each original gets `variants` copies, each made by one realistic
transformation of the kind scraped copies show: resized, re-encoded harder, cropped, brighter or
darker, watermarked, framed with a border, or several of these at once. Ground truth: two files
are duplicates exactly when they come from the same original.

    python -m bench.dedupe_labelled_set OUT_FOLDER [--originals 200 --variants 4 --seed 0]
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dataset import atomic, grouping
from dataset.layout import IMAGE_SUFFIXES

SEED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "seed-voc" / "images"


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


def originals(seed_images: Path = SEED_IMAGES, threshold: int = grouping.DEFAULT_THRESHOLD) -> list[Path]:
    """One file per group of the seed images' own duplicates (same bytes or within threshold)."""
    paths = sorted(p for p in seed_images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    hashes = {p.name: h for p, h in grouping.hash_files(paths).items()}
    groups = grouping.groups(sorted(hashes), grouping.near_pairs(hashes, threshold))
    return [seed_images / g[0] for g in groups]


def build(out: Path, count: int = 200, variants: int = 4, seed: int = 0,
          seed_images: Path = SEED_IMAGES) -> dict:
    """Write the set into out/ and return its truth: {file: original id} (also in out/truth.json)."""
    rng = random.Random(seed)
    chosen = originals(seed_images)
    chosen = sorted(rng.sample(chosen, min(count, len(chosen))))
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
    atomic.write_json(out / "truth.json", {"truth": truth, "transform": how,
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
    args = p.parse_args(argv)
    truth = build(args.out, args.originals, args.variants, args.seed)
    print(json.dumps({"images": len(truth), "true_pairs": len(true_pairs(truth))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
