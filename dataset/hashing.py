"""Perceptual fingerprints of one image: the cheapest decode, a trimmed 32x32 thumbnail, and
its hashes (pHash, 64 bits; dHash, 128 bits), plus the same two hashes of 27 windows of the
picture and of its mirror image, and two facts the keeper needs. Pure: bytes in, numbers out.

The whole frame's hashes (`Fingerprint.phash`, `.dhash`) are what dedupe has always compared;
the windows (90, 80 and 70 % of each side, anchored left/centre/right x top/centre/bottom) let a
crop or a small rotation find its original (dataset/neighbours.py: candidate_pairs), and the
mirrored frame a flipped copy; such candidates are confirmed by dataset/verify.py. The windows
come from the same decode: one more area resize to a 64x64 grid, then two matrix products with
area-resampling operators that have the DCT folded in (~0.1 ms).

Speed, measured in bench/bench_dedupe.py: JPEGs are decoded at 1/2..1/8 scale (OpenCV's
IMREAD_REDUCED_GRAYSCALE_*: the decoder skips most of the IDCT work) straight to grayscale,
since pHash only looks at a 32x32 thumbnail's lowest frequencies. Search over fingerprints is
dataset/neighbours.py; the per-dataset cache and the worker pool are dataset/hashcache.py.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from . import images

HASH_SIZE = 8          # 8x8 low-frequency DCT coefficients -> 64 bits
PHASH_BITS = HASH_SIZE * HASH_SIZE
DHASH_BITS = 2 * HASH_SIZE * HASH_SIZE
THUMB_SIZE = 32        # pHash's thumbnail: 4x the hash size, as in the original pHash

def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix: dct(x) == M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


# Only the first HASH_SIZE rows are ever used: the low frequencies.
_DCT_LOW = _dct_matrix(THUMB_SIZE)[:HASH_SIZE]

# -- hashing ---------------------------------------------------------------------------------------
MIN_DECODED_SIDE = 2 * THUMB_SIZE  # scale down no further than this (as Pillow's draft does)


def _decode_jpeg_gray(data: bytes, min_short: int = MIN_DECODED_SIDE, min_long: int = 0) -> np.ndarray | None:
    """A JPEG decoded by OpenCV at the strongest reduction that keeps its short side at least
    min_short and its long side at least min_long, or None to leave it to Pillow (not a plain
    JPEG, or too big to be safe).

    OpenCV rather than Pillow's draft(): it does the whole decode in C with the GIL released, so
    the hashing threads run in parallel (bench/bench_dedupe.py: 1,000 images on 2 cores 0.59 s
    against 0.75 s). The entropy decoding of the whole file remains the main cost."""
    size = images.jpeg_size(data)
    if size is None or size[0] * size[1] > images.MAX_PIXELS:
        return None
    flag = images.REDUCED_FLAGS[images.reduction(*size, min_short, min_long)][0]  # EXIF orientation applied
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


def decode_gray(data: bytes, name: str = "image", min_short: int = MIN_DECODED_SIDE,
                min_long: int = 0) -> tuple[np.ndarray, bool]:
    """(grayscale pixels, lossless): JPEGs through OpenCV's reduced-scale decode (sides at least
    min_short and min_long), everything else (and any JPEG OpenCV refuses) through Pillow, at
    full size but for a JPEG's draft. lossless: not a JPEG."""
    gray = _decode_jpeg_gray(data, min_short, min_long)
    if gray is not None and gray.size:
        return gray, False
    return images.decode_gray(data, name, max(min_short, min_long)), not images.is_jpeg(data)


