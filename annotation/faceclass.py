"""Which class a detected face gets: learned from the faces people already labelled.

MTCNN finds faces, not masks. Its landmarks say where nose, mouth and chin are, and a mask there
looks nothing like the forehead's skin (facedetect.face_features). A small multinomial logistic
regression over those colour features, fitted to the dataset's own labelled faces, picks the class
(mask / no_mask, or whatever classes.txt holds). Few parameters, so a few dozen faces suffice, and
it is stored with the box calibration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PER_CLASS = 5      # a class with fewer labelled faces is not learned (the default class stays)
L2 = 1.0               # ridge penalty: the features are correlated colour statistics
STEPS = 2000
RATE = 0.5


@dataclass
class FaceClassifier:
    classes: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[list[float]]   # features x classes
    bias: list[float]
    faces: int = 0               # labelled faces it was fitted to

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - np.asarray(self.mean)) / np.asarray(self.scale)
        return _softmax(x @ np.asarray(self.weights) + np.asarray(self.bias))

    def predict(self, features: np.ndarray) -> tuple[str, float]:
        p = self.probabilities(features)[0]
        best = int(np.argmax(p))
        return self.classes[best], float(p[best])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit(features: list[np.ndarray], labels: list[str]) -> FaceClassifier | None:
    """Fit to labelled faces; None when fewer than two classes have MIN_PER_CLASS faces."""
    names = sorted(n for n in set(labels) if labels.count(n) >= MIN_PER_CLASS)
    keep = [i for i, n in enumerate(labels) if n in names]
    if len(names) < 2:
        return None
    x = np.asarray([features[i] for i in keep], dtype=np.float64)
    y = np.asarray([names.index(labels[i]) for i in keep])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = (x - mean) / scale
    target = np.eye(len(names))[y]
    weights, bias = np.zeros((x.shape[1], len(names))), np.zeros(len(names))
    for _ in range(STEPS):  # plain gradient descent: convex, small, deterministic
        error = _softmax(x @ weights + bias) - target
        weights -= RATE * (x.T @ error + L2 * weights) / len(x)
        bias -= RATE * error.mean(axis=0)
    return FaceClassifier(names, mean.tolist(), scale.tolist(), weights.tolist(), bias.tolist(), len(x))


def from_dict(values: dict | None) -> FaceClassifier | None:
    return FaceClassifier(**values) if values else None
