"""The packaged face detector prelabel uses before any model has been trained: MTCNN.

mtcnn 1.0.0 ships its weights inside the wheel and runs on the TensorFlow maskset already uses,
so it needs no download. It finds faces, not masks: its boxes are class-less (face_features below
measures what faceclass.py needs to pick the class) and tighter than the ones people draw in
labelImg (see calibration.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dataset.errors import MasksetError

# Large photos are shrunk to this longest side before detection: MTCNN's image pyramid grows
# with the pixel count, and faces worth a box stay far above its 20-pixel minimum.
DEFAULT_MAX_SIDE = 1024
DEFAULT_MIN_SCORE = 0.9


@dataclass
class FaceBox:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in 0-based pixels of the original image
    score: float
    landmarks: dict | None = None  # left_eye, right_eye, nose, mouth_left, mouth_right: (x, y), same pixels


def load_rgb(image_path: Path | str) -> np.ndarray:
    """The image's pixels as labelImg shows them (no EXIF rotation: labelImg ignores it too)."""
    try:
        with Image.open(image_path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise MasksetError(f"{image_path}: cannot read this image ({error}). "
                           f"Run `make validate` to find broken images.") from None


class FaceDetector:
    """MTCNN, loaded once (a few seconds) and reused for every image."""

    name = "mtcnn"

    def __init__(self, max_side: int = DEFAULT_MAX_SIDE, min_face_size: int = 20):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise MasksetError("the face detector needs the mtcnn package: run `make setup` "
                               "(requirements.txt pins mtcnn==1.0.0).") from None
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
        self.max_side = max_side
        self.min_face_size = min_face_size

    def detect_array(self, pixels: np.ndarray, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        height, width = pixels.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:
            small = Image.fromarray(pixels).resize(
                (max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
            pixels = np.asarray(small)
        found = self._mtcnn.detect_faces(pixels, box_format="xyxy", min_face_size=self.min_face_size)
        faces = []
        for face in found:
            if face["confidence"] < min_score:
                continue
            x1, y1, x2, y2 = (float(v) / scale for v in face["box"])
            landmarks = {name: (float(x) / scale, float(y) / scale)
                         for name, (x, y) in face.get("keypoints", {}).items()}
            faces.append(FaceBox((x1, y1, x2, y2), float(face["confidence"]), landmarks))
        return sorted(faces, key=lambda f: -f.score)

    def detect(self, image_path: Path | str, min_score: float = DEFAULT_MIN_SCORE) -> list[FaceBox]:
        return self.detect_array(load_rgb(image_path), min_score)


# -- what a face looks like where a mask would be ---------------------------------------------------
# Patches placed by the landmarks, in units of the eye distance: (dx, dy) from the anchor, w, h.
_PATCHES = (
    ("eyes", (0.0, -0.45), 0.7, 0.3),    # forehead: the skin (or hair) reference
    ("eyes", (0.0, 0.0), 0.35, 0.25),    # between the eyes
    ("nose", (0.0, 0.0), 0.4, 0.3),
    ("mouth", (0.0, 0.0), 0.8, 0.35),
    ("mouth", (0.0, 0.5), 0.7, 0.3),     # chin
    ("left_eye", (-0.2, 0.5), 0.3, 0.3),  # cheeks
    ("right_eye", (0.2, 0.5), 0.3, 0.3),
)


def face_features(lab: np.ndarray, face: FaceBox) -> np.ndarray | None:
    """Colour of the nose, mouth, chin and cheeks against the forehead (CIE Lab), or None
    without landmarks. A mask shows as a uniform patch unlike the skin above it."""
    marks = face.landmarks or {}
    if not all(k in marks for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")):
        return None
    points = {k: np.asarray(v, dtype=np.float32) for k, v in marks.items()}
    points["eyes"] = (points["left_eye"] + points["right_eye"]) / 2
    points["mouth"] = (points["mouth_left"] + points["mouth_right"]) / 2
    unit = max(float(np.linalg.norm(points["right_eye"] - points["left_eye"])), 1.0)
    height, width = lab.shape[:2]
    stats = []
    for anchor, (dx, dy), w, h in _PATCHES:
        cx, cy = points[anchor] + np.array([dx, dy]) * unit
        x1, x2 = int(max(0, cx - w * unit / 2)), int(min(width, cx + w * unit / 2))
        y1, y2 = int(max(0, cy - h * unit / 2)), int(min(height, cy + h * unit / 2))
        if x2 <= x1 or y2 <= y1:
            stats.append((np.zeros(3, np.float32), 0.0))
            continue
        pixels = lab[y1:y2, x1:x2].reshape(-1, 3).astype(np.float32)
        stats.append((pixels.mean(axis=0), float(pixels[:, 0].std())))
    reference = (stats[0][0] + stats[1][0]) / 2
    return np.concatenate([np.concatenate([mean, [spread], mean - reference]) for mean, spread in stats])


def to_lab(pixels: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