def thumbnail(data: bytes, name: str = "image") -> np.ndarray:
    """pHash's 32x32 grayscale thumbnail (float32): a uniform frame trimmed, the rest
    area-averaged."""
    gray, lossless = decode_gray(data, name)
    gray = (_as_reduced_decode(gray) if lossless else gray).astype(np.float32)
    top, bottom, left, right = content_box(gray)
    return cv2.resize(gray[top:bottom, left:right], (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)


BORDER_TOLERANCE = 8.0
BORDER_MAX = 0.25         # ... and a frame is at most this fraction of each side


def content_box(gray: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inside a uniform frame (letterboxing, a re-poster's border).

    Trimming it first makes a framed copy hash like the original. Only a frame on both opposite
    sides, of one colour and of similar depth, counts: a photo's own plain background (which a
    brightness change can make more or less plain) is left alone.
    """
    h, w = gray.shape
    box = [0, h, 0, w]
    for axis, lines in ((0, gray), (1, gray.T)):
        n = lines.shape[0]
        limit = max(1, int(n * BORDER_MAX))
        found = []
        for side in (lines, lines[::-1]):
            colour = float(side[0].mean())
            if np.count_nonzero(np.abs(side[0] - colour) > BORDER_TOLERANCE) > 0.02 * side.shape[1]:
                break  # the outermost line is not plain: no frame on this axis (most photos)
            uniform = (np.abs(side[:limit] - colour) <= BORDER_TOLERANCE).mean(axis=1) >= 0.98
            found.append((int(np.argmin(uniform)) if not uniform.all() else limit, colour))
        if len(found) < 2:
            continue
        (depth_a, colour_a), (depth_b, colour_b) = found
        depth = min(depth_a, depth_b)
        if depth >= 1 and abs(colour_a - colour_b) <= BORDER_TOLERANCE and depth >= 0.5 * max(depth_a, depth_b) \
                and n - 2 * depth >= 8:
            box[2 * axis], box[2 * axis + 1] = depth, n - depth
    return tuple(box)


def phash_of_thumbnail(thumb: np.ndarray) -> int:
    """64-bit pHash: signs of the 8x8 lowest DCT frequencies against their median (DC excluded)."""
    low = (_DCT_LOW @ thumb @ _DCT_LOW.T).ravel()
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def dhash_of_thumbnail(thumb: np.ndarray) -> int:
    """128-bit dHash: signs of the horizontal (9x8) then vertical (8x9) neighbour differences.

    The second opinion on a pHash match: it looks at where edges are rather than at the
    low-frequency layout, so two different photos that pHash happens to call close usually differ
    here, while a resized, re-encoded or brightened copy does not. (Two shots of one studio series
    do not: same model and backdrop, another pose.)"""
    wide = cv2.resize(thumb, (HASH_SIZE + 1, HASH_SIZE), interpolation=cv2.INTER_AREA)
    tall = cv2.resize(thumb, (HASH_SIZE, HASH_SIZE + 1), interpolation=cv2.INTER_AREA)
    bits = np.concatenate([(wide[:, 1:] > wide[:, :-1]).ravel(), (tall[1:] > tall[:-1]).ravel()])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


class Fingerprint(NamedTuple):
    """What the finder and the keeper know of one image's pixels. Hashable and compact (the
    views are bytes), so that files with the same fingerprint clump (dataset/split.py)."""
    phash: int          # 64 bits: the key the neighbour search runs on
    dhash: int          # 128 bits: the second opinion on each pHash match
    views: bytes = b""  # uint64 (VIEW_ROWS, 3): pHash, dHash high, dHash low of each window,
                        # then of the mirrored frame (b"": not computed, as in a test's fingerprint)
    content: float = 1.0  # share of the picture's area inside uniform frames (the keeper)
    ghost: int = 0      # a lossless file that was a JPEG once: the quality it had (0: none seen)

    def view_array(self) -> np.ndarray:
        """(VIEW_ROWS, 3) uint64."""
        return np.frombuffer(self.views, dtype=np.uint64).reshape(-1, 3)


# -- the windows -----------------------------------------------------------------------------------
WINDOW_SIZES = (0.9, 0.8, 0.7)  # of each side; 0.7 adds 5 points of crop recall (docs/dedupe.md)


def _windows() -> tuple[tuple[float, float, float, float], ...]:
    out = []
    for size in WINDOW_SIZES:
        for ay in (0.0, 0.5, 1.0):
            for ax in (0.0, 0.5, 1.0):
                x0, y0 = round((1 - size) * ax, 3), round((1 - size) * ay, 3)
                out.append((x0, y0, round(x0 + size, 3), round(y0 + size, 3)))
    return tuple(out)


WINDOWS = _windows()            # (x0, y0, x1, y1) as fractions of the trimmed frame
MIRROR_ROW = len(WINDOWS)       # the views' last row: the mirrored whole frame
VIEW_ROWS = len(WINDOWS) + 1
VIEW_GRID = 64                  # the trimmed frame is area-resized once to 64x64; windows cut from it


def _area_matrix(start: float, stop: float, out: int, n: int) -> np.ndarray:
    """(out, n): averages [start, stop) of an n-pixel axis into `out` equal bins by area overlap
    (what cv2.INTER_AREA does when shrinking)."""
    edges = start + (stop - start) * np.arange(out + 1) / out
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _window_operators() -> tuple[np.ndarray, np.ndarray]:
    """Per window, row and column operators (25 x 64) mapping the 64x64 grid straight to
    [8 DCT | 8 | 9] rows/columns: DCT(thumb) = R[:8] G C[:8]^T, dHash's 8x9 = R[8:16] G C[16:]^T
    and its 9x8 = R[16:] G C[8:16]^T, thumb being the window's 32x32 area average."""
    dct = _dct_matrix(THUMB_SIZE)[:HASH_SIZE].astype(np.float64)
    a8 = _area_matrix(0, THUMB_SIZE, HASH_SIZE, THUMB_SIZE)
    a9 = _area_matrix(0, THUMB_SIZE, HASH_SIZE + 1, THUMB_SIZE)
    rows, cols = [], []
    for x0, y0, x1, y1 in WINDOWS:
        ry = _area_matrix(y0 * VIEW_GRID, y1 * VIEW_GRID, THUMB_SIZE, VIEW_GRID)
        rx = _area_matrix(x0 * VIEW_GRID, x1 * VIEW_GRID, THUMB_SIZE, VIEW_GRID)
        rows.append(np.concatenate([dct @ ry, a8 @ ry, a9 @ ry]))
        cols.append(np.concatenate([dct @ rx, a8 @ rx, a9 @ rx]))
    rows, cols = np.stack(rows).astype(np.float32), np.stack(cols).astype(np.float32)
    return np.ascontiguousarray(rows.reshape(-1, VIEW_GRID)), np.ascontiguousarray(cols.transpose(0, 2, 1))


_WINDOW_ROWS, _WINDOW_COLS_T = _window_operators()
_BITS64 = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)  # first bit most significant


