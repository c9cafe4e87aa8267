"""Checks on every downloaded body: it must decode with Pillow as a whole, sane-sized image.

What labelImg (Qt) and keras-retinanet (OpenCV) both open, JPEG / PNG / BMP in plain modes with
no EXIF rotation, is kept byte for byte. Everything else (CMYK, 16-bit, palette or alpha
images, WebP, GIF, TIFF, EXIF-rotated JPEGs) is converted to a plain RGB JPEG (lossy sources)
or PNG (lossless ones), so every later stage sees the pixels a person sees.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from dataset.exif import ORIENTATION_TAG

DEFAULT_MIN_SIDE = 64
DEFAULT_MAX_PIXELS = 40_000_000  # a 40 MP photo is fine; a 1 GB pixel buffer from 50 KB is a bomb
KEEP_AS_IS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}
PLAIN_MODES = {"RGB", "L"}
LOSSY = {"JPEG", "WEBP", "MPO"}


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Checked:
    data: bytes          # what to store
    suffix: str          # .jpg / .png / .bmp
    width: int
    height: int
    source_format: str   # what the server sent (JPEG, WEBP, GIF ...)
    converted: str = ""  # why it was converted ("" = stored byte for byte)

    @property
    def format(self) -> str:
        """What is stored, as Pillow names it (no EXIF rotation is left in a stored image)."""
        return {".jpg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[self.suffix]


def looks_like_markup(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"<svg"))


def check_image(data: bytes, min_side: int = DEFAULT_MIN_SIDE,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Checked:
    """The image to store, or Rejected(reason) with reason one of: empty, html, not-image,
    decompression-bomb, truncated, too-small."""
    if not data:
        raise Rejected("empty", "0 bytes")
    if looks_like_markup(data):
        raise Rejected("html", "the body is HTML/text, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise Rejected("decompression-bomb", str(error)) from None
        except Exception as error:  # Pillow raises many types for garbage
            reason = "truncated" if "truncated" in str(error).lower() else "not-image"
            raise Rejected(reason, f"Pillow cannot read it ({error})") from None
        width, height = image.size
        # the header alone tells the pixel count: refuse before decoding a single pixel
        if width * height > max_pixels:
            raise Rejected("decompression-bomb", f"{width}x{height} > {max_pixels} pixels")
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise Rejected("decompression-bomb", str(error)) from None
        except Exception as error:
            raise Rejected("truncated", f"decoding failed ({error})") from None
    source_format = image.format or "?"
    reasons = _why_convert(image, source_format)
    if reasons:
        image = _plain(image)
    width, height = image.size
    if min(width, height) < min_side:
        raise Rejected("too-small", f"{width}x{height}, MIN_SIDE is {min_side}")
    if not reasons:
        return Checked(data, KEEP_AS_IS[source_format], width, height, source_format)
    buffer = io.BytesIO()
    if source_format in LOSSY and image.mode == "RGB":
        image.save(buffer, format="JPEG", quality=95)
        suffix = ".jpg"
    else:
        image.save(buffer, format="PNG", optimize=False)
        suffix = ".png"
    return Checked(buffer.getvalue(), suffix, width, height, source_format, ", ".join(reasons))


def _why_convert(image: Image.Image, source_format: str) -> list[str]:
    reasons = []
    if source_format not in KEEP_AS_IS:
        reasons.append(f"{source_format} format")
    if getattr(image, "n_frames", 1) > 1:
        reasons.append("animated: first frame")
    if image.mode not in PLAIN_MODES:
        reasons.append(f"mode {image.mode}")
    if image.getexif().get(ORIENTATION_TAG, 1) not in (0, 1):
        reasons.append("EXIF orientation baked in")
    return reasons


def _plain(image: Image.Image) -> Image.Image:
    """First frame, EXIF rotation applied, 8-bit RGB (alpha flattened onto white) or L."""
    image.seek(0)
    image = ImageOps.exif_transpose(image) if image.getexif().get(ORIENTATION_TAG, 1) not in (0, 1) else image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        # 16-bit grey: scale to 8 bits instead of clipping at 255
        image = image.point(lambda v: v / 256).convert("L")
        return image
    if image.mode == "F":
        return image.convert("L")
    if image.mode == "P" or image.mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        return image.convert("RGB") if image.mode != "1" else image.convert("L")
    return image if image.mode in PLAIN_MODES else image.convert("RGB")
