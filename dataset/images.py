"""Reading images: the one owner of decoding, its checks and its pixel limit.

Every stage opens images through here: import and validate (`inspect`: size, format, EXIF
orientation, every coded byte decoded; import decodes each image once, validate reuses that),
hashing (`decode_gray`: the cheapest decode that keeps the picture's low frequencies), pages (`thumbnail`: a reduced-size decode with boxes drawn), and
scraping (`open_bytes`, with the scrape's own stricter pixel cap).
"""
from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from .errors import MasksetError
from .exif import ORIENTATION_TAG

# The one pixel limit: a 200 MP panorama is an image, a larger header is a decompression bomb.
# Pillow refuses twice its MAX_IMAGE_PIXELS outright and warns above it; we refuse above it.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
                 Image.DecompressionBombError, Image.DecompressionBombWarning)


class NotAnImage(Exception):
    """The file is not a readable image (the message says why)."""


@dataclass
class ImageInfo:
    width: int
    height: int
    format: str
    orientation: int  # EXIF orientation, 1 = upright (none)
    file: tuple[int, int] | None = None  # (bytes, mtime_ns) of the file these facts were read from


@contextmanager
def open_image(source: Path | str | bytes, max_pixels: int = MAX_PIXELS):
    """A Pillow image, header read; NotAnImage for anything that is not a sane image.

    Nothing is decoded yet; the pixel count is checked from the header before any is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except DECODE_ERRORS as error:
        raise NotAnImage(_why(error)) from None
    try:
        if image.width * image.height > max_pixels:
            raise NotAnImage(f"decompression bomb: {image.width}x{image.height} is more than "
                             f"{max_pixels} pixels")
        yield image
    finally:
        image.close()


def _why(error: Exception) -> str:
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb: {error}"
    return str(error) or type(error).__name__


def load(image: Image.Image) -> None:
    """Decode the pixels (NotAnImage if they are truncated or broken)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except DECODE_ERRORS as error:
        raise NotAnImage(_why(error)) from None


def orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1  # unreadable EXIF: the stored pixels are what every tool shows


def inspect(source: Path | str | bytes, decode: bool = True) -> ImageInfo:
    """Size, format and EXIF orientation of a file or its bytes. With decode=True the pixels are
    decoded too (JPEGs at 1/8 scale via draft(), which still reads every byte), so truncated files
    are caught."""
    with open_image(source) as image:
        info = ImageInfo(image.width, image.height, image.format or "", orientation(image))
        if decode:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            load(image)
        return info


def decode_gray(data: bytes, name: str, min_side: int) -> np.ndarray:
    """Grayscale pixels, EXIF orientation applied (what a person sees), decoded no smaller than
    min_side on the short side when Pillow can scale the decode (JPEG). For hashing; a file that
    cannot be decoded is a MasksetError naming it."""
    try:
        with open_image(data) as image:
            image.draft("L", (min_side, min_side))  # JPEG only: scaled decode
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("L"))
    except (NotAnImage, *DECODE_ERRORS) as error:
        raise MasksetError(
            f"{name}: cannot decode this image ({error}). Move it out of the images folder "
            f"(or re-download it), then run again.") from None


COLOURS = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]


def thumbnail(path: Path | str, max_side: int, boxes=(), quality: int = 80) -> bytes:
    """A JPEG no larger than max_side, decoded at reduced size (JPEG draft), with boxes drawn.

    boxes: (x1, y1, x2, y2, colour) in the stored image's pixels (as labelImg draws them). An
    inverted or off-image box is drawn where it is, clipped, never an error."""
    with open_image(path) as image:
        full = image.size
        fit = max_side / max(full)
        if fit < 1:  # JPEG: decode at the strongest reduction that still covers the thumbnail
            image.draft("RGB", (max(1, int(full[0] * fit)), max(1, int(full[1] * fit))))
        load(image)
        picture = image.convert("RGB")
    picture.thumbnail((max_side, max_side))
    scale_x, scale_y = picture.width / max(full[0], 1), picture.height / max(full[1], 1)
    if boxes:
        draw = ImageDraw.Draw(picture)
        for x1, y1, x2, y2, colour in boxes:
            xs = sorted((x1 * scale_x, x2 * scale_x))
            ys = sorted((y1 * scale_y, y2 * scale_y))
            draw.rectangle([xs[0], ys[0], xs[1], ys[1]], outline=colour, width=2)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()
