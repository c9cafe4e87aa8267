"""Reading images the way the stages need: size, a checked decode, EXIF orientation."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .exif import ORIENTATION_TAG


@dataclass
class ImageInfo:
    width: int
    height: int
    format: str
    orientation: int  # EXIF orientation, 1 = upright (none)


class NotAnImage(Exception):
    pass


def inspect(path: Path | str, decode: bool = True) -> ImageInfo:
    """Size, format and EXIF orientation. With decode=True the pixels are decoded too (JPEGs at
    1/8 scale via draft(), which still reads every byte), so truncated files are caught."""
    try:
        with Image.open(path) as image:
            info = ImageInfo(image.width, image.height, image.format or "",
                             int(image.getexif().get(ORIENTATION_TAG, 1) or 1))
            if decode:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
            return info
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise NotAnImage(str(error) or type(error).__name__) from None