def _pack(bits: np.ndarray) -> np.ndarray:
    """(n, 64) bool -> (n,) uint64, first bit most significant (as packbits + from_bytes)."""
    return (bits.astype(np.uint64) * _BITS64).sum(axis=1, dtype=np.uint64)


def _window_hashes(frame: np.ndarray) -> np.ndarray:
    """(len(WINDOWS), 3) uint64: pHash, dHash high (the 9x8 rows), dHash low of each window."""
    grid = cv2.resize(frame, (VIEW_GRID, VIEW_GRID), interpolation=cv2.INTER_AREA)
    out = (_WINDOW_ROWS @ grid).reshape(len(WINDOWS), 25, VIEW_GRID) @ _WINDOW_COLS_T  # (v, 25, 25)
    low = out[:, :8, :8].reshape(len(WINDOWS), 64)
    wide, tall = out[:, 8:16, 16:25], out[:, 16:25, 8:16]
    return np.stack([_pack(low > np.median(low[:, 1:], axis=1, keepdims=True)),
                     _pack((wide[:, :, 1:] > wide[:, :, :-1]).reshape(-1, 64)),
                     _pack((tall[:, 1:] > tall[:, :-1]).reshape(-1, 64))], axis=1)


def _split128(value: int) -> tuple[int, int]:
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def trimmed_box(gray: np.ndarray, passes: int = 4, first: tuple | None = None) -> tuple[int, int, int, int]:
    """content_box applied again inside what it trimmed, so that a frame around a frame (a
    border on a letterboxed copy) goes too. Symmetric frames only, on purpose: trimming every
    plain margin side by side also trims a studio photo's own backdrop, which a watermark keeps
    in another copy of the same picture (keeper accuracy on the tune half 0.87 against 0.915).
    first: content_box(gray), when the caller has it."""
    box = [0, gray.shape[0], 0, gray.shape[1]]
    g = gray
    for k in range(passes):
        top, bottom, left, right = first if k == 0 and first is not None else content_box(g)
        if (top, bottom, left, right) == (0, g.shape[0], 0, g.shape[1]):
            break
        box = [box[0] + top, box[0] + bottom, box[2] + left, box[2] + right]
        g = g[top:bottom, left:right]
    return tuple(box)


