"""Clear a JPEG's EXIF Orientation tag in place, without re-encoding the pixels.

labelImg (Qt) shows a JPEG's stored pixels and ignores EXIF Orientation; OpenCV, which trains the
model, applies it. Setting the tag to 1 makes every tool see the picture the boxes were drawn on.
Pillow can only drop the tag by re-encoding (lossy), so the two bytes are patched here.
"""
from __future__ import annotations

import struct

ORIENTATION_TAG = 0x0112


def clear_orientation(data: bytes) -> bytes:
    """The same JPEG bytes with IFD0's Orientation set to 1 (unchanged if there is none)."""
    if data[:2] != b"\xff\xd8":
        return data
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        length = struct.unpack(">H", data[offset + 2:offset + 4])[0]
        if marker == 0xE1 and data[offset + 4:offset + 10] == b"Exif\x00\x00":
            return _patch_tiff(data, offset + 10)
        if marker in (0xDA, 0xD9):  # start of scan / end: no EXIF before the pixels
            break
        offset += 2 + length
    return data


def _patch_tiff(data: bytes, tiff: int) -> bytes:
    order = {b"II": "<", b"MM": ">"}.get(data[tiff:tiff + 2])
    if order is None:
        return data
    ifd = tiff + struct.unpack(order + "I", data[tiff + 4:tiff + 8])[0]
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    for index in range(count):
        entry = ifd + 2 + 12 * index
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag == ORIENTATION_TAG and kind == 3:  # SHORT, value stored inline
            value = entry + 8
            return data[:value] + struct.pack(order + "H", 1) + data[value + 2:]
    return data
