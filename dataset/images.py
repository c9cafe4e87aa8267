"""Reading images: the one owner of decoding, its checks and its pixel limit.

Every stage opens images through here: import and validate (`inspect`: size, format, EXIF
orientation, every coded byte decoded; import decodes each image once, with `inspect_gray`, and
fingerprints those pixels; validate reuses what it learned), hashing (`decode_gray`: the
cheapest decode that keeps the picture's low frequencies), pages (`thumbnail`: a reduced-size
decode with boxes drawn), and scraping (`open_bytes`, with the scrape's own stricter pixel cap).
"""
from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
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


# JPEG markers that start a frame header (SOF0..SOF15 less DHT, JPG and DAC), which holds the size.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def is_jpeg(data: bytes) -> bool:
    """The bytes start like a JPEG (start-of-image, then a marker)."""
    return data[:3] == b"\xff\xd8\xff"


# libjpeg decodes at 1/8, 1/4 or 1/2 scale, skipping most of the IDCT work: OpenCV's flags for
# each factor (grey, colour); OpenCV applies EXIF orientation unless told to ignore it.
REDUCED_FLAGS = {8: (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8),
                 4: (cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
                 2: (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2),
                 1: (cv2.IMREAD_GRAYSCALE, cv2.IMREAD_COLOR)}


def reduction(width: int, height: int, min_short: int = 0, min_long: int = 0) -> int:
    """The strongest scaled decode (8, 4, 2, else 1) that keeps the short side at least min_short
    and the long side at least min_long (as Pillow's draft chooses)."""
    for factor in (8, 4, 2):
        if min(width, height) // factor >= min_short and max(width, height) // factor >= min_long:
            return factor
    return 1


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header without decoding, or None if this is not a
    complete-looking JPEG (then Pillow decodes it and names what is wrong).

    By hand because it is the hot path: ~3 us against ~50 us for Pillow's header parse, which
    holds the GIL that the hashing threads share."""
    if not is_jpeg(data) or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated (no end-of-image marker)
    i, end = 2, len(data) - 9
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF_MARKERS:
            return (data[i + 7] << 8 | data[i + 8]), (data[i + 5] << 8 | data[i + 6])
        else:
            i += 2 + (data[i + 2] << 8 | data[i + 3])
    return None


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


def _facts(image: Image.Image) -> ImageInfo:
    return ImageInfo(image.width, image.height, image.format or "", orientation(image))


def inspect(source: Path | str | bytes, decode: bool = True) -> ImageInfo:
    """Size, format and EXIF orientation of a file or its bytes. With decode=True the pixels are
    decoded too (JPEGs at 1/8 scale via draft(), which still reads every byte), so truncated files
    are caught."""
    with open_image(source) as image:
        info = _facts(image)
        if decode:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            load(image)
        return info


def inspect_gray(data: bytes, min_side: int) -> tuple[ImageInfo, np.ndarray | None]:
    """inspect(data) and, from the same one decode, the picture in grey as hashing sees it: EXIF
    orientation applied, a JPEG decoded at the strongest reduction that keeps its short side at
    least min_side (Pillow's draft, which still reads every coded byte; the pixels are those of
    hashing's OpenCV decode, bit for bit). The grey is None when only the EXIF turn fails (the
    file is still an image, as inspect() finds; hashing names the problem later)."""
    with open_image(data) as image:
        info = _facts(image)
        image.draft("L", (min_side, min_side))  # JPEG only: scaled decode
        load(image)
        try:
            return info, np.asarray(ImageOps.exif_transpose(image).convert("L"))
        except DECODE_ERRORS:
            return info, None


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


def _jpeg_thumbnail(data: bytes, max_side: int, boxes, quality: int) -> bytes | None:
    """thumbnail() for a plain JPEG through OpenCV (1.3 ms against Pillow's 1.9 ms for a 1.7 MP
    photo: the decode and the resize in C, the GIL released), or None to leave it to Pillow."""
    size = jpeg_size(data)
    if size is None or size[0] * size[1] > MAX_PIXELS:
        return None
    flag = REDUCED_FLAGS[reduction(*size, min_long=max_side)][1]
    # stored pixels, as labelImg shows them and the boxes are drawn in: no EXIF turn
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if picture is None or not picture.size:
        return None
    h, w = picture.shape[:2]
    fit = max_side / max(h, w)
    if fit < 1:
        picture = cv2.resize(picture, (max(1, round(w * fit)), max(1, round(h * fit))), interpolation=cv2.INTER_AREA)
    scale_x, scale_y = picture.shape[1] / max(size[0], 1), picture.shape[0] / max(size[1], 1)
    for x1, y1, x2, y2, colour in boxes:
        xs, ys = sorted((x1 * scale_x, x2 * scale_x)), sorted((y1 * scale_y, y2 * scale_y))
        red, green, blue = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
        cv2.rectangle(picture, (round(xs[0]), round(ys[0])), (round(xs[1]), round(ys[1])), (blue, green, red), 2)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return encoded.tobytes() if ok else None


def thumbnail(path: Path | str, max_side: int, boxes=(), quality: int = 80) -> bytes:
    """A JPEG no larger than max_side, decoded at reduced size (a JPEG's reduced decode), with
    boxes drawn.

    boxes: (x1, y1, x2, y2, colour "#rrggbb") in the stored image's pixels (as labelImg draws
    them). An inverted or off-image box is drawn where it is, clipped, never an error."""
    data = Path(path).read_bytes()
    fast = _jpeg_thumbnail(data, max_side, boxes, quality)
    if fast is not None:
        return fast
    with open_image(data) as image:
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