def _as_reduced_decode(gray: np.ndarray) -> np.ndarray:
    """A full-resolution decode area-averaged to the scale a JPEG of that size is decoded at
    (decode_gray), so that a PNG re-save of a JPEG is judged on the same pixels as the JPEG: at
    full resolution its noise breaks up a plain frame that the reduced decode trims, which made
    the re-save look like the larger picture to the keeper (and it hashes faster)."""
    h, w = gray.shape
    factor = images.reduction(w, h, MIN_DECODED_SIDE)
    return gray if factor == 1 else cv2.resize(gray, (-(-w // factor), -(-h // factor)), interpolation=cv2.INTER_AREA)


def fingerprint_of_gray(gray: np.ndarray, lossless: bool = False) -> Fingerprint:
    """The fingerprint of a decoded picture (the cheapest decode: see decode_gray). lossless:
    the file is not a JPEG, and `gray` is its full-resolution Pillow decode: look for a JPEG
    ghost (the keeper's "a re-save of a JPEG")."""
    ghost = 0
    if lossless:  # the ghost needs the old JPEG's 8x8 grid: before the reduction
        ghost = jpeg_ghost(gray)
        gray = _as_reduced_decode(gray)
    gray32 = gray.astype(np.float32)
    top, bottom, left, right = content_box(gray32)
    frame = gray32[top:bottom, left:right]
    thumb = cv2.resize(frame, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    phash, dhash = phash_of_thumbnail(thumb), dhash_of_thumbnail(thumb)
    mirror = np.ascontiguousarray(thumb[:, ::-1])
    views = np.empty((VIEW_ROWS, 3), np.uint64)
    views[:MIRROR_ROW] = _window_hashes(frame)
    views[MIRROR_ROW] = (phash_of_thumbnail(mirror), *_split128(dhash_of_thumbnail(mirror)))
    t, b, l, r = trimmed_box(gray32, first=(top, bottom, left, right))   # its first pass is done
    content = round((b - t) * (r - l) / max(1, gray.size), 4)
    return Fingerprint(phash, dhash, views.tobytes(), content, ghost)


# -- a JPEG's traces in a lossless file -----------------------------------------------------------
GHOST_DIP = 3.0      # tune half: PNG re-saves of JPEGs dip by 4.0 at the 5th percentile, lossless
                     # renders by 1.16 at the 90th
GHOST_WINDOW = 128


def _detailed_window(gray: np.ndarray, n: int, grid: int = 4) -> tuple[int, int]:
    """(top, left), 8-aligned (the old JPEG's grid), of the n x n window with the most detail
    among a grid x grid spread: a plain patch carries no trace of compression (the top-left
    corner alone missed 6 of 100 re-saves on the test half, a plain backdrop; this finds all)."""
    h, w = gray.shape
    best = (-1.0, 0, 0)
    for top in np.linspace(0, (h - n) // 8, grid).astype(int) * 8:
        for left in np.linspace(0, (w - n) // 8, grid).astype(int) * 8:
            window = gray[top:top + n, left:left + n].astype(np.int16)
            detail = float(np.abs(np.diff(window, axis=0)).mean() + np.abs(np.diff(window, axis=1)).mean())
            best = max(best, (detail, int(top), int(left)))
    return best[1], best[2]


def jpeg_ghost(gray: np.ndarray) -> int:
    """The JPEG quality a lossless picture was saved at before, or 0. Re-encoding a picture
    that sits on quality q0's quantisation lattice at q0 changes it far less than at q0 +- 1:
    the error curve over qualities 50-99 dips there (a "JPEG ghost"); a never-compressed
    picture's falls smoothly. An 8-aligned window from the top left (the old JPEG's grid), in
    Pillow's grey (the JPEG's own luma, to the rounding). ~5 ms, lossless files only."""
    n = min(GHOST_WINDOW, gray.shape[0] // 8 * 8, gray.shape[1] // 8 * 8)
    if n < 32:
        return 0
    top, left = _detailed_window(gray, n)
    window = np.ascontiguousarray(gray[top:top + n, left:left + n], dtype=np.uint8)
    errors = np.empty(50, np.float64)
    for k, quality in enumerate(range(50, 100)):
        _, encoded = cv2.imencode(".jpg", window, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
        errors[k] = np.abs(decoded.astype(np.float32) - window).mean()
    dips = (errors[:-2] + errors[2:]) / 2 / np.maximum(errors[1:-1], 1e-3)
    k = int(np.argmax(dips))
    return 51 + k if dips[k] >= GHOST_DIP else 0


def fingerprint_bytes(data: bytes, name: str = "image") -> Fingerprint:
    return fingerprint_of_gray(*decode_gray(data, name))


def inspect_and_fingerprint(data: bytes) -> tuple[images.ImageInfo, Fingerprint | None]:
    """Import's one decode of an image (images.inspect_gray: strict, every coded byte read) and
    the fingerprint of those pixels: the one hash_file gives, so dedupe need not decode the
    image again (None when the grey could not be had; hashing then names the file)."""
    info, gray = images.inspect_gray(data, MIN_DECODED_SIDE)
    return info, None if gray is None else fingerprint_of_gray(gray, not images.is_jpeg(data))


def hash_file(path: Path) -> tuple[Fingerprint, str]:
    data = path.read_bytes()
    return fingerprint_bytes(data, str(path)), hashlib.sha256(data).hexdigest()
